// Outgoing messages from the gateway's outbox to (demo) WhatsApp: every kind becomes the
// Baileys call it needs, under the WhatsApp id derived from its key; a key already sent
// is answered SENT without posting again, also after a restart; outcomes are reported
// as OutgoingResult frames.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { AckStatus, OutgoingKind, OutgoingMessageSchema, OutgoingStatus, SessionState } from "../src/gen/chatbot/wire/v1/frames_pb.js";
import { createDemoWhatsApp } from "../src/demo_socket.js";
import { createMemoryLogger } from "../src/logger.js";
import { OutgoingSender, VOICE_NOTE_MIME } from "../src/outgoing.js";
import { SentIds } from "../src/sent_ids.js";

const BOT = "bot-1";
const ALICE = "4915112345678@s.whatsapp.net";

async function setUp(t, { state = SessionState.OPEN } = {}) {
  const dir = await mkdtemp(join(tmpdir(), "outgoing-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const { logger } = createMemoryLogger();
  const lines = [];
  const whatsapp = createDemoWhatsApp({ bots: new Map() }, { logger, print: (line) => lines.push(JSON.parse(line)) });
  const sock = whatsapp.makeSocket({ logger }, { userId: BOT });
  t.after(() => sock.end(undefined));
  const session = { state, config: {} };
  const sessions = {
    sessions: new Map([[BOT, session]]),
    socketFor: (botId) => (botId === BOT && session.state === SessionState.OPEN ? sock : undefined),
  };
  const frames = [];
  const open = async () => {
    const sentKeys = await new SentIds({ dir: join(dir, "keys"), logger }).open();
    const sentIds = await new SentIds({ dir: join(dir, "ids"), logger }).open();
    return {
      sentIds,
      sender: new OutgoingSender({ sessions, sentKeys, sentIds, emitFrame: async (frame) => frames.push(frame), logger }),
    };
  };
  return { ...(await open()), open, session, lines, frames, sock };
}

function outgoing(fields) {
  return create(OutgoingMessageSchema, { botId: BOT, correspondentId: ALICE, ...fields });
}

const results = (frames) => frames.map((f) => f.payload.value).map(({ idempotencyKey, status, providerMessageId, reason }) => ({ idempotencyKey, status, providerMessageId, reason }));

test("every kind reaches WhatsApp as its Baileys call, under the derived id", async (t) => {
  const { sender, sentIds, lines, frames } = await setUp(t);
  const png = Buffer.from("89504e470d0a1a0a0000000d49484452", "hex");
  const ogg = Buffer.from("OggS-voice");
  const sends = [
    outgoing({ kind: OutgoingKind.TEXT, text: "Hi", idempotencyKey: "k-text", providerMessageId: "3EB0000000000000000001", quotedProviderMessageId: "WA-Q" }),
    outgoing({ kind: OutgoingKind.IMAGE, text: "receipt", idempotencyKey: "k-image", providerMessageId: "3EB0000000000000000002", media: { data: png, mimeType: "image/png" } }),
    outgoing({ kind: OutgoingKind.DOCUMENT, idempotencyKey: "k-doc", providerMessageId: "3EB0000000000000000003", media: { data: png, mimeType: "application/pdf", filename: "menu.pdf" } }),
    outgoing({ kind: OutgoingKind.VOICE_NOTE, idempotencyKey: "k-voice", providerMessageId: "3EB0000000000000000004", media: { data: ogg, mimeType: "audio/ogg" } }),
    outgoing({ kind: OutgoingKind.VIDEO, idempotencyKey: "k-video", providerMessageId: "3EB0000000000000000005", media: { data: png, mimeType: "video/mp4" } }),
    outgoing({ kind: OutgoingKind.AUDIO, idempotencyKey: "k-audio", providerMessageId: "3EB0000000000000000006", media: { data: ogg, mimeType: "audio/mpeg" } }),
    outgoing({ kind: OutgoingKind.REACTION, reactionEmoji: "👍", targetMessageId: "WA-1", idempotencyKey: "k-react", providerMessageId: "3EB0000000000000000007" }),
    outgoing({ kind: OutgoingKind.READ, targetMessageId: "WA-1", idempotencyKey: "k-read" }),
    outgoing({ kind: OutgoingKind.TYPING, idempotencyKey: "k-typing" }),
  ];
  for (const message of sends) assert.deepEqual(await sender.send(message), { status: AckStatus.ACCEPTED });
  const sha = (bytes) => createHash("sha256").update(bytes).digest("hex");
  const strip = ({ botId, to, ...rest }) => rest;
  assert.deepEqual(lines.filter((l) => l.event !== "script_done").map(strip), [
    { event: "reply_sent", kind: "text", text: "Hi", quoted: "WA-Q", id: "3EB0000000000000000001" },
    { event: "reply_sent", kind: "image", bytes: png.length, sha256: sha(png), mimetype: "image/png", text: "receipt", id: "3EB0000000000000000002" },
    { event: "reply_sent", kind: "document", bytes: png.length, sha256: sha(png), mimetype: "application/pdf", fileName: "menu.pdf", id: "3EB0000000000000000003" },
    { event: "reply_sent", kind: "voice_note", bytes: ogg.length, sha256: sha(ogg), mimetype: VOICE_NOTE_MIME, ptt: true, id: "3EB0000000000000000004" },
    { event: "reply_sent", kind: "video", bytes: png.length, sha256: sha(png), mimetype: "video/mp4", id: "3EB0000000000000000005" },
    { event: "reply_sent", kind: "audio", bytes: ogg.length, sha256: sha(ogg), mimetype: "audio/mpeg", id: "3EB0000000000000000006" },
    { event: "reply_sent", kind: "reaction", emoji: "👍", target: "WA-1", id: "3EB0000000000000000007" },
    { event: "read_sent", chat: ALICE, id: "WA-1" },
    { event: "presence_sent", presence: "composing" },
  ]);
  // Own echoes are recognised by id (the handler drops them).
  assert.ok(sentIds.has(BOT, "3EB0000000000000000002"));
  assert.deepEqual(results(frames).map((r) => [r.idempotencyKey, r.status]), sends.map((m) => [m.idempotencyKey, OutgoingStatus.SENT]));
  assert.equal(results(frames)[1].providerMessageId, "3EB0000000000000000002");
});

test("a key already sent is answered SENT without posting again, also after a restart", async (t) => {
  const { sender, open, lines, frames } = await setUp(t);
  const message = outgoing({ kind: OutgoingKind.TEXT, text: "once", idempotencyKey: "k-1", providerMessageId: "3EB0AAAAAAAAAAAAAAAAAA" });
  await sender.send(message);
  await sender.send(message);
  const restarted = (await open()).sender;
  assert.deepEqual(await restarted.send(message), { status: AckStatus.ACCEPTED });
  assert.equal(lines.filter((l) => l.event === "reply_sent").length, 1);
  assert.deepEqual(results(frames).map((r) => r.status), [OutgoingStatus.SENT, OutgoingStatus.SENT, OutgoingStatus.SENT]);
});

test("no open session: RETRY and nothing reported; logged out: FAILED", async (t) => {
  const { sender, session, lines, frames } = await setUp(t, { state: SessionState.CONNECTING });
  const message = outgoing({ kind: OutgoingKind.TEXT, text: "later", idempotencyKey: "k-2" });
  const ack = await sender.send(message);
  assert.equal(ack.status, AckStatus.RETRY);
  assert.match(ack.reason, /CONNECTING/);
  assert.deepEqual(frames, []);
  session.state = SessionState.LOGGED_OUT;
  assert.equal((await sender.send(message)).status, AckStatus.ACCEPTED);
  assert.equal(results(frames)[0].status, OutgoingStatus.FAILED);
  assert.match(results(frames)[0].reason, /logged out/);
  assert.equal(lines.filter((l) => l.event !== "script_done").length, 0);
});

test("a send the socket refuses while open is reported FAILED with the reason", async (t) => {
  const { sender, sock, frames } = await setUp(t);
  sock.sendMessage = async () => {
    throw new Error("invalid jid");
  };
  const ack = await sender.send(outgoing({ kind: OutgoingKind.TEXT, text: "x", idempotencyKey: "k-3" }));
  assert.equal(ack.status, AckStatus.ACCEPTED);
  assert.deepEqual(results(frames), [{ idempotencyKey: "k-3", status: OutgoingStatus.FAILED, providerMessageId: undefined, reason: "WhatsApp refused it: invalid jid" }]);
});

test("gateway frames may carry media up to their own limit; Node frames keep 256 KiB", async () => {
  const { parseGatewayFrame, parseNodeFrame, MAX_FRAME_BYTES, MAX_GATEWAY_FRAME_BYTES } = await import("../src/wire.js");
  const frame = (bytes) => JSON.stringify({
    frameId: "g-big",
    outgoingMessage: {
      botId: BOT,
      correspondentId: ALICE,
      kind: "OUTGOING_KIND_DOCUMENT",
      media: { data: Buffer.alloc(bytes, 7).toString("base64"), mimeType: "application/pdf" },
      idempotencyKey: "big",
    },
  });
  const parsed = parseGatewayFrame(frame(4 * 1024 * 1024));
  assert.equal(parsed.payload.value.media.data.length, 4 * 1024 * 1024);
  assert.throws(() => parseGatewayFrame(frame(MAX_GATEWAY_FRAME_BYTES)), /more than the 33554432 allowed/);
  assert.throws(() => parseNodeFrame("x".repeat(MAX_FRAME_BYTES + 1)), /more than the 262144 allowed/);
});
