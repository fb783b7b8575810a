// The corpus of real payloads (test/fixtures/real/*.json): messages.upsert message
// objects that people published in Baileys, Evolution API and WAHA issues, or that
// projects built on Baileys keep as captured fixtures, each naming its source. Each one
// goes through the real handler (real staging directory, real poll store, real
// pending-stub store on disk) and must give the frame its fixture expects, or the drop
// it expects, counted by reason.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, readdirSync } from "node:fs";
import { mkdtemp as mkdtempAsync, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { createMessageHandler } from "../src/handler.js";
import { createMemoryLogger } from "../src/logger.js";
import { PollStore } from "../src/poll_store.js";
import { PendingStubs } from "../src/undecryptable.js";
import { NodeFrameSchema, encodeNodeFrame, parseNodeFrame, toJson } from "../src/wire.js";

const DIR = join(dirname(fileURLToPath(import.meta.url)), "fixtures", "real");
const BOT = "bot-real";
const WINDOW_MS = 60_000;

const fixtures = readdirSync(DIR)
  .filter((n) => n.endsWith(".json"))
  .sort()
  .map((n) => [n.replace(/\.json$/, ""), JSON.parse(readFileSync(join(DIR, n), "utf8"))]);

test("the corpus holds at least 45 real payloads, each naming its source", () => {
  assert.ok(fixtures.length >= 45, `only ${fixtures.length} fixtures`);
  for (const [name, f] of fixtures) {
    assert.match(f.source, /^[\w.-]+\/[\w.-]+ \S/, `${name}: source must name the repository and where`);
    assert.ok(f.description, `${name}: description missing`);
    assert.ok(f.message?.key, `${name}: message has no key`);
    assert.ok(f.expect && typeof f.expect === "object", `${name}: expect missing`);
  }
});

/** Every key of `expected` is in `actual` with the same value (objects compared the same way). */
function assertSubset(actual, expected, path) {
  if (expected === null || typeof expected !== "object") {
    assert.deepEqual(actual, expected, `${path}: got ${JSON.stringify(actual)}`);
    return;
  }
  assert.ok(actual !== undefined && actual !== null, `${path}: missing`);
  if (Array.isArray(expected)) {
    assert.ok(Array.isArray(actual), `${path}: not a list`);
    assert.equal(actual.length, expected.length, `${path}: ${JSON.stringify(actual)}`);
    expected.forEach((e, i) => assertSubset(actual[i], e, `${path}[${i}]`));
    return;
  }
  for (const [key, value] of Object.entries(expected)) assertSubset(actual[key], value, `${path}.${key}`);
}

/** A lid-mapping store as Baileys' signalRepository.lidMapping answers. */
function lidMappingFrom(pairs) {
  if (!pairs) return undefined;
  return {
    getLIDForPN: async (pn) => pairs.find((p) => p.pn === pn)?.lid ?? null,
    getPNForLID: async (lid) => pairs.find((p) => p.lid === lid)?.pn ?? null,
  };
}

async function harness(setup = {}) {
  const root = await mkdtempAsync(join(tmpdir(), "real-"));
  const sink = [];
  const { logger } = createMemoryLogger();
  let now = Date.now();
  let handler;
  const pendingStubs = await new PendingStubs({
    dir: join(root, "undecryptable"),
    windowMs: WINDOW_MS,
    now: () => now,
    logger,
    onExpire: (botId, stub) => handler.emitUndecryptable(botId, stub, stub.messageStubParameters?.[0] || "no content"),
  }).open();
  const sent = new Set(setup.sentIds ?? []);
  handler = createMessageHandler({
    stagingDir: join(root, "staging"),
    // No network in tests: every download fails the way an expired WhatsApp URL does.
    download: async () => {
      throw Object.assign(new Error("Failed to fetch stream"), { output: { statusCode: 410 } });
    },
    reupload: async (_botId, msg) => msg,
    quotaGbFor: () => 1,
    frameSink: async (frame) => {
      sink.push(frame);
    },
    logger,
    polls: await new PollStore({ dir: join(root, "polls"), maxPolls: 100, logger }).open(),
    meIdOf: () => setup.bot?.id,
    meLidOf: () => setup.bot?.lid,
    configOf: () => setup.config,
    lidMappingOf: () => lidMappingFrom(setup.lidMapping),
    sentIds: { has: (_botId, id) => sent.has(id) },
    pendingStubs,
    downloadTimeoutMs: 2000,
    reuploadTimeoutMs: 2000,
  });
  return {
    handler,
    sink,
    pendingStubs,
    advance: (ms) => {
      now += ms;
    },
    close: () => rm(root, { recursive: true, force: true }),
  };
}

/** The frames in the sink as the gateway would parse them, by payload kind. */
function wireFrames(sink) {
  return sink.map((f) => toJson(NodeFrameSchema, parseNodeFrame(encodeNodeFrame(f))));
}

function checkFrame(json, expect, name) {
  const kind = expect.frame;
  const value = json[kind];
  assert.ok(value, `${name}: expected a ${kind}, got ${JSON.stringify(json).slice(0, 400)}`);
  if (expect.header) assertSubset(value.header, expect.header, `${name}.header`);
  if (expect.context) assertSubset(value.header.context ?? {}, expect.context, `${name}.header.context`);
  for (const field of ["message", "details", "replyTo", "mediaKind", "mimeType"]) {
    if (field in expect) assertSubset(value[field], expect[field], `${name}.${field}`);
  }
  if (expect.noDecrypted) assert.equal(value.details?.edit?.decrypted, undefined, `${name}: the edit must not claim to be decrypted`);
  if (expect.noContext) for (const key of expect.noContext) assert.equal(value.header.context?.[key], undefined, `${name}: context.${key} must be unset`);
}

for (const [name, fixture] of fixtures) {
  test(`real payload ${name}`, async () => {
    const h = await harness(fixture.setup);
    try {
      for (const before of fixture.setup?.before ?? []) await h.handler.handleUpsert(BOT, { type: "notify", messages: [before] });
      const skip = h.sink.length;
      await h.handler.handleUpsert(BOT, { type: "notify", messages: [fixture.message] });
      const all = wireFrames(h.sink.slice(skip));
      const mappings = all.filter((f) => f.identityMappings).flatMap((f) => f.identityMappings.mappings);
      const data = all.filter((f) => !f.identityMappings);
      const expect = fixture.expect;
      if (expect.identityMappings) assert.deepEqual(mappings, expect.identityMappings, `${name}: identity mappings`);
      if (expect.dropped) {
        assert.deepEqual(data, [], `${name}: expected no frame`);
        assert.equal(h.handler.drops.get(expect.dropped), 1, `${name}: drop not counted as ${expect.dropped}: ${h.handler.drops.render()}`);
        return;
      }
      if (expect.pending) {
        assert.deepEqual(data, [], `${name}: a stub is not forwarded before its window passes`);
        assert.equal(h.pendingStubs.state(BOT, String(fixture.message.key.id)), "pending");
        h.advance(WINDOW_MS);
        await h.pendingStubs.expireDue();
        const markers = wireFrames(h.sink.slice(skip)).filter((f) => !f.identityMappings);
        assert.equal(markers.length, 1, `${name}: exactly one marker`);
        checkFrame(markers[0], { ...expect, frame: "structuredMessage", details: { undecryptable: { reason: expect.reason } } }, name);
        if (expect.fromOwner !== undefined) assert.equal(Boolean(markers[0].structuredMessage.header.context?.fromOwner), expect.fromOwner);
        // The same stub again, or a late readable copy, gives nothing more.
        await h.handler.handleUpsert(BOT, { type: "notify", messages: [fixture.message] });
        assert.equal(wireFrames(h.sink.slice(skip)).filter((f) => !f.identityMappings).length, 1, `${name}: never two markers`);
        return;
      }
      assert.equal(data.length, 1, `${name}: expected exactly one frame, got ${data.length}`);
      checkFrame(data[0], expect, name);
    } finally {
      await h.close();
    }
  });
}
