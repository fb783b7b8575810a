// Messages Baileys could not decrypt yet (CIPHERTEXT stubs: "No session", "Bad MAC",
// "Message absent from node"). WhatsApp usually resends them readable, under the same
// key id, after Baileys' retry receipt. A stub waits here for its window; if the copy
// arrives in time it goes through as any message, otherwise the bot gets exactly one
// `undecryptable` marker. Never both: a copy that arrives after the marker is dropped.
//
// One small JSON file per stub (temp file, rename), so pending stubs survive a restart;
// an expired record is kept (state "expired") for a day to recognise late copies.

import { mkdir, readFile, readdir, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";

const KEEP_EXPIRED_MS = 24 * 3600_000;

function fileName(botId, id) {
  return `${Buffer.from(`${botId}\u0000${id}`, "utf8").toString("hex")}.json`;
}

/** The parts of a stub a marker needs, as plain JSON (Long timestamps as numbers). */
function summary(msg) {
  const ts = msg.messageTimestamp;
  const seconds = typeof ts === "object" && ts !== null && typeof ts.low === "number" ? (ts.high >>> 0) * 2 ** 32 + (ts.low >>> 0) : Number(ts);
  return {
    key: JSON.parse(JSON.stringify(msg.key)),
    messageTimestamp: Number.isSafeInteger(seconds) ? seconds : undefined,
    pushName: typeof msg.pushName === "string" ? msg.pushName : undefined,
    participant: typeof msg.participant === "string" ? msg.participant : undefined,
    messageStubType: msg.messageStubType,
    messageStubParameters: Array.isArray(msg.messageStubParameters) ? msg.messageStubParameters.map(String).slice(0, 4) : [],
  };
}

export class PendingStubs {
  /**
   * @param {{ dir: string, windowMs: number, now?: () => number, logger: any,
   *   onExpire: (botId: string, stub: any) => Promise<void> }} options onExpire sends the marker
   */
  constructor({ dir, windowMs, now = () => Date.now(), logger, onExpire }) {
    Object.assign(this, { dir, windowMs, now, logger, onExpire });
    /** @type {Map<string, { botId: string, id: string, state: "pending" | "expired", at: number, stub: any }>} */
    this.records = new Map();
    this.timer = undefined;
    this.expiring = Promise.resolve();
  }

  async open() {
    await mkdir(this.dir, { recursive: true });
    for (const name of await readdir(this.dir)) {
      const path = join(this.dir, name);
      if (name.endsWith(".tmp")) {
        await rm(path, { force: true });
        continue;
      }
      if (!name.endsWith(".json")) continue;
      try {
        const record = JSON.parse(await readFile(path, "utf8"));
        this.records.set(name, record);
      } catch (err) {
        this.logger.error({ err, file: path }, "unreadable pending-stub file removed");
        await rm(path, { force: true });
      }
    }
    return this;
  }

  /** Checks for due stubs every second (or every window, when shorter) until stop(). */
  start() {
    this.timer = setInterval(() => {
      this.expireDue().catch((err) => this.logger.error({ err }, "undecryptable markers failed"));
    }, Math.max(50, Math.min(this.windowMs, 1000)));
    this.timer.unref();
  }

  stop() {
    clearInterval(this.timer);
    return this.expiring;
  }

  async #write(name, record) {
    const path = join(this.dir, name);
    await writeFile(`${path}.tmp`, JSON.stringify(record), { flush: true });
    await rename(`${path}.tmp`, path);
    this.records.set(name, record);
  }

  /** "pending", "expired" (the marker was sent) or undefined. */
  state(botId, id) {
    return this.records.get(fileName(botId, id))?.state;
  }

  /** Starts the window of an undecryptable message (a repeated stub keeps the first). */
  async add(botId, msg) {
    const id = String(msg.key.id);
    const name = fileName(botId, id);
    if (this.records.has(name)) return false;
    await this.#write(name, { botId, id, state: "pending", at: this.now(), stub: summary(msg) });
    return true;
  }

  /** The readable copy arrived within the window: the stub is forgotten. */
  async resolve(botId, id) {
    const name = fileName(botId, id);
    if (this.records.get(name)?.state !== "pending") return false;
    this.records.delete(name);
    await rm(join(this.dir, name), { force: true });
    return true;
  }

  /** Sends the marker of every stub whose window has passed; prunes old records. */
  expireDue() {
    const run = this.expiring.then(async () => {
      const now = this.now();
      for (const [name, record] of [...this.records]) {
        if (record.state === "expired") {
          if (now - record.at > KEEP_EXPIRED_MS) {
            this.records.delete(name);
            await rm(join(this.dir, name), { force: true });
          }
          continue;
        }
        if (now - record.at < this.windowMs) continue;
        // Queued (durably, in the outbox) before it is marked: a crash in between sends
        // the marker again under the same provider message id, which the pipeline
        // drops as a duplicate; the reverse order could lose it.
        await this.onExpire(record.botId, record.stub);
        await this.#write(name, { ...record, state: "expired", at: now });
      }
    });
    this.expiring = run.catch(() => {});
    return run;
  }
}
