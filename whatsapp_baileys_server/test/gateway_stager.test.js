// The gateway stager against a real HTTP server standing in for the gateway's media route
// (the real route is exercised with the real gateway by
// tests/integration/test_media_gridfs.py): the frame leaves only after 201, a 507 becomes
// the quota frame, a 503 is retried under the same id, and bytes that fail the hash check
// never complete their upload.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { randomBytes } from "node:crypto";
import { createMessageHandler } from "../src/handler.js";
import { createMemoryLogger } from "../src/logger.js";
import { GatewayStager } from "../src/stagers.js";
import { fakeDownloader, mediaFields, waMessage } from "./helpers/baileys_shapes.js";

const TOKEN = "node-token";

/** Stores a body only when it arrived complete; `plan` answers some uploads otherwise. */
async function startGateway(plan = () => undefined) {
  const stored = new Map();
  const requests = [];
  const server = createServer((req, res) => {
    const [, , , botId, id] = req.url.split("/");
    requests.push({ botId, id, auth: req.headers.authorization, chunked: req.headers["transfer-encoding"] === "chunked" });
    const planned = plan(botId, requests.length);
    if (planned) {
      res.writeHead(planned.status, { "content-type": "application/json" });
      res.end(JSON.stringify(planned.body));
      return;
    }
    const parts = [];
    req.on("data", (part) => parts.push(part));
    req.on("end", () => {
      const body = Buffer.concat(parts);
      stored.set(id, body);
      res.writeHead(201, { "content-type": "application/json" });
      res.end(JSON.stringify({ media_processing_id: id, size: body.length }));
    });
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address();
  return { url: `http://127.0.0.1:${port}`, stored, requests, close: () => new Promise((r) => server.close(r)) };
}

function handlerFor(gateway, bytesById, frames, { quotaGb } = {}) {
  const { logger } = createMemoryLogger();
  return createMessageHandler({
    stager: new GatewayStager({ baseUrl: gateway.url, token: TOKEN }),
    download: fakeDownloader(bytesById).download,
    quotaGbFor: () => quotaGb,
    frameSink: async (frame) => { frames.push(frame); },
    logger,
  });
}

test("media is streamed to the gateway and its frame sent once the gateway stored it", async (t) => {
  const gateway = await startGateway();
  t.after(() => gateway.close());
  const bytes = randomBytes(300_000);
  const msg = waMessage({ imageMessage: { ...mediaFields(bytes), mimetype: "image/jpeg" } });
  const frames = [];
  await handlerFor(gateway, { [msg.key.id]: bytes }, frames).handleUpsert("bot-1", { type: "notify", messages: [msg] });
  assert.equal(frames.length, 1);
  assert.equal(frames[0].payload.case, "mediaMessage");
  const { mediaProcessingId, fileSize } = frames[0].payload.value;
  assert.equal(fileSize, 300_000n);
  assert.deepEqual(gateway.stored.get(mediaProcessingId), bytes);
  assert.deepEqual(gateway.requests, [{ botId: "bot-1", id: mediaProcessingId, auth: `Bearer ${TOKEN}`, chunked: true }]);
});

test("a 507 from the gateway becomes the quota frame with its numbers", async (t) => {
  const gateway = await startGateway(() => ({ status: 507, body: { error: "media quota exceeded", used_bytes: 5000, quota_bytes: 4096 } }));
  t.after(() => gateway.close());
  const bytes = randomBytes(2000);
  const msg = waMessage({ imageMessage: { ...mediaFields(bytes), mimetype: "image/jpeg", caption: "hi" } });
  const frames = [];
  await handlerFor(gateway, { [msg.key.id]: bytes }, frames, { quotaGb: 1 }).handleUpsert("bot-1", { type: "notify", messages: [msg] });
  assert.equal(frames.length, 1);
  assert.equal(frames[0].payload.case, "quotaExceededMediaMessage");
  assert.equal(frames[0].payload.value.usedBytes, 5000n);
  assert.equal(frames[0].payload.value.quotaBytes, 4096n);
  assert.equal(frames[0].payload.value.message, "hi");
  assert.equal(gateway.stored.size, 0);
});

test("an unavailable gateway is tried again under the same id", async (t) => {
  const gateway = await startGateway((_bot, n) => (n === 1 ? { status: 503, body: { error: "store unavailable" } } : undefined));
  t.after(() => gateway.close());
  const bytes = randomBytes(5000);
  const msg = waMessage({ documentMessage: { ...mediaFields(bytes), mimetype: "application/pdf", fileName: "a.pdf" } });
  const frames = [];
  await handlerFor(gateway, { [msg.key.id]: bytes }, frames).handleUpsert("bot-1", { type: "notify", messages: [msg] });
  assert.equal(frames.length, 1);
  assert.equal(frames[0].payload.case, "mediaMessage");
  const ids = gateway.requests.map((r) => r.id);
  assert.equal(ids.length, 2);
  assert.equal(ids[0], ids[1]);
  assert.deepEqual(gateway.stored.get(ids[0]), bytes);
});

test("bytes that fail the hash check never complete their upload", async (t) => {
  const gateway = await startGateway();
  t.after(() => gateway.close());
  // Large enough that the upload is under way when the last byte shows the mismatch.
  const bytes = randomBytes(1_000_000);
  const msg = waMessage({ imageMessage: { ...mediaFields(randomBytes(16)), mimetype: "image/jpeg" } });
  const frames = [];
  await handlerFor(gateway, { [msg.key.id]: bytes }, frames).handleUpsert("bot-1", { type: "notify", messages: [msg] });
  assert.equal(frames.length, 1);
  assert.equal(frames[0].payload.case, "corruptMediaMessage");
  assert.match(frames[0].payload.value.reason, /^hash mismatch/);
  assert.equal(gateway.stored.size, 0, "the body ended without its last chunk: nothing stored");
});
