// The creation messages of polls, kept on disk so that votes can be decrypted later.
//
// WhatsApp encrypts every poll vote with a key derived from the poll's creation message
// (its messageSecret); Baileys' decryptPollVote needs that message, and votes may come
// days later or after a restart. One small JSON file per poll, named by a hash of
// (bot, chat, poll id); the least recently used polls are deleted beyond `maxPolls`.

import { createHash } from "node:crypto";
import { mkdir, readFile, readdir, rename, rm, stat, utimes, writeFile } from "node:fs/promises";
import { join } from "node:path";

const FILE = /^[0-9a-f]{64}\.json$/;

function fileName(botId, chatJid, pollId) {
  return `${createHash("sha256").update(`${botId}\u0000${chatJid}\u0000${pollId}`).digest("hex")}.json`;
}

export class PollStore {
  /**
   * @param {{ dir: string, maxPolls?: number, logger: any }} options
   */
  constructor({ dir, maxPolls = 10_000, logger }) {
    this.dir = dir;
    this.maxPolls = maxPolls;
    this.logger = logger;
    // File name → true, least recently used first (a Map keeps insertion order).
    this.order = new Map();
    this.opened = undefined;
  }

  /** Reads the directory once (oldest modification first); later calls are no-ops. */
  open() {
    this.opened ??= (async () => {
      await mkdir(this.dir, { recursive: true });
      const names = (await readdir(this.dir)).filter((n) => FILE.test(n));
      const dated = await Promise.all(
        names.map(async (name) => {
          try {
            return [name, (await stat(join(this.dir, name))).mtimeMs];
          } catch {
            return [name, 0];
          }
        }),
      );
      dated.sort((a, b) => a[1] - b[1]);
      for (const [name] of dated) this.order.set(name, true);
      await this.#evict();
      return this;
    })();
    return this.opened;
  }

  /**
   * Remembers one poll. `poll`: { creatorJid, encKey (Uint8Array), question, options: string[],
   * selectableCount }; already bounded by the caller.
   */
  async put(botId, chatJid, pollId, poll) {
    await this.open();
    const name = fileName(botId, chatJid, pollId);
    const record = {
      pollId,
      creatorJid: poll.creatorJid,
      encKey: Buffer.from(poll.encKey).toString("base64"),
      question: poll.question,
      options: poll.options,
      selectableCount: poll.selectableCount,
    };
    const path = join(this.dir, name);
    const part = `${path}.${process.pid}.part`;
    await writeFile(part, JSON.stringify(record));
    await rename(part, path);
    this.order.delete(name);
    this.order.set(name, true);
    await this.#evict();
  }

  /** The stored poll, or undefined when unknown (never stored, evicted, unreadable). */
  async get(botId, chatJid, pollId) {
    await this.open();
    const name = fileName(botId, chatJid, pollId);
    if (!this.order.has(name)) return undefined;
    const path = join(this.dir, name);
    try {
      const record = JSON.parse(await readFile(path, "utf8"));
      this.order.delete(name);
      this.order.set(name, true);
      const now = new Date();
      await utimes(path, now, now).catch(() => undefined);
      return { ...record, encKey: new Uint8Array(Buffer.from(String(record.encKey), "base64")) };
    } catch (err) {
      this.logger.warn({ err, poll_id: pollId }, "stored poll unreadable");
      return undefined;
    }
  }

  get size() {
    return this.order.size;
  }

  async #evict() {
    while (this.order.size > this.maxPolls) {
      const oldest = this.order.keys().next().value;
      this.order.delete(oldest);
      await rm(join(this.dir, oldest), { force: true });
    }
  }
}
