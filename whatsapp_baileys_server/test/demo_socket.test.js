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
import { DemoScriptError, createDemoWhatsApp, loadDemoScript } from "../src/demo_socket.js";
import { createMessageHandler } from "../src/handler.js";
import { createMemoryLogger } from "../src/logger.js";
import { PollStore } from "../src/poll_store.js";
import { Outbox } from "../src/outbox.js";
import { NodeFrameSchema, encodeNodeFrame, parseNodeFrame, toJson } from "../src/wire.js";
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
        // Through the production wiring (upserts handled concurrently, POLL_STORE_DIR).
        { label: "lunch", type: "poll", question: "Lunch?", options: ["Pizza", "Sushi"] },
        { type: "poll_vote", poll: "lunch", options: ["Sushi"] },
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
    // The fake gateway serves only the WebSocket, not the auth state routes.
    NODE_AUTH_STATE: "files",
    OUTBOX_DIR: join(root, "outbox"),
    POLL_STORE_DIR: join(root, "polls"),
    SENT_IDS_DIR: join(root, "sent_ids"),
    UNDECRYPTABLE_DIR: join(root, "undecryptable"),
    MEDIA_STAGING_DIR: staging,
    // The fake gateway serves no media route either: bytes go to the directory.
    NODE_MEDIA_STAGING: "directory",
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
  await waitFor(() => messageFrames().length === 16, `16 message frames (got ${messageFrames().length})`);

  const injected = server.events().filter((e) => e.event === "message_injected");
  assert.equal(injected.length, 16);
  assert.deepEqual(server.events().find((e) => e.event === "script_done"), { event: "script_done", botId: "demo-bot", messages: 16 });
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
  // The vote is decrypted against the poll the server stored on disk.
  const vote = byId.get(idOf(15)).payload.value.details.kind;
  assert.equal(vote.case, "pollVote");
  const { pollMessageId, decrypted, pollQuestion, selectedOptions } = vote.value;
  assert.deepEqual({ pollMessageId, decrypted, pollQuestion, names: selectedOptions.map((o) => o.name) }, { pollMessageId: idOf(14), decrypted: true, pollQuestion: "Lunch?", names: ["Sushi"] });

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
  assert.deepEqual({ ...reply, id: undefined }, { event: "reply_sent", botId: "demo-bot", to: ALICE, kind: "text", text: "Hello back", quoted: idOf(0), id: undefined });
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(messageFrames().length, 16, "the bot's own echoed message is not forwarded");

  server.child.kill("SIGTERM");
  const [code] = await once(server.child, "exit");
  assert.equal(code, 0, server.stderr());
  assert.deepEqual(await Outbox.pendingIn(join(root, "outbox"), createMemoryLogger().logger), [], "every frame was acknowledged");
});

test("demo mode: a bad script stops the start with exit code 2 and says what is wrong", async (t) => {
  const root = await mkdtemp(join(tmpdir(), "node-demo-bad-"));
  t.after(() => rm(root, { recursive: true, force: true }));
  const scriptPath = join(root, "script.json");
  await writeFile(scriptPath, JSON.stringify({ bots: { "demo-bot": [{ type: "image", file: "missing.png" }] } }));
  const server = run({ NODE_INSECURE_DEV: "1", NODE_PORT: "0", AUTH_DIR: join(root, "auth"), POLL_STORE_DIR: join(root, "polls"), SENT_IDS_DIR: join(root, "sent_ids"), UNDECRYPTABLE_DIR: join(root, "undecryptable"), NODE_DEMO_SCRIPT: scriptPath });
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
  await check({ bots: { b: [{ type: "pool" }] } }, /bots\["b"\]\[0\]: unknown type "pool"; use one of .*poll_vote/);
  await check({ bots: { b: [{ type: "text" }] } }, /"text" is required for type "text"/);
  await check({ bots: { b: [{ type: "text", text: "x", caption: "y" }] } }, /key "caption" is not used by type "text"/);
  await check({ bots: { b: [{ type: "text", text: "x", from: "alice" }] } }, /"from" = "alice" is not a valid JID/);
  await check({ bots: { b: [{ type: "text", text: "x", group: "123@s.whatsapp.net" }] } }, /not a valid group JID/);
  await check({ bots: { b: [{ type: "image", file: "a.png", download_fails: "yes" }] } }, /"download_fails" must be true or false/);
  await check({ bots: { b: [{ type: "text", text: "x", delay_ms: -1 }] } }, /"delay_ms" must be a whole number/);
  await check({ bots: { b: [{ type: "sticker", file: "." }] } }, /is not a regular file/);
  await check({ injected_events: "no", bots: { b: [{ type: "text", text: "x" }] } }, /injected_events: must be true or false/);

  const path = join(root, "ok.json");
  await writeFile(path, JSON.stringify({ bots: { b: [{ type: "text", from: BOB, text: "x" }, { type: "image", file: "a.png" }] } }));
  const script = await loadDemoScript(path);
  const [text, image] = script.bots.get("b");
  assert.equal(image.file, join(root, "a.png"), "relative paths resolve against the script's directory");
  assert.equal(image.from, BOB, "from carries over from the previous entry");
  assert.equal(image.mimetype, "image/jpeg");
  assert.equal(text.upsert, "notify");
});

