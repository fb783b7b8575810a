// Frame batches on the gateway socket (src/wire_batch.js): only with a gateway that
// answers the handshake header, frames made durable together go out as one WebSocket
// message and the acks that come batched are each applied to their own frame. A real
// local WebSocket server plays the gateway.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { AckStatus } from "../src/gen/chatbot/wire/v1/frames_pb.js";
import { GatewayClient } from "../src/gateway_client.js";
import { Outbox } from "../src/outbox.js";
import { createMemoryLogger } from "../src/logger.js";
import { buildNodeFrame, encodeNodeFrame, parseNodeFrame } from "../src/wire.js";
import { MAX_BATCH_CHARS, splitFrames } from "../src/wire_batch.js";
import { dateNow } from "./helpers/clock.js";
import { TOKEN, startGateway } from "./helpers/fake_gateway.js";

const FAST = { initialMs: 20, maxMs: 100 };

function textFrame(chat, text, providerMessageId = `id-${text}`) {
  return buildNodeFrame({
    payload: {
      case: "textMessage",
      value: {
        header: {
          botId: "bot-1",
          correspondentId: chat,
          sender: chat,
          providerMessageId,
          originatingTime: timestampFromDate(dateNow()),
        },
        message: text,
      },
    },
  });
}

async function node(t, url) {
  const dir = await mkdtemp(join(tmpdir(), "wire-batch-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const { logger, records } = createMemoryLogger("debug");
  const outbox = await new Outbox({ dir, logger }).open();
  const acknowledged = [];
  const client = new GatewayClient({
    url,
    token: TOKEN,
    outbox,
    logger,
    onOutgoing: async () => ({ status: AckStatus.ACCEPTED }),
    onAcknowledged: (frame, status) => acknowledged.push([frame.payload.value.message, status]),
    reconnect: FAST,
    retry: FAST,
    ackTimeoutMs: 5000,
  });
  return { dir, outbox, client, records, acknowledged };
}

/** Adds the frames together, as one outbox batch, the way a burst of messages comes. */
async function sendTogether(client, frames) {
  await Promise.all(frames.map((f) => client.send(f, `bot-1\u0000${f.payload.value.header.correspondentId}`)));
}

test("splitFrames cuts text and bytes at newlines only, skipping empty lines", () => {
  const a = encodeNodeFrame(textFrame("a@s", "line one\nline two, ünïcødé ✓"));
  const b = encodeNodeFrame(textFrame("b@s", "b"));
  assert.ok(!a.includes("\n"), "canonical JSON escapes a newline inside a string");
  assert.deepEqual(splitFrames(`${a}\n${b}`), [a, b]);
  assert.deepEqual(splitFrames(`\n${a}\n\n${b}\n`), [a, b]);
  assert.deepEqual(splitFrames(a), [a]);
  assert.deepEqual(splitFrames(Buffer.from(`${a}\n\n${b}\n`)).map((part) => part.toString("utf8")), [a, b]);
  const alone = Buffer.from(a);
  assert.equal(splitFrames(alone)[0], alone, "a message without a newline is passed on as it is");
  assert.deepEqual(splitFrames(Buffer.from("\n")), []);
  for (const part of splitFrames(Buffer.from(`${a}\n${b}`))) assert.ok(parseNodeFrame(part));
});

test("with a gateway that takes batches, frames made durable together go out as one message and every ack counts", async (t) => {
  const gateway = await startGateway({
    batches: true,
    decide: (frame) => (frame.payload.value.message.endsWith("7") ? AckStatus.REJECTED : AckStatus.ACCEPTED),
  });
  t.after(() => gateway.close());
  const { dir, outbox, client, acknowledged } = await node(t, gateway.url);
  client.start();
  await gateway.waitFor(() => gateway.sockets.size === 1);
  await gateway.waitFor(() => client.connected);
  const frames = Array.from({ length: 60 }, (_, i) => textFrame(`c${i % 6}@s`, `m${i}`));
  await sendTogether(client, frames);
  await gateway.waitFor(() => outbox.size === 0);
  await client.stop();
  assert.ok(client.batched);
  assert.equal(gateway.data().length, 60, "each frame sent once");
  assert.ok(gateway.messages.length < 60, `60 frames took ${gateway.messages.length} messages`);
  assert.ok(gateway.ackMessages.length < 60, `60 acks took ${gateway.ackMessages.length} messages`);
  for (let c = 0; c < 6; c++) {
    const texts = gateway.data().filter((f) => f.payload.value.header.correspondentId === `c${c}@s`).map((f) => f.payload.value.message);
    assert.deepEqual(texts, Array.from({ length: 10 }, (_, k) => `m${c + 6 * k}`), "each chat in order");
  }
  const statuses = new Map(acknowledged);
  assert.equal(statuses.size, 60);
  for (const [text, status] of statuses) {
    assert.equal(status, text.endsWith("7") ? AckStatus.REJECTED : AckStatus.ACCEPTED, text);
  }
  assert.deepEqual(await Outbox.pendingIn(dir, outbox.logger), []);
});

test("a batch never exceeds MAX_BATCH_CHARS; a larger frame goes alone", async (t) => {
  const gateway = await startGateway({ batches: true });
  t.after(() => gateway.close());
  const { outbox, client } = await node(t, gateway.url);
  client.start();
  await gateway.waitFor(() => client.connected);
  const big = "x".repeat(MAX_BATCH_CHARS / 4);
  const frames = Array.from({ length: 12 }, (_, i) => textFrame(`c${i}@s`, `${big}${i}`, `big-${i}`));
  frames.push(textFrame("huge@s", "y".repeat(MAX_BATCH_CHARS + 10), "huge"));
  await sendTogether(client, frames);
  await gateway.waitFor(() => outbox.size === 0);
  await client.stop();
  assert.equal(gateway.data().length, 13);
  assert.ok(gateway.messages.length >= 4, `${gateway.messages.length} messages`);
  assert.ok(gateway.messages.every((count) => count <= 4), `frames per message: ${gateway.messages}`);
  assert.equal(gateway.messages.at(-1), 1, "the frame longer than a batch went alone");
});

test("with a gateway that does not answer the header, every message holds one frame", async (t) => {
  const gateway = await startGateway({ batches: false });
  t.after(() => gateway.close());
  const { outbox, client } = await node(t, gateway.url);
  client.start();
  await gateway.waitFor(() => client.connected);
  const frames = Array.from({ length: 20 }, (_, i) => textFrame(`c${i % 4}@s`, `m${i}`));
  await sendTogether(client, frames);
  await gateway.waitFor(() => outbox.size === 0);
  await client.stop();
  assert.equal(client.batched, false);
  assert.deepEqual(gateway.messages, Array(20).fill(1));
  assert.equal(gateway.authHeaders.length, 1);
});
