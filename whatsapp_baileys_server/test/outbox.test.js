// Frames to the gateway survive a gateway outage and a Node restart, are delivered in
// order per chat, and are dropped from the outbox only once acknowledged. A real local
// WebSocket server plays the gateway.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { AckStatus } from "../src/gen/chatbot/wire/v1/frames_pb.js";
import { GatewayClient } from "../src/gateway_client.js";
import { Outbox } from "../src/outbox.js";
import { createMemoryLogger } from "../src/logger.js";
import { dateNow } from "./helpers/clock.js";
import { NodeFrameSchema, buildNodeFrame, toJson } from "../src/wire.js";
import { TOKEN, startGateway } from "./helpers/fake_gateway.js";

const FAST = { initialMs: 20, maxMs: 100 };

function textFrame(chat, text) {
  return buildNodeFrame({
    payload: {
      case: "textMessage",
      value: {
        header: {
          botId: "bot-1",
          correspondentId: chat,
          sender: chat,
          providerMessageId: `id-${text}`,
          originatingTime: timestampFromDate(dateNow()),
        },
        message: text,
      },
    },
  });
}

async function node(dir, url, extra = {}) {
  const { logger, records } = createMemoryLogger("debug");
  const outbox = await new Outbox({ dir, logger }).open();
  const client = new GatewayClient({
    url,
    token: TOKEN,
    outbox,
    logger,
    onOutgoing: async () => ({ status: AckStatus.ACCEPTED }),
    reconnect: FAST,
    retry: FAST,
    ackTimeoutMs: 5000,
    ...extra,
  });
  return { outbox, client, records };
}

function textsOf(frames, chat) {
  return frames
    .filter((f) => f.payload.case === "textMessage" && f.payload.value.header.correspondentId === chat)
    .map((f) => f.payload.value.message);
}

