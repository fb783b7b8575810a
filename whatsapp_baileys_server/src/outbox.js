// Frames waiting for the gateway's acknowledgement, kept on disk so they survive a
// gateway outage and a Node restart. One append-only log (`outbox.log`) with group
// commit: every frame added while a write is in progress joins the next batch, and a
// batch costs one write and one fsync however many frames it holds (one file per frame
// cost two fsyncs per frame and halved the Node server's throughput). `add` resolves
// only once its frame is durable, so nothing is acknowledged to Baileys before that.
// Acknowledged frames are appended as deletions; the log is rewritten (temp file, fsync,
// rename, fsync of the directory) when mostly dead, and emptied when nothing is pending.
// Deletions (and the emptying) need no fsync of their own: the next batch of frames
// makes them durable with its own, and one lost in a crash only means its frame is sent
// again and answered DUPLICATE. A batch of deletions alone is written, not synced.
// Sequence numbers keep the original order across restarts; per-chat order follows.

import { open, readdir, rename, rm, mkdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { NodeFrameSchema, encodeNodeFrame, fromJson } from "./wire.js";

const LOG = "outbox.log";
// The per-frame files of earlier versions, migrated into the log at open.
const LEGACY_FILE = /^(\d{16})\.json$/;
// Rewrite the log once it is this large and at least three quarters of it is dead.
const COMPACT_BYTES = 8 * 1024 * 1024;

async function fsyncPath(path, flags = "r") {
  const handle = await open(path, flags);
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** The log's text and its readable records, in order. */
async function readLog(dir, logger) {
  let text = "";
  try {
    text = await readFile(join(dir, LOG), "utf8");
  } catch (err) {
    if (err.code !== "ENOENT") throw err;
  }
  const lines = text.split("\n");
  const records = [];
  for (let i = 0; i < lines.length; i++) {
    if (!lines[i]) continue;
    try {
      records.push({ record: JSON.parse(lines[i]), lineNumber: i + 1 });
    } catch (err) {
      // Only the last line can be torn by a crash mid-write: that batch was never
      // reported durable. Anything else is damage worth an error, not a stop.
      if (i !== lines.length - 1) logger.error({ err, line: i + 1 }, "unreadable outbox record skipped");
    }
  }
  return { text, records };
}

/**
 * @typedef {object} OutboxEntry
 * @property {number} seq
 * @property {string} frameId
 * @property {string} chatKey frames of one chat are delivered in order
 * @property {any} frame the NodeFrame message
 * @property {string} json the frame encoded once, as it is logged and sent
 */

/** An entry with its frame encoded once: the log line and every send reuse the text. */
function entryOf(seq, frame, chatKey) {
  return { seq, frameId: frame.frameId, chatKey, frame, json: encodeNodeFrame(frame) };
}

/**
 * @typedef {object} LogWrite
 * @property {string} line the record, newline-terminated
 * @property {boolean} sync the record must be on disk before it resolves (added frames)
 * @property {() => void} apply runs once the record is durable, in log order
 * @property {(value: any) => void} resolve
 * @property {(err: any) => void} reject
 * @property {() => any} result
 */

export class Outbox {
  /** @param {{ dir: string, logger: any, compactBytes?: number }} options */
  constructor({ dir, logger, compactBytes = COMPACT_BYTES }) {
    this.dir = dir;
    this.logger = logger;
    this.compactBytes = compactBytes;
    /** @type {Map<string, OutboxEntry>} frameId → entry, in insertion (= seq) order */
    this.entries = new Map();
    /** @type {Map<string, Map<string, OutboxEntry>>} chatKey → its entries, in order */
    this.chats = new Map();
    this.nextSeq = 1;
    /** @type {LogWrite[]} records waiting for the next batch */
    this.queued = [];
    /** @type {Promise<void> | null} the batch being written */
    this.writing = null;
    this.handle = null;
    this.logBytes = 0;
    this.logRecords = 0;
    this.batches = 0;
    /** fsyncs of the log by batches (for tests and metrics) */
    this.syncs = 0;
    /** Deletions written but not yet synced. */
    this.unsynced = false;
  }

  get #logPath() {
    return join(this.dir, LOG);
  }

  /** Loads the frames left by a previous run. */
  async open() {
    await mkdir(this.dir, { recursive: true });
    const { text, records } = await readLog(this.dir, this.logger);
    for (const record of records) this.#replay(record);
    await this.#migrateLegacy();
    this.handle = await open(this.#logPath, "a");
    this.logBytes = Buffer.byteLength(text);
    if (this.entries.size > 0) this.logger.info({ pending: this.entries.size }, "outbox restored");
    // Start from a compact log: a restart is the cheapest moment to drop dead records.
    if (this.logRecords > this.entries.size) await this.#compact();
    return this;
  }

  /** The frame ids pending in a directory's log, read without changing it. */
  static async pendingIn(dir, logger) {
    const outbox = new Outbox({ dir, logger });
    const { records } = await readLog(dir, logger);
    for (const record of records) outbox.#replay(record);
    return [...outbox.entries.keys()];
  }

  #replay({ record, lineNumber }) {
    this.logRecords += 1;
    if (record.op === "add") {
      try {
        const frame = fromJson(NodeFrameSchema, record.frame);
        this.#put(entryOf(record.seq, frame, String(record.chatKey)));
        this.nextSeq = Math.max(this.nextSeq, record.seq + 1);
      } catch (err) {
        this.logger.error({ err, line: lineNumber }, "unreadable outbox frame skipped");
      }
    } else if (record.op === "del") {
      this.#drop(record.frameId);
    }
  }

  async #migrateLegacy() {
    const legacy = (await readdir(this.dir)).filter((name) => LEGACY_FILE.test(name) || name.endsWith(".json.tmp")).sort();
    if (legacy.length === 0) return;
    const found = [];
    for (const name of legacy) {
      const path = join(this.dir, name);
      if (name.endsWith(".tmp")) {
        await rm(path, { force: true });
        continue;
      }
      try {
        const record = JSON.parse(await readFile(path, "utf8"));
        const frame = fromJson(NodeFrameSchema, record.frame);
        this.#put(entryOf(this.nextSeq++, frame, String(record.chatKey)));
        found.push(path);
      } catch (err) {
        this.logger.error({ err, file: path }, "unreadable outbox file set aside");
        await rename(path, `${path}.corrupt`).catch(() => {});
      }
    }
    // The log must hold them durably before the old files go.
    await this.#rewrite();
    for (const path of found) await rm(path, { force: true });
    await fsyncPath(this.dir);
    this.logger.info({ frames: found.length }, "outbox files migrated into the log");
  }

  /** Writes the pending entries as a fresh log, atomically replacing the old one. */
  async #rewrite() {
    const tmp = `${this.#logPath}.tmp`;
    const body = [...this.entries.values()].map((e) => this.#addLine(e)).join("");
    const handle = await open(tmp, "w");
    try {
      await handle.writeFile(body, "utf8");
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(tmp, this.#logPath);
    await fsyncPath(this.dir);
    this.logBytes = Buffer.byteLength(body);
    this.logRecords = this.entries.size;
  }

  async #compact() {
    if (this.handle) await this.handle.close();
    this.handle = null;
    await this.#rewrite();
    this.handle = await open(this.#logPath, "a");
  }

  #addLine(entry) {
    // The bytes JSON.stringify of the record object would give, around the frame's text.
    return `{"op":"add","seq":${entry.seq},"chatKey":${JSON.stringify(entry.chatKey)},"frame":${entry.json}}\n`;
  }

  #enqueue(write) {
    return new Promise((resolve, reject) => {
      // The caller's own object (made with both slots, so its shape stays the same),
      // completed: copying it per frame showed in the profile.
      write.resolve = resolve;
      write.reject = reject;
      this.queued.push(write);
      if (!this.writing) this.writing = this.#drain();
    });
  }

  async #drain() {
    try {
      while (this.queued.length > 0) {
        const batch = this.queued;
        this.queued = [];
        try {
          await this.#writeBatch(batch);
        } catch (err) {
          for (const w of batch) w.reject(err);
          continue;
        }
        for (const w of batch) {
          w.apply();
          w.resolve(w.result());
        }
        await this.#maybeCompact().catch((err) => this.logger.error({ err }, "outbox compaction failed; the log keeps growing"));
      }
    } finally {
      this.writing = null;
    }
  }

  async #writeBatch(batch) {
    const body = batch.map((w) => w.line).join("");
    await this.handle.write(body);
    if (batch.some((w) => w.sync)) {
      await this.handle.datasync();
      this.syncs += 1;
      this.unsynced = false;
    } else {
      this.unsynced = true;
    }
    this.logBytes += Buffer.byteLength(body);
    this.logRecords += batch.length;
    this.batches += 1;
  }

  async #maybeCompact() {
    if (this.entries.size === 0 && this.logBytes > 0) {
      // Nothing pending: every record is dead, so the log can simply be emptied.
      await this.handle.truncate(0);
      this.unsynced = true;
      this.logBytes = 0;
      this.logRecords = 0;
    } else if (this.logBytes >= this.compactBytes && this.entries.size * 4 <= this.logRecords) {
      await this.#compact();
    }
  }

  /** Persists a frame; resolves once it is durable on disk. */
  add(frame, chatKey) {
    const entry = entryOf(this.nextSeq++, frame, chatKey);
    return this.#enqueue({
      line: this.#addLine(entry),
      sync: true,
      apply: () => this.#put(entry),
      result: () => entry,
      resolve: undefined,
      reject: undefined,
    });
  }

  /** Forgets an acknowledged frame; true when it was pending. */
  remove(frameId) {
    if (!this.entries.has(frameId)) return Promise.resolve(false);
    return this.#enqueue({
      // The bytes JSON.stringify of the record object would give.
      line: `{"op":"del","frameId":${JSON.stringify(frameId)}}\n`,
      sync: false,
      apply: () => this.#drop(frameId),
      result: () => true,
      resolve: undefined,
      reject: undefined,
    });
  }

  #put(entry) {
    this.#drop(entry.frameId);
    this.entries.set(entry.frameId, entry);
    let chat = this.chats.get(entry.chatKey);
    if (!chat) this.chats.set(entry.chatKey, (chat = new Map()));
    chat.set(entry.frameId, entry);
  }

  #drop(frameId) {
    const entry = this.entries.get(frameId);
    if (!entry) return;
    this.entries.delete(frameId);
    const chat = this.chats.get(entry.chatKey);
    chat?.delete(frameId);
    if (chat?.size === 0) this.chats.delete(entry.chatKey);
  }

  get(frameId) {
    return this.entries.get(frameId);
  }

  /** One chat's pending entries, oldest first. */
  chatEntries(chatKey) {
    return this.chats.get(chatKey)?.values() ?? [].values();
  }

  /** Chats with pending entries. */
  chatKeys() {
    return [...this.chats.keys()];
  }

  /** Pending entries in delivery order. */
  pending() {
    return [...this.entries.values()];
  }

  /** The oldest pending entry of every chat. */
  heads() {
    return [...this.chats.values()].map((chat) => chat.values().next().value);
  }

  get size() {
    return this.entries.size;
  }

  /** Resolves when every started write or delete has reached the disk. */
  async flush() {
    while (this.writing) await this.writing;
  }

  /** Flushes and releases the log file. */
  async close() {
    await this.flush();
    // A clean stop leaves nothing to resend: the last deletions go to disk too.
    if (this.handle && this.unsynced) await this.handle.datasync();
    if (this.handle) await this.handle.close();
    this.handle = null;
  }

  /** Bytes of the log file now (for tests and metrics). */
  async logSize() {
    return (await stat(this.#logPath)).size;
  }
}