/**
 * Runs one bot's script through the demo socket into the real message handler (with a
 * real poll store on disk), the way SessionManager wires them, and returns the frames as
 * the gateway parses them, in script order. A scripted disconnect is answered with a new
 * socket, as the session manager does for 515.
 */
async function replay(t, entries, top = {}) {
  const root = await mkdtemp(join(tmpdir(), "node-demo-kinds-"));
  t.after(() => rm(root, { recursive: true, force: true }));
  const path = join(root, "script.json");
  await writeFile(path, JSON.stringify({ default_delay_ms: 1, ...top, bots: { b: entries } }));
  const script = await loadDemoScript(path);
  const { logger, records } = createMemoryLogger();
  const polls = await new PollStore({ dir: join(root, "polls"), maxPolls: 10, logger }).open();
  const frames = [];
  const handler = createMessageHandler({
    stagingDir: root,
    download: async () => {
      throw new Error("no media in this script");
    },
    quotaGbFor: () => 1,
    frameSink: async (frame) => {
      frames.push(frame);
    },
    logger,
    polls,
    meIdOf: () => "4915000000000@s.whatsapp.net",
  });
  const events = [];
  const whatsapp = createDemoWhatsApp(script, { logger, print: (line) => events.push(JSON.parse(line)) });
  // Upserts are handled one after another so a frame's position follows the script.
  let handled = Promise.resolve();
  const connect = () => {
    const sock = whatsapp.makeSocket({}, { userId: "b" });
    sock.ev.on("messages.upsert", (event) => {
      handled = handled.then(() => handler.handleUpsert("b", event));
    });
    sock.ev.on("connection.update", ({ connection }) => {
      if (connection === "close") setImmediate(connect);
    });
  };
  connect();
  await waitFor(() => events.some((e) => e.event === "script_done"), "script replayed");
  await handled;
  assert.deepEqual(records.filter((r) => r.level >= 50), [], "no errors logged");
  const injected = events.filter((e) => e.event === "message_injected");
  const json = frames.map((f) => toJson(NodeFrameSchema, parseNodeFrame(encodeNodeFrame(f))));
  return { injected, json, records };
}

