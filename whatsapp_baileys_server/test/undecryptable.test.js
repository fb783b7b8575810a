// Nothing in silence, never twice: a message Baileys could not decrypt waits for its
// readable copy for a window; the copy goes through as any message, or else the bot gets
// exactly one `undecryptable` marker. Pending stubs live on disk and survive a restart.
// Time is a test clock advanced by hand (no sleeps); expiry is driven by expireDue().
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createMessageHandler } from "../src/handler.js";
import { createMemoryLogger } from "../src/logger.js";
import { PendingStubs } from "../src/undecryptable.js";
import { NodeFrameSchema, encodeNodeFrame, parseNodeFrame, toJson } from "../src/wire.js";
import { nowSeconds } from "./helpers/clock.js";

const BOT = "bot-stubs";
const WINDOW_MS = 60_000;
const CHAT = "210000000000009@lid";

/** A handler and its pending-stub store on `dir`, sharing one hand-driven clock. */
async function node(dir, clock, sink) {
  const { logger } = createMemoryLogger();
  let handler;
  const pendingStubs = await new PendingStubs({
    dir: join(dir, "undecryptable"),
    windowMs: WINDOW_MS,
    now: () => clock.now,
    logger,
    onExpire: (botId, stub) => handler.emitUndecryptable(botId, stub, stub.messageStubParameters?.[0] || "no content"),
  }).open();
  handler = createMessageHandler({
    stagingDir: dir,
    download: async () => {
      throw new Error("no media");
    },
    quotaGbFor: () => 1,
    frameSink: async (frame) => {
      sink.push(toJson(NodeFrameSchema, parseNodeFrame(encodeNodeFrame(frame))));
    },
    logger,
    pendingStubs,
  });
  return { handler, pendingStubs };
}

function stub(id, reason = "Bad MAC") {
  return { key: { remoteJid: CHAT, fromMe: false, id }, messageTimestamp: nowSeconds(-3), pushName: "Bea", messageStubType: 2, messageStubParameters: [reason] };
}

function readable(id) {
  return { key: { remoteJid: CHAT, fromMe: false, id }, messageTimestamp: nowSeconds(-3), pushName: "Bea", message: { conversation: `readable ${id}` } };
}

async function withDir(fn) {
  const dir = await mkdtemp(join(tmpdir(), "stubs-"));
  try {
    await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

test("the readable copy within the window goes through; no marker follows", async () => {
  await withDir(async (dir) => {
    const clock = { now: Date.now() };
    const sink = [];
    const { handler, pendingStubs } = await node(dir, clock, sink);
    await handler.handleUpsert(BOT, { type: "notify", messages: [stub("S1")] });
    assert.deepEqual(sink, [], "nothing before the copy or the window");
    clock.now += WINDOW_MS - 1;
    await pendingStubs.expireDue();
    await handler.handleUpsert(BOT, { type: "notify", messages: [readable("S1")] });
    clock.now += 10 * WINDOW_MS;
    await pendingStubs.expireDue();
    assert.deepEqual(sink.map((f) => f.textMessage?.message), ["readable S1"], "the copy, and nothing else");
    assert.deepEqual(await readdir(join(dir, "undecryptable")), [], "the stub is forgotten");
  });
});

test("without a copy the bot gets exactly one marker; a late copy and a repeated stub are dropped and counted", async () => {
  await withDir(async (dir) => {
    const clock = { now: Date.now() };
    const sink = [];
    const { handler, pendingStubs } = await node(dir, clock, sink);
    await handler.handleUpsert(BOT, { type: "notify", messages: [stub("S2", "No session found to decrypt message")] });
    await handler.handleUpsert(BOT, { type: "append", messages: [stub("S2", "No session found to decrypt message")] });
    clock.now += WINDOW_MS;
    await pendingStubs.expireDue();
    await pendingStubs.expireDue();
    assert.equal(sink.length, 1);
    const marker = sink[0].structuredMessage;
    assert.deepEqual(marker.details, { undecryptable: { reason: "No session found to decrypt message" } });
    assert.equal(marker.header.correspondentId, CHAT);
    assert.equal(marker.header.providerMessageId, "S2");
    assert.equal(marker.header.context.senderName, "Bea");
    await handler.handleUpsert(BOT, { type: "notify", messages: [readable("S2")] });
    await handler.handleUpsert(BOT, { type: "notify", messages: [stub("S2")] });
    assert.equal(sink.length, 1, "never both, never two markers");
    assert.equal(handler.drops.get("late_copy_after_marker"), 1);
    assert.equal(handler.drops.get("undecryptable_repeat"), 1);
  });
});

test("pending stubs survive a restart: after it, the window still ends in one marker, or the copy still goes through", async () => {
  await withDir(async (dir) => {
    const clock = { now: Date.now() };
    const before = [];
    const first = await node(dir, clock, before);
    await first.handler.handleUpsert(BOT, { type: "notify", messages: [stub("S3"), stub("S4")] });
    await first.pendingStubs.stop();
    assert.equal((await readdir(join(dir, "undecryptable"))).length, 2, "both stubs are on disk");

    // A new process on the same directory.
    const after = [];
    const second = await node(dir, clock, after);
    assert.equal(second.pendingStubs.state(BOT, "S3"), "pending");
    await second.handler.handleUpsert(BOT, { type: "notify", messages: [readable("S4")] });
    clock.now += WINDOW_MS;
    await second.pendingStubs.expireDue();
    assert.deepEqual(before, []);
    assert.deepEqual(after.map((f) => f.textMessage?.message ?? Object.keys(f.structuredMessage.details)[0]), ["readable S4", "undecryptable"]);
    assert.equal(after[1].structuredMessage.header.providerMessageId, "S3");
    assert.equal(after[1].structuredMessage.header.correspondentId, CHAT);

    // And a third process still knows S3's marker was sent.
    const third = [];
    const again = await node(dir, clock, third);
    await again.handler.handleUpsert(BOT, { type: "notify", messages: [readable("S3")] });
    await again.pendingStubs.expireDue();
    assert.deepEqual(third, [], "a copy after the marker is not forwarded, even after a restart");
  });
});

test("a view-once stub is never readable on a linked device: one marker at once, marked view-once", async () => {
  await withDir(async (dir) => {
    const clock = { now: Date.now() };
    const sink = [];
    const { handler } = await node(dir, clock, sink);
    const msg = { key: { remoteJid: CHAT, fromMe: false, id: "VO1", isViewOnce: true }, messageTimestamp: nowSeconds(-3) };
    await handler.handleUpsert(BOT, { type: "notify", messages: [msg, msg] });
    assert.equal(sink.length, 1);
    assert.equal(sink[0].structuredMessage.header.context.viewOnce, true);
    assert.match(sink[0].structuredMessage.details.undecryptable.reason, /view-once/);
  });
});
