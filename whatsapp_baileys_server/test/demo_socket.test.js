// Demo mode end to end: the real server process with NODE_DEMO_SCRIPT, a real local
// WebSocket gateway stand-in that acks every frame, real files on disk. Only the
// WhatsApp socket and its media download are scripted; the session manager, handler,
// staging, outbox and gateway link are the production ones.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { randomBytes, randomUUID } from "node:crypto";
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { MediaKind } from "../src/gen/chatbot/common/v1/message_pb.js";
import { AckStatus, SessionState } from "../src/gen/chatbot/wire/v1/frames_pb.js";
import { DemoScriptError, loadDemoScript } from "../src/demo_socket.js";
import { TOKEN, startGateway } from "./helpers/fake_gateway.js";

const ENTRY = join(dirname(fileURLToPath(import.meta.url)), "..", "src", "index.js");
const ALICE = "4915100000001@s.whatsapp.net";
const BOB = "4915100000002@s.whatsapp.net";
const FAMILY = "120363000000000001@g.us";

function run(env) {
  const child = spawn(process.execPath, [ENTRY], { env: { PATH: process.env.PATH, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d) => { stdout += d; });
  child.stderr.on("data", (d) => { stderr += d; });
  return {
    child,
    stderr: () => stderr,
    /** stdout parsed as JSON lines (the demo's events). */
    events: () => stdout.split("\n").filter(Boolean).map((l) => JSON.parse(l)),
  };
}

async function waitFor(predicate, what, timeoutMs = 10_000) {
  const started = Date.now();
  while (!predicate()) {
    if (Date.now() - started > timeoutMs) throw new Error(`not in time: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

test("demo mode: a scripted session flows through the real pipeline to the gateway and back", async (t) => {
  const root = await mkdtemp(join(tmpdir(), "node-demo-"));
  t.after(() => rm(root, { recursive: true, force: true }));
  const media = join(root, "media");
  const files = {
    "photo.png": randomBytes(3000),
    "voice.ogg": randomBytes(1500),
    "menu.pdf": randomBytes(5000),
    "sticker.webp": randomBytes(700),
    "clip.mp4": randomBytes(2500),
    "broken.jpg": randomBytes(900),
    "late.jpg": randomBytes(1100),
    "tampered.jpg": randomBytes(800),
    "secret.jpg": randomBytes(1200),
  };
  await mkdir(media);
  for (const [name, bytes] of Object.entries(files)) await writeFile(join(media, name), bytes);
  const script = {
    default_delay_ms: 5,
    bots: {
      "demo-bot": [
        { delay_ms: 20, from: ALICE, type: "text", text: "Hi!" },
        { type: "image", file: "media/photo.png", mimetype: "image/png", caption: "my cat" },
        { type: "voice_note", file: "media/voice.ogg", seconds: 3 },
        { type: "document", file: join(media, "menu.pdf"), mimetype: "application/pdf", filename: "menu.pdf", caption: "tonight", declared_length: 999999999 },
        { type: "sticker", file: "media/sticker.webp", animated: true },
        { type: "gif", file: "media/clip.mp4" },
        { type: "image", file: "media/broken.jpg", download_fails: true },
        { type: "image", file: "media/late.jpg", url_expired: true, caption: "late" },
        { type: "image", file: "media/tampered.jpg", hash_mismatch: true, caption: "tampered" },
        { type: "view_once_image", file: "media/secret.jpg", caption: "once" },
        { type: "ephemeral_text", text: "disappearing" },
        { type: "reaction", text: "❤️" },
        { group: FAMILY, group_name: "Family", from: BOB, type: "text", text: "Dinner at 8" },
        // 515 (restart required) reconnects at once; the script goes on with the new socket.
        { type: "disconnect", status_code: 515 },
        { from: ALICE, type: "text", text: "sent while offline", upsert: "append" },
      ],
    },
  };
  const scriptPath = join(root, "script.json");
  await writeFile(scriptPath, JSON.stringify(script));

  const gateway = await startGateway();
  t.after(() => gateway.close());
  const staging = join(root, "staging");
  const server = run({
    NODE_API_TOKEN: "api-secret",
    GATEWAY_TOKEN: TOKEN,
    GATEWAY_WS_URL: gateway.url,
    NODE_PORT: "0",
    AUTH_DIR: join(root, "auth"),
    OUTBOX_DIR: join(root, "outbox"),
    POLL_STORE_DIR: join(root, "polls"),
    MEDIA_STAGING_DIR: staging,
    NODE_DEMO_SCRIPT: scriptPath,
  });
  t.after(() => server.child.kill("SIGKILL"));
  await waitFor(() => /"msg":"whatsapp_baileys_server listening"/.test(server.stderr()), "server listening");
  assert.match(server.stderr(), /"level":"warn".*"msg":"DEMO MODE \(NODE_DEMO_SCRIPT is set\): WhatsApp is NOT contacted/);
  const { port } = JSON.parse(server.stderr().split("\n").find((l) => l.includes("whatsapp_baileys_server listening")));

  const init = await fetch(`http://127.0.0.1:${port}/initialize`, {
    method: "POST",
    headers: { authorization: "Bearer api-secret", "content-type": "application/json" },
    body: JSON.stringify({ userId: "demo-bot", config: { media_storage_quota_gb: 1 } }),
  });
  assert.equal(init.status, 200, await init.clone().text());
  assert.equal((await init.json()).created, true);

  const messageFrames = () => gateway.data().filter((f) => f.payload.case !== "sessionEvent");
  await waitFor(() => server.events().some((e) => e.event === "script_done"), "script replayed");
  await waitFor(() => messageFrames().length === 14, `14 message frames (got ${messageFrames().length})`);

  const injected = server.events().filter((e) => e.event === "message_injected");
  assert.equal(injected.length, 14);
  assert.deepEqual(server.events().find((e) => e.event === "script_done"), { event: "script_done", botId: "demo-bot", messages: 14 });
  const idOf = (i) => injected[i].id;

  const sessionStates = gateway.data().filter((f) => f.payload.case === "sessionEvent").map((f) => f.payload.value.state);
  assert.deepEqual(sessionStates, [SessionState.CONNECTING, SessionState.OPEN, SessionState.CLOSED, SessionState.CONNECTING, SessionState.OPEN]);

  const byId = new Map(messageFrames().map((f) => [f.payload.value.header.providerMessageId, f]));
  const texts = messageFrames().filter((f) => f.payload.case === "textMessage").map((f) => f.payload.value);
  // Order holds within a chat (the group is another chat).
  assert.deepEqual(texts.filter((v) => v.header.correspondentId === ALICE).map((v) => v.message), ["Hi!", "disappearing", "sent while offline"]);
  assert.deepEqual(texts.filter((v) => v.header.correspondentId === FAMILY).map((v) => v.message), ["Dinner at 8"]);
  for (const v of texts) assert.equal(v.header.botId, "demo-bot");
  const first = byId.get(idOf(0)).payload.value.header;
  assert.equal(first.correspondentId, ALICE);
  assert.equal(first.sender, ALICE);
  const group = byId.get(idOf(12)).payload.value.header;
  assert.equal(group.correspondentId, FAMILY);
  assert.equal(group.sender, BOB);
  assert.deepEqual({ groupId: group.group.groupId, groupName: group.group.groupName }, { groupId: FAMILY, groupName: "Family" });
  // The reaction is forwarded as structured data naming the message reacted to.
  const reaction = byId.get(idOf(11)).payload;
  assert.equal(reaction.case, "structuredMessage");
  assert.deepEqual(reaction.value.details.kind.value, { ...reaction.value.details.kind.value, targetMessageId: idOf(10), emoji: "❤️", removed: false });

  // Staged media: the file named by mediaProcessingId holds exactly the script's bytes.
  const expectStaged = async (index, source, kind, mimeType, caption) => {
    const frame = byId.get(idOf(index));
    assert.equal(frame?.payload.case, "mediaMessage", `entry ${index} staged`);
    const v = frame.payload.value;
    assert.equal(v.mediaKind, kind);
    assert.equal(v.mimeType, mimeType);
    assert.equal(v.message, caption);
    assert.equal(v.fileSize, BigInt(files[source].length));
    assert.deepEqual(await readFile(join(staging, v.mediaProcessingId)), files[source]);
    return v;
  };
  await expectStaged(1, "photo.png", MediaKind.IMAGE, "image/png", "my cat");
  await expectStaged(2, "voice.ogg", MediaKind.VOICE_NOTE, "audio/ogg; codecs=opus", "");
  const doc = await expectStaged(3, "menu.pdf", MediaKind.DOCUMENT, "application/pdf", "tonight");
  assert.equal(doc.originalFilename, "menu.pdf");
  await expectStaged(4, "sticker.webp", MediaKind.STICKER, "image/webp", "");
  await expectStaged(5, "clip.mp4", MediaKind.GIF, "video/mp4", "");
  await expectStaged(7, "late.jpg", MediaKind.IMAGE, "image/jpeg", "late");
  await expectStaged(9, "secret.jpg", MediaKind.IMAGE, "image/jpeg", "once");

  const broken = byId.get(idOf(6));
  assert.equal(broken.payload.case, "corruptMediaMessage");
  assert.match(broken.payload.value.reason, /HTTP 410 after re-upload/);
  const tampered = byId.get(idOf(8));
  assert.equal(tampered.payload.case, "corruptMediaMessage");
  assert.match(tampered.payload.value.reason, /hash mismatch/);
  // Seven staged files, no partial downloads left behind.
  assert.equal((await readdir(staging)).length, 7);

  // The gateway's reply goes out through sendMessage and is acknowledged.
  const frameId = randomUUID();
  gateway.send({
    frameId,
    payload: { case: "outgoingMessage", value: { botId: "demo-bot", correspondentId: ALICE, text: "Hello back", quotedProviderMessageId: idOf(0) } },
  });
  await waitFor(() => gateway.acks().some((a) => a.frameId === frameId), "ack for the reply");
  assert.equal(gateway.acks().find((a) => a.frameId === frameId).status, AckStatus.ACCEPTED);
  const reply = server.events().find((e) => e.event === "reply_sent");
  assert.deepEqual({ ...reply, id: undefined }, { event: "reply_sent", botId: "demo-bot", to: ALICE, text: "Hello back", quoted: idOf(0), id: undefined });
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(messageFrames().length, 14, "the bot's own echoed message is not forwarded");

  server.child.kill("SIGTERM");
  const [code] = await once(server.child, "exit");
  assert.equal(code, 0, server.stderr());
  assert.deepEqual(await readdir(join(root, "outbox")).then((names) => names.filter((n) => !n.startsWith("."))), [], "every frame was acknowledged");
});