test("demo mode: location, contact, poll, vote, reply, edit, reaction and delete entries reach the handler as WhatsApp sends them", async (t) => {
  const { injected, json } = await replay(t, [
    { label: "hi", from: ALICE, type: "text", text: "Hi!" },
    { type: "location", latitude: 52.516275, longitude: 13.377704, name: "Brandenburger Tor", address: "Pariser Platz, 10117 Berlin" },
    { type: "location", live: true, latitude: 48.137154, longitude: 11.576124, name: "on my way" },
    { type: "contact", name: "Anna Schmidt", phone: "+49 151 23456789" },
    { label: "lunch", type: "poll", question: "Lunch?", options: ["Pizza", "Sushi", "Salad"] },
    { type: "poll_vote", poll: "lunch", options: ["Sushi", "Salad"] },
    { label: "re", type: "reply", reply_to: "hi", text: "and hello again" },
    { type: "edit", target: "hi", text: "Hi there!" },
    { type: "reaction", target: "hi", text: "❤️" },
    { type: "delete", target: "re" },
    // A group poll by Bob, voted on by Alice after a reconnect: the vote is encrypted
    // with the poll's creator and the voter as WhatsApp binds them.
    { label: "dinner", group: FAMILY, from: BOB, type: "poll", question: "Dinner?", options: ["Yes", "No"] },
    { type: "disconnect", status_code: 515 },
    { group: FAMILY, from: ALICE, type: "poll_vote", poll: "dinner", options: ["No"] },
    { group: FAMILY, from: BOB, type: "reply", reply_to: "dinner", text: "Alice?" },
  ]);
  assert.equal(injected.length, 13);
  assert.equal(json.length, 13, "one frame per entry");
  const id = (i) => injected[i].id;
  for (const [i, frame] of json.entries()) {
    const value = frame.textMessage ?? frame.structuredMessage;
    assert.equal(value.header.providerMessageId, id(i), `frame ${i} is entry ${i}`);
  }
  const details = (i) => json[i].structuredMessage.details;
  assert.deepEqual(details(1), {
    location: { latitude: 52.516275, longitude: 13.377704, coordinatesValid: true, name: "Brandenburger Tor", address: "Pariser Platz, 10117 Berlin" },
  });
  assert.deepEqual(details(2), { location: { latitude: 48.137154, longitude: 11.576124, coordinatesValid: true, live: true, comment: "on my way" } });
  assert.deepEqual(details(3), { contacts: { contacts: [{ displayName: "Anna Schmidt", phoneNumbers: [{ number: "+49 151 23456789", waId: "4915123456789" }] }] } });
  assert.deepEqual(details(4), { poll: { question: "Lunch?", options: [{ name: "Pizza" }, { name: "Sushi" }, { name: "Salad" }] } });
  assert.deepEqual(details(5), {
    pollVote: { pollMessageId: id(4), decrypted: true, pollQuestion: "Lunch?", selectedOptions: [{ name: "Sushi" }, { name: "Salad" }] },
  });
  assert.deepEqual(json[6].textMessage.message, "and hello again");
  assert.deepEqual(json[6].textMessage.replyTo, { quotedMessageId: id(0), quotedSender: ALICE, snippet: "Hi!" });
  assert.deepEqual(details(7), { edit: { targetMessageId: id(0), text: "Hi there!", decrypted: true } });
  assert.deepEqual(details(8), { reaction: { targetMessageId: id(0), emoji: "❤️" } });
  assert.deepEqual(details(9), { deletion: { targetMessageId: id(6) } });
  assert.equal(json[10].structuredMessage.header.correspondentId, FAMILY);
  assert.equal(json[10].structuredMessage.header.sender, BOB);
  assert.deepEqual(details(11), { pollVote: { pollMessageId: id(10), decrypted: true, pollQuestion: "Dinner?", selectedOptions: [{ name: "No" }] } });
  assert.equal(json[11].structuredMessage.header.sender, ALICE);
  assert.deepEqual(json[12].textMessage.replyTo, { quotedMessageId: id(10), quotedSender: BOB, snippet: "Dinner?" });
});

test("demo mode: each vote is bound to its own poll, an empty choice withdraws it, a reaction without target names the previous message", async (t) => {
  // Two polls with the same options: a vote must be bound to its own poll's secret.
  const { injected, json } = await replay(t, [
    { label: "p1", from: ALICE, type: "poll", question: "One?", options: ["a", "b"] },
    { label: "p2", type: "poll", question: "Two?", options: ["a", "b"] },
    { type: "poll_vote", poll: "p1", options: ["b"] },
    { type: "poll_vote", poll: "p2", options: [] },
    { type: "reaction", text: "👀" },
  ]);
  assert.deepEqual(json[2].structuredMessage.details.pollVote, { pollMessageId: injected[0].id, decrypted: true, pollQuestion: "One?", selectedOptions: [{ name: "b" }] });
  // An empty choice withdraws the vote: decrypted, nothing selected.
  assert.deepEqual(json[3].structuredMessage.details.pollVote, { pollMessageId: injected[1].id, decrypted: true, pollQuestion: "Two?" });
  // Without a target a reaction still names the previous message.
  assert.equal(json[4].structuredMessage.details.reaction.targetMessageId, injected[3].id);
});

