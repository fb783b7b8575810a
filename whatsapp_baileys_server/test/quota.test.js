// The staging quota check is bounded by a timeout and fails open, and it measures the
// real staging directory when it can.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdir, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { directorySize, measureStaging } from "../src/media.js";
import { createMessageHandler } from "../src/handler.js";
import { createMemoryLogger } from "../src/logger.js";
import { fakeDownloader, mediaFields, waMessage } from "./helpers/baileys_shapes.js";
import { assertMatchesGolden } from "./helpers/golden.js";

test("the staging size is the sum of the files under the directory", async (t) => {
  const dir = await mkdtemp(join(tmpdir(), "staging-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  await writeFile(join(dir, "a"), randomBytes(1000));
  await writeFile(join(dir, "b.part"), randomBytes(234));
  await mkdir(join(dir, "sub"));
  await writeFile(join(dir, "sub", "c"), randomBytes(66));
  assert.equal(await directorySize(dir), 1300);
  const { logger } = createMemoryLogger();
  assert.equal(await measureStaging({ stagingDir: dir, timeoutMs: 2000, logger }), 1300);
});

test("a slow size computation times out and the check fails open with a log", async (t) => {
  const dir = await mkdtemp(join(tmpdir(), "staging-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const { logger, records } = createMemoryLogger();
  const bytes = randomBytes(2500);
  const msg = waMessage({ imageMessage: { ...mediaFields(bytes), mimetype: "image/jpeg" } });
  let sizeCalls = 0;
  const frames = [];
  const handler = createMessageHandler({
    stagingDir: dir,
    download: fakeDownloader({ [msg.key.id]: bytes }).download,
    quotaGbFor: () => 1e-9, // one byte: any measured size would be over quota
    frameSink: async (frame) => { frames.push(frame); },
    logger,
    sizeOf: () => {
      sizeCalls += 1;
      return new Promise((resolve) => setTimeout(() => resolve(10 ** 12), 5000).unref());
    },
    quotaTimeoutMs: 100,
  });
  const started = Date.now();
  await handler.handleUpsert("bot-1", { type: "notify", messages: [msg] });
  const elapsed = Date.now() - started;
  assert.equal(sizeCalls, 1);
  assert.ok(elapsed < 2000, `the check waited ${elapsed} ms instead of timing out`);
  assert.equal(frames.length, 1);
  const json = assertMatchesGolden(frames[0], "media_message_image");
  assert.equal(json.mediaMessage.fileSize, "2500");
  assert.deepEqual(await readdir(dir), [json.mediaMessage.mediaProcessingId]);
  const warning = records.find((r) => r.msg?.startsWith("quota check failed open"));
  assert.ok(warning, "the fail-open decision is logged");
  assert.equal(warning.level, "warn");
  assert.match(warning.err.message, /timed out after 100 ms/);
});

test("a size computation that fails (missing directory) also fails open", async () => {
  const { logger, records } = createMemoryLogger();
  const used = await measureStaging({ stagingDir: "/nonexistent/staging", timeoutMs: 500, logger });
  assert.equal(used, undefined);
  assert.ok(records.some((r) => r.level === "warn" && r.msg.startsWith("quota check failed open")));
});

test("partial downloads left by a crash are removed at start, recent ones are left", async (t) => {
  const { removeStalePartials } = await import("../src/media.js");
  const { utimes } = await import("node:fs/promises");
  const dir = await mkdtemp(join(tmpdir(), "staging-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const old = "0f8fad5b-d9cb-469f-a165-70867728950e.part";
  const young = "9b2e0c1e-5f4a-4c3b-8d7e-6a5b4c3d2e1f.part";
  const staged = "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d";
  for (const name of [old, young, staged]) await writeFile(join(dir, name), "x");
  const twoHoursAgo = new Date(Date.now() - 2 * 3_600_000);
  await utimes(join(dir, old), twoHoursAgo, twoHoursAgo);
  await utimes(join(dir, staged), twoHoursAgo, twoHoursAgo);
  assert.deepEqual(await removeStalePartials(dir, 3_600_000), [old]);
  assert.deepEqual((await readdir(dir)).sort(), [staged, young].sort());
});