async function tempDir(t) {
  const dir = await mkdtemp(join(tmpdir(), "outbox-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

test("frames queued during a gateway outage are delivered after it, in order per chat", async (t) => {
  const dir = await tempDir(t);
  // Reserve a port, then take the gateway down: Node starts during the outage.
  const first = await startGateway();
  const { port, url } = first;
  await first.close();

  const { outbox, client } = await node(dir, url);
  client.start();
  for (const [chat, text] of [["a@s", "a1"], ["b@s", "b1"], ["a@s", "a2"], ["a@s", "a3"], ["b@s", "b2"]]) {
    await client.send(textFrame(chat, text), `bot-1\u0000${chat}`);
  }
  assert.equal((await Outbox.pendingIn(dir, outbox.logger)).length, 5, "every unacknowledged frame is on disk");
  await new Promise((r) => setTimeout(r, 150)); // a few failed reconnects

  const gateway = await startGateway({ port });
  t.after(() => gateway.close());
  await gateway.waitFor(() => gateway.data().length >= 5 && outbox.size === 0);
  await client.stop();

  assert.deepEqual(textsOf(gateway.data(), "a@s"), ["a1", "a2", "a3"]);
  assert.deepEqual(textsOf(gateway.data(), "b@s"), ["b1", "b2"]);
  assert.equal(gateway.data().length, 5, "each frame delivered once");
  assert.ok(gateway.authHeaders.every((h) => h === `Bearer ${TOKEN}`));
  assert.deepEqual(await Outbox.pendingIn(dir, outbox.logger), [], "acknowledged frames leave the outbox");
  assert.equal(await outbox.logSize(), 0, "a log with nothing pending is emptied");
});

test("unacknowledged frames survive a Node restart and are delivered once acknowledged", async (t) => {
  const dir = await tempDir(t);
  // A gateway that receives but never answers (e.g. its backend is stuck).
  const silent = await startGateway({ decide: () => null });
  const run1 = await node(dir, silent.url);
  run1.client.start();
  await run1.client.send(textFrame("a@s", "one"), "bot-1\u0000a@s");
  await run1.client.send(textFrame("a@s", "two"), "bot-1\u0000a@s");
  await run1.client.send(textFrame("c@s", "three"), "bot-1\u0000c@s");
  await silent.waitFor(() => silent.data().length === 3);
  assert.deepEqual(textsOf(silent.data(), "a@s"), ["one", "two"], "a chat's frames are in flight together, in order");
  await run1.client.stop(); // Node goes down with three frames unacknowledged
  await silent.close();

  const gateway = await startGateway();
  t.after(() => gateway.close());
  const run2 = await node(dir, gateway.url);
  assert.equal(run2.outbox.size, 3, "the restarted Node finds its pending frames");
  run2.client.start();
  await gateway.waitFor(() => gateway.data().length >= 3 && run2.outbox.size === 0);
  await run2.client.stop();
  assert.deepEqual(textsOf(gateway.data(), "a@s"), ["one", "two"]);
  assert.deepEqual(textsOf(gateway.data(), "c@s"), ["three"]);
  const ids = gateway.data().map((f) => f.frameId).sort();
  assert.deepEqual(ids, silent.data().map((f) => f.frameId).sort(), "resent frames keep their frame ids");

  // A third run has nothing left to send.
  const gateway3 = await startGateway();
  t.after(() => gateway3.close());
  const run3 = await node(dir, gateway3.url);
  assert.equal(run3.outbox.size, 0);
  run3.client.start();
  await gateway3.waitFor(() => gateway3.sockets.size === 1);
  // A new frame sent now arrives after anything the outbox would resend: once it is
  // there, everything is.
  await run3.client.send(textFrame("d@s", "fresh"), "bot-1\u0000d@s");
  await gateway3.waitFor(() => gateway3.data().length >= 1);
  await run3.client.stop();
  assert.deepEqual(gateway3.data().map((f) => f.payload.value.message), ["fresh"], "acknowledged frames are never sent again");
});

test("RETRY keeps the frame and resends it after a backoff, holding its chat's later frames", async (t) => {
  const dir = await tempDir(t);
  // Plays the gateway's rule: after a RETRY, the chat's later frames are answered RETRY
  // until the frame that got it comes back and is taken.
  const held = new Map(); // chat → the text whose RETRY holds it
  const accepted = [];
  const gateway = await startGateway({
    decide: (frame, count) => {
      const { message: text, header } = frame.payload.value;
      const chat = header.correspondentId;
      if (held.has(chat) && held.get(chat) !== text) return AckStatus.RETRY;
      if (text === "first" && count < 3) {
        held.set(chat, "first");
        return AckStatus.RETRY;
      }
      if (held.get(chat) === text) held.delete(chat);
      accepted.push(text);
      return AckStatus.ACCEPTED;
    },
  });
  t.after(() => gateway.close());
  const { outbox, client, records } = await node(dir, gateway.url);
  client.start();
  await client.send(textFrame("a@s", "first"), "bot-1\u0000a@s");
  await client.send(textFrame("a@s", "second"), "bot-1\u0000a@s");
  await client.send(textFrame("b@s", "other chat"), "bot-1\u0000b@s");
  await gateway.waitFor(() => outbox.size === 0);
  await client.stop();
  assert.deepEqual(accepted.filter((x) => x !== "other chat"), ["first", "second"], "taken in order");
  assert.equal(textsOf(gateway.data(), "a@s").filter((x) => x === "first").length, 3, "first sent until taken");
  assert.deepEqual(textsOf(gateway.data(), "b@s"), ["other chat"], "another chat never waits");
  assert.ok(records.filter((r) => r.msg === "gateway asked to retry later").length >= 2);
});

test("a chat keeps up to chatWindow frames in flight, in order", async (t) => {
  const dir = await tempDir(t);
  const gateway = await startGateway({ decide: () => null }); // never answers
  t.after(() => gateway.close());
  const { client } = await node(dir, gateway.url, { chatWindow: 4 });
  client.start();
  for (let i = 0; i < 10; i++) await client.send(textFrame("a@s", `m${i}`), "bot-1\u0000a@s");
  await gateway.waitFor(() => gateway.data().length >= 4);
  await new Promise((r) => setTimeout(r, 100));
  await client.stop();
  assert.deepEqual(textsOf(gateway.data(), "a@s"), ["m0", "m1", "m2", "m3"]);
});

test("REJECTED and DUPLICATE acks remove the frame; a rejection is logged as an error", async (t) => {
  const dir = await tempDir(t);
  const gateway = await startGateway({
    decide: (frame) => (frame.payload.value.message === "bad" ? AckStatus.REJECTED : AckStatus.DUPLICATE),
  });
  t.after(() => gateway.close());
  const { outbox, client, records } = await node(dir, gateway.url);
  client.start();
  await client.send(textFrame("a@s", "bad"), "bot-1\u0000a@s");
  await client.send(textFrame("a@s", "again"), "bot-1\u0000a@s");
  await gateway.waitFor(() => outbox.size === 0);
  await client.stop();
  const rejection = records.find((r) => r.msg === "gateway rejected a frame; dropped");
  assert.equal(rejection.level, "error");
  assert.equal(rejection.reason, "test says no");
  assert.deepEqual(await Outbox.pendingIn(dir, outbox.logger), []);
});

test("an outgoing message is sent once and acknowledged, also when the gateway resends it", async (t) => {
  const dir = await tempDir(t);
  const gateway = await startGateway();
  t.after(() => gateway.close());
  const sent = [];
  const { client, outbox } = await node(dir, gateway.url, {
    onOutgoing: async (outgoing, frameId) => {
      sent.push({ frameId, ...outgoing });
      return outgoing.botId === "bot-1"
        ? { status: AckStatus.ACCEPTED }
        : { status: AckStatus.REJECTED, reason: `no open session for bot ${outgoing.botId}` };
    },
  });
  client.start();
  await gateway.waitFor(() => gateway.sockets.size === 1);
  const reply = { case: "outgoingMessage", value: { botId: "bot-1", correspondentId: "a@s", text: "Thanks, got it.", quotedProviderMessageId: "3EB0" } };
  gateway.send({ frameId: "g-1", payload: reply });
  gateway.send({ frameId: "g-2", payload: { case: "outgoingMessage", value: { botId: "bot-9", correspondentId: "a@s", text: "hi" } } });
  await gateway.waitFor(() => gateway.acks().length === 2);
  gateway.send({ frameId: "g-1", payload: reply }); // the gateway did not see our ack in time
  await gateway.waitFor(() => gateway.acks().length === 3);
  gateway.send({ frameId: "g-3", payload: { case: "outgoingMessage", value: { botId: "bot-1", correspondentId: "a@s" } } });
  await gateway.waitFor(() => gateway.acks().length === 4);
  await client.stop();

  assert.deepEqual(sent.map((s) => s.frameId), ["g-1", "g-2"], "the resent g-1 is not sent to WhatsApp twice; invalid g-3 never");
  assert.equal(sent[0].text, "Thanks, got it.");
  assert.equal(sent[0].quotedProviderMessageId, "3EB0");
  const acks = gateway.acks();
  assert.deepEqual(acks.map((a) => [a.frameId, a.status]), [
    ["g-1", AckStatus.ACCEPTED],
    ["g-2", AckStatus.REJECTED],
    ["g-1", AckStatus.ACCEPTED],
    ["g-3", AckStatus.REJECTED],
  ]);
  assert.equal(acks[1].reason, "no open session for bot bot-9");
  assert.equal(acks[3].reason, "invalid frame: outgoing_message.text: required");
  assert.deepEqual(await Outbox.pendingIn(dir, outbox.logger), [], "acks are not kept in the outbox");
  assert.equal(outbox.batches, 0, "nothing was written to the log");
});

test("a torn last record and an unreadable record from a crash do not stop the outbox from opening", async (t) => {
  const dir = await tempDir(t);
  const { logger, records } = createMemoryLogger();
  const first = await new Outbox({ dir, logger }).open();
  await first.add(textFrame("a@s", "kept-1"), "k");
  await first.add(textFrame("a@s", "kept-2"), "k");
  await first.close();
  const log = join(dir, "outbox.log");
  const intact = await readFile(log, "utf8");
  // A damaged record in the middle, then a batch torn by a crash mid-write.
  await writeFile(log, `${intact}not json\n${intact.split("\n")[0].slice(0, 40)}`);
  const outbox = await new Outbox({ dir, logger }).open();
  assert.deepEqual(outbox.pending().map((e) => e.frame.payload.value.message), ["kept-1", "kept-2"]);
  assert.equal(records.filter((r) => r.level === "error" && r.msg === "unreadable outbox record skipped").length, 1, "the torn tail is not an error");
  const entry = await outbox.add(textFrame("a@s", "x"), "k");
  assert.equal(entry.seq, 3, "new frames sort after anything left on disk");
  await outbox.close();
  assert.deepEqual(await readdir(dir), ["outbox.log"]);
});

test("per-frame files of the previous format are migrated into the log, in order", async (t) => {
  const dir = await tempDir(t);
  const { logger, records } = createMemoryLogger();
  for (const [n, text] of [[7, "old-1"], [9, "old-2"]]) {
    const body = JSON.stringify({ chatKey: "k", frame: toJson(NodeFrameSchema, textFrame("a@s", text)) });
    await writeFile(join(dir, `${String(n).padStart(16, "0")}.json`), body);
  }
  await writeFile(join(dir, "0000000000000010.json.tmp"), "{\"chatKey\":");
  await writeFile(join(dir, "0000000000000011.json"), "not json");
  const outbox = await new Outbox({ dir, logger }).open();
  assert.deepEqual(outbox.pending().map((e) => e.frame.payload.value.message), ["old-1", "old-2"]);
  assert.ok(records.some((r) => r.level === "error" && r.msg === "unreadable outbox file set aside"));
  await outbox.close();
  assert.deepEqual((await readdir(dir)).sort(), ["0000000000000011.json.corrupt", "outbox.log"]);
  assert.equal((await Outbox.pendingIn(dir, logger)).length, 2, "the log holds them before the files go");
});

test("frames added together share one write and one fsync, and every one is durable", async (t) => {
  const dir = await tempDir(t);
  const { logger } = createMemoryLogger();
  const outbox = await new Outbox({ dir, logger }).open();
  const frames = Array.from({ length: 200 }, (_, i) => textFrame(`c${i % 20}@s`, `m${i}`));
  const entries = await Promise.all(frames.map((f, i) => outbox.add(f, `k${i % 20}`)));
  assert.deepEqual(entries.map((e) => e.seq), frames.map((_, i) => i + 1), "sequence follows the order of add()");
  assert.ok(outbox.batches <= 2, `200 concurrent frames took ${outbox.batches} batches`);
  assert.deepEqual(await Outbox.pendingIn(dir, logger), frames.map((f) => f.frameId));
  await Promise.all(frames.slice(0, 150).map((f) => outbox.remove(f.frameId)));
  assert.deepEqual(await Outbox.pendingIn(dir, logger), frames.slice(150).map((f) => f.frameId));
  await outbox.close();
});

test("deletions cost no fsync of their own; a frame's add always does", async (t) => {
  const dir = await tempDir(t);
  const { logger } = createMemoryLogger();
  const outbox = await new Outbox({ dir, logger }).open();
  const first = textFrame("a@s", "one");
  await outbox.add(first, "k");
  assert.equal(outbox.syncs, 1);
  await outbox.remove(first.frameId);
  assert.equal(outbox.syncs, 1, "the deletion (and the emptied log) waited for no fsync");
  assert.deepEqual(await Outbox.pendingIn(dir, logger), [], "written all the same");
  const second = textFrame("a@s", "two");
  await outbox.add(second, "k");
  assert.equal(outbox.syncs, 2);
  await outbox.close();
  const reopened = await new Outbox({ dir, logger }).open();
  assert.deepEqual(reopened.pending().map((e) => e.frameId), [second.frameId]);
  await reopened.close();
});

test("a mostly dead log is rewritten, and what is pending survives it", async (t) => {
  const dir = await tempDir(t);
  const { logger } = createMemoryLogger();
  const outbox = await new Outbox({ dir, logger, compactBytes: 16 * 1024 }).open();
  const keep = textFrame("a@s", "keep");
  await outbox.add(keep, "k");
  for (let i = 0; i < 300; i++) {
    const frame = textFrame("b@s", `gone-${i}`);
    await outbox.add(frame, "k2");
    await outbox.remove(frame.frameId);
  }
  assert.ok((await outbox.logSize()) < 32 * 1024, `log is ${await outbox.logSize()} bytes`);
  assert.deepEqual(await Outbox.pendingIn(dir, logger), [keep.frameId]);
  await outbox.close();
  const reopened = await new Outbox({ dir, logger }).open();
  assert.deepEqual(reopened.pending().map((e) => e.frameId), [keep.frameId]);
  await reopened.close();
});