test("demo script validation refuses bad new entries and unknown labels, naming the entry", async (t) => {
  const root = await mkdtemp(join(tmpdir(), "node-demo-val2-"));
  t.after(() => rm(root, { recursive: true, force: true }));
  const check = async (entries, pattern) => {
    const path = join(root, "s.json");
    await writeFile(path, JSON.stringify({ bots: { b: entries } }));
    await assert.rejects(loadDemoScript(path), (err) => {
      assert.ok(err instanceof DemoScriptError, String(err));
      assert.match(err.message, pattern);
      return true;
    });
  };
  const hi = { label: "hi", from: ALICE, type: "text", text: "Hi!" };
  const poll = { label: "lunch", type: "poll", question: "Lunch?", options: ["Pizza", "Sushi"] };
  await check([{ type: "location", latitude: 52.5 }], /bots\["b"\]\[0\]: "longitude" is required for type "location"/);
  await check([{ type: "location", latitude: "52", longitude: 13 }], /\[0\]: "latitude" must be a number -90\.\.90/);
  await check([{ type: "location", latitude: 52, longitude: 13, live: true, address: "x" }], /"address" is not sent with "live": true/);
  await check([{ type: "location", latitude: 52, longitude: 13, live: "yes" }], /"live" must be true or false/);
  await check([{ type: "contact", name: "Anna" }], /"phone" is required for type "contact"/);
  await check([{ type: "contact", name: "Anna", phone: "call me" }], /"phone" = "call me" must be a phone number/);
  await check([{ type: "poll", question: "Q?", options: ["only"] }], /\[0\]: "options" must be a list of 2-12 option names/);
  await check([{ type: "poll", question: "Q?", options: ["a", "a"] }], /"options" names an option twice/);
  await check([{ type: "poll", question: "Q?", options: ["a", 3] }], /"options" must hold non-empty strings/);
  await check([{ type: "poll", options: ["a", "b"] }], /"question" is required for type "poll"/);
  await check([hi, { type: "poll_vote", poll: "lunch", options: ["Pizza"] }], /bots\["b"\]\[1\]: "poll" refers to label "lunch", which no earlier entry of this bot carries/);
  await check([hi, { type: "poll_vote", poll: "hi", options: ["Pizza"] }], /\[1\]: "poll" = "hi" names a "text" entry \(bots\["b"\]\[0\]\); it must name a poll entry/);
  await check([poll, { type: "poll_vote", poll: "lunch", options: ["Burger"] }], /\[1\]: option "Burger" is not one of poll "lunch"'s options: Pizza, Sushi/);
  await check([poll, { type: "poll_vote", poll: "lunch", from: BOB, options: ["Pizza"] }], /\[1\]: "poll" = "lunch" is a message in chat 4915100000001@s\.whatsapp\.net, but this entry is in chat 4915100000002@s\.whatsapp\.net/);
  await check([{ type: "reply", text: "yes", reply_to: "later" }, { ...hi, label: "later" }], /\[0\]: "reply_to" refers to label "later", which no earlier entry/);
  await check([hi, { type: "reply", reply_to: "hi" }], /\[1\]: "text" is required for type "reply"/);
  await check([hi, { type: "edit", target: "nope", text: "x" }], /\[1\]: "target" refers to label "nope"/);
  await check([poll, { type: "edit", target: "lunch", text: "x" }], /\[1\]: "target" = "lunch" names a "poll" entry .*; it must name a text entry/);
  await check([hi, { group: FAMILY, type: "edit", target: "hi", text: "x" }], /\[1\]: "target" = "hi" is a message in chat 4915100000001@s\.whatsapp\.net, but this entry is in chat 120363000000000001@g\.us/);
  await check([{ ...hi, group: FAMILY }, { group: FAMILY, from: BOB, type: "edit", target: "hi", text: "x" }], /only the sender of "hi" \(4915100000001@s\.whatsapp\.net\) can edit it/);
  await check([hi, { type: "delete" }], /"target" is required for type "delete"/);
  await check([hi, { type: "reaction", target: "gone" }], /\[1\]: "target" refers to label "gone"/);
  await check([hi, { ...hi }], /\[1\]: label "hi" is already used by bots\["b"\]\[0\]; labels are unique per bot/);
  await check([{ ...hi, label: "has space" }], /"label" = "has space" must be 1-64 letters/);
  await check([hi, { type: "delete", target: "hi", text: "x" }], /key "text" is not used by type "delete"/);
  await check([{ type: "disconnect", label: "d" }], /key "label" is not used by type "disconnect"/);

  // Labels are per bot: another bot's label is unknown.
  const path = join(root, "two.json");
  await writeFile(path, JSON.stringify({ bots: { a: [hi], b: [{ from: ALICE, type: "delete", target: "hi" }] } }));
  await assert.rejects(loadDemoScript(path), /bots\["b"\]\[0\]: "target" refers to label "hi", which no earlier entry of this bot carries/);
});

test("demo mode: injected_events false prints no line per message, and every message still reaches the handler", async (t) => {
  const entries = [
    { from: ALICE, type: "text", text: "one" },
    { from: BOB, type: "text", text: "two" },
  ];
  const quiet = await replay(t, entries, { injected_events: false });
  assert.deepEqual(quiet.injected, []);
  assert.deepEqual(quiet.json.map((f) => f.textMessage.message), ["one", "two"]);
  const loud = await replay(t, entries);
  assert.deepEqual(loud.injected.map((e) => e.from), [ALICE, BOB]);
});
