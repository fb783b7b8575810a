// Frames waiting for the gateway's acknowledgement, kept on disk so they survive a
// gateway outage and a Node restart. One file per frame, written atomically (temp file,
// fsync, rename, fsync of the directory), named by a sequence number so that a restart
// restores the original order; the per-chat order follows from it.

import { open, readdir, rename, rm, mkdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { NodeFrameSchema, fromJson, toJson } from "./wire.js";

const FILE = /^(\d{16})\.json$/;

async function fsyncPath(path, flags = "r") {
  const handle = await open(path, flags);
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * @typedef {object} OutboxEntry
 * @property {number} seq
 * @property {string} frameId
 * @property {string} chatKey frames of one chat are delivered in order
 * @property {any} frame the NodeFrame message
 */

export class Outbox {
  /** @param {{ dir: string, logger: any }} options */
  constructor({ dir, logger }) {
    this.dir = dir;
    this.logger = logger;
    /** @type {Map<string, OutboxEntry>} frameId → entry, in insertion (= seq) order */
    this.entries = new Map();
    this.nextSeq = 1;
    // Writes and deletes run one at a time so the directory always matches `entries`.
    this.chain = Promise.resolve();
  }

  /** Loads the frames left by a previous run. */
  async open() {
    await mkdir(this.dir, { recursive: true });
    const names = (await readdir(this.dir)).sort();
    for (const name of names) {
      const path = join(this.dir, name);
      if (name.endsWith(".tmp")) {
        // A write interrupted by a crash: the frame was never acknowledged as queued.
        await rm(path, { force: true });
        continue;
      }
      const match = FILE.exec(name);
      if (!match) continue;
      this.nextSeq = Math.max(this.nextSeq, Number(match[1]) + 1);
      try {
        const record = JSON.parse(await readFile(path, "utf8"));
        const frame = fromJson(NodeFrameSchema, record.frame);
        const entry = { seq: Number(match[1]), frameId: frame.frameId, chatKey: String(record.chatKey), frame };
        this.entries.set(entry.frameId, entry);
      } catch (err) {
        this.logger.error({ err, file: path }, "unreadable outbox file set aside");
        await rename(path, `${path}.corrupt`).catch(() => {});
      }
    }
    if (this.entries.size > 0) this.logger.info({ pending: this.entries.size }, "outbox restored");
    return this;
  }

  #serial(work) {
    const run = this.chain.then(work);
    this.chain = run.catch(() => {});
    return run;
  }

  #path(seq) {
    return join(this.dir, `${String(seq).padStart(16, "0")}.json`);
  }

  /** Persists a frame; resolves once it is durable on disk. */
  add(frame, chatKey) {
    return this.#serial(async () => {
      const seq = this.nextSeq++;
      const path = this.#path(seq);
      const tmp = `${path}.tmp`;
      const body = JSON.stringify({ chatKey, frame: toJson(NodeFrameSchema, frame) });
      const handle = await open(tmp, "w");
      try {
        await handle.writeFile(body, "utf8");
        await handle.sync();
      } finally {
        await handle.close();
      }
      await rename(tmp, path);
      await fsyncPath(this.dir);
      const entry = { seq, frameId: frame.frameId, chatKey, frame };
      this.entries.set(frame.frameId, entry);
      return entry;
    });
  }

  /** Forgets an acknowledged frame; true when it was pending. */
  remove(frameId) {
    return this.#serial(async () => {
      const entry = this.entries.get(frameId);
      if (!entry) return false;
      await rm(this.#path(entry.seq), { force: true });
      this.entries.delete(frameId);
      return true;
    });
  }

  get(frameId) {
    return this.entries.get(frameId);
  }

  /** Pending entries in delivery order. */
  pending() {
    return [...this.entries.values()];
  }

  /** The oldest pending entry of every chat: the only ones that may be in flight. */
  heads() {
    const heads = new Map();
    for (const entry of this.entries.values()) {
      if (!heads.has(entry.chatKey)) heads.set(entry.chatKey, entry);
    }
    return [...heads.values()];
  }

  get size() {
    return this.entries.size;
  }

  /** Resolves when every started write or delete has reached the disk. */
  flush() {
    return this.chain;
  }
}