test("demo mode: a bad script stops the start with exit code 2 and says what is wrong", async (t) => {
  const root = await mkdtemp(join(tmpdir(), "node-demo-bad-"));
  t.after(() => rm(root, { recursive: true, force: true }));
  const scriptPath = join(root, "script.json");
  await writeFile(scriptPath, JSON.stringify({ bots: { "demo-bot": [{ type: "image", file: "missing.png" }] } }));
  const server = run({ NODE_INSECURE_DEV: "1", NODE_PORT: "0", AUTH_DIR: join(root, "auth"), POLL_STORE_DIR: join(root, "polls"), NODE_DEMO_SCRIPT: scriptPath });
  const [code] = await once(server.child, "exit");
  assert.equal(code, 2);
  assert.match(server.stderr(), /NODE_DEMO_SCRIPT error: .*script\.json: bots\["demo-bot"\]\[0\]: file .*missing\.png cannot be read \(ENOENT\)/);
});

test("demo script validation names the entry and the fix", async (t) => {
  const root = await mkdtemp(join(tmpdir(), "node-demo-val-"));
  t.after(() => rm(root, { recursive: true, force: true }));
  await writeFile(join(root, "a.png"), randomBytes(10));
  const check = async (doc, pattern) => {
    const path = join(root, "s.json");
    await writeFile(path, typeof doc === "string" ? doc : JSON.stringify(doc));
    await assert.rejects(loadDemoScript(path), (err) => err instanceof DemoScriptError && pattern.test(err.message));
  };
  await assert.rejects(loadDemoScript(join(root, "nope.json")), /cannot read the demo script .*ENOENT/);
  await check("{not json", /is not valid JSON/);
  await check({ bots: {} }, /bots: must be an object with at least one bot/);
  await check({ bots: { "demo-bot": [] }, extra: 1 }, /unknown key "extra"/);
  await check({ bots: { "bad/bot": [] } }, /bot id must be/);
  await check({ bots: { b: [{ type: "poll" }] } }, /bots\["b"\]\[0\]: unknown type "poll"/);
  await check({ bots: { b: [{ type: "text" }] } }, /"text" is required for type "text"/);
  await check({ bots: { b: [{ type: "text", text: "x", caption: "y" }] } }, /key "caption" is not used by type "text"/);
  await check({ bots: { b: [{ type: "text", text: "x", from: "alice" }] } }, /"from" = "alice" is not a valid JID/);
  await check({ bots: { b: [{ type: "text", text: "x", group: "123@s.whatsapp.net" }] } }, /not a valid group JID/);
  await check({ bots: { b: [{ type: "image", file: "a.png", download_fails: "yes" }] } }, /"download_fails" must be true or false/);
  await check({ bots: { b: [{ type: "text", text: "x", delay_ms: -1 }] } }, /"delay_ms" must be a whole number/);
  await check({ bots: { b: [{ type: "sticker", file: "." }] } }, /is not a regular file/);

  const path = join(root, "ok.json");
  await writeFile(path, JSON.stringify({ bots: { b: [{ type: "text", from: BOB, text: "x" }, { type: "image", file: "a.png" }] } }));
  const script = await loadDemoScript(path);
  const [text, image] = script.bots.get("b");
  assert.equal(image.file, join(root, "a.png"), "relative paths resolve against the script's directory");
  assert.equal(image.from, BOB, "from carries over from the previous entry");
  assert.equal(image.mimetype, "image/jpeg");
  assert.equal(text.upsert, "notify");
});
