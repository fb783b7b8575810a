// The ids of messages this system sent: known at once, bounded per bot, and still known
// after a restart (a fresh SentIds on the same directory).
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readFile, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SentIds } from "../src/sent_ids.js";
import { createMemoryLogger } from "../src/logger.js";

async function withDir(fn) {
  const dir = await mkdtemp(join(tmpdir(), "sent-ids-"));
  try {
    await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

test("a remembered id is known at once, per bot, and after a restart", async () => {
  await withDir(async (dir) => {
    const { logger } = createMemoryLogger();
    const ids = await new SentIds({ dir, logger }).open();
    const pending = ids.remember("bot/1", "3EB0AAA");
    assert.ok(ids.has("bot/1", "3EB0AAA"), "known before the write resolves");
    assert.ok(!ids.has("bot-2", "3EB0AAA"), "another bot did not send it");
    await pending;
    await ids.remember("bot-2", "3EB0BBB");
    const reopened = await new SentIds({ dir, logger }).open();
    assert.ok(reopened.has("bot/1", "3EB0AAA"));
    assert.ok(reopened.has("bot-2", "3EB0BBB"));
    assert.ok(!reopened.has("bot/1", "3EB0BBB"));
  });
});

test("each bot keeps at most maxPerBot ids, the newest; its file stays bounded", async () => {
  await withDir(async (dir) => {
    const { logger } = createMemoryLogger();
    const ids = await new SentIds({ dir, maxPerBot: 3, logger }).open();
    for (let i = 0; i < 10; i += 1) await ids.remember("bot", `id-${i}`);
    assert.deepEqual([0, 6, 7, 9].map((i) => ids.has("bot", `id-${i}`)), [false, false, true, true]);
    const [name] = await readdir(dir);
    const lines = (await readFile(join(dir, name), "utf8")).split("\n").filter(Boolean);
    assert.ok(lines.length <= 6, `file holds ${lines.length} lines, more than twice the bound`);
    const reopened = await new SentIds({ dir, maxPerBot: 3, logger }).open();
    assert.deepEqual([6, 7, 8, 9].map((i) => reopened.has("bot", `id-${i}`)), [false, true, true, true]);
  });
});

test("empty ids and ids with a newline are not recorded", async () => {
  await withDir(async (dir) => {
    const { logger } = createMemoryLogger();
    const ids = await new SentIds({ dir, logger }).open();
    await ids.remember("bot", "");
    await ids.remember("bot", "a\nb");
    assert.ok(!ids.has("bot", ""));
    assert.ok(!ids.has("bot", "a\nb"));
    assert.deepEqual(await readdir(dir), []);
  });
});
