// WhatsApp ids of the messages this system sent, per bot. Baileys hands every message
// the account sends back as an upsert with `key.fromMe`; the ids kept here tell this
// system's own echoes (dropped) from what the owner typed on the phone (forwarded as
// `from_owner`). Bounded per bot and kept on disk, so an echo that arrives after a
// restart is still recognised.
//
// One append-only file per bot, one id per line; rewritten (temp file, rename) when it
// holds twice the bound, so reading it back never costs more than 2 × `maxPerBot` lines.

import { appendFile, mkdir, readFile, readdir, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";

const FILE_SUFFIX = ".ids";

/** A bot id as a file name: the id is hex-encoded, so any id is safe. */
function fileName(botId) {
  return `${Buffer.from(botId, "utf8").toString("hex")}${FILE_SUFFIX}`;
}

function botIdOf(name) {
  if (!name.endsWith(FILE_SUFFIX)) return undefined;
  const hex = name.slice(0, -FILE_SUFFIX.length);
  return /^(?:[0-9a-f]{2})+$/.test(hex) ? Buffer.from(hex, "hex").toString("utf8") : undefined;
}

export class SentIds {
  /** @param {{ dir: string, maxPerBot?: number, logger: any }} options */
  constructor({ dir, maxPerBot = 10_000, logger }) {
    this.dir = dir;
    this.maxPerBot = maxPerBot;
    this.logger = logger;
    /** @type {Map<string, Set<string>>} insertion-ordered: the oldest ids go first */
    this.byBot = new Map();
    /** @type {Map<string, number>} lines in each bot's file */
    this.lines = new Map();
    this.chain = Promise.resolve();
  }

  /** Loads the ids kept by an earlier run. */
  async open() {
    await mkdir(this.dir, { recursive: true });
    for (const name of await readdir(this.dir)) {
      const botId = botIdOf(name);
      if (botId === undefined) continue;
      const ids = (await readFile(join(this.dir, name), "utf8")).split("\n").filter(Boolean);
      const set = this.#set(botId);
      for (const id of ids) this.#add(set, id);
      this.lines.set(botId, ids.length);
    }
    return this;
  }

  #set(botId) {
    let set = this.byBot.get(botId);
    if (!set) {
      set = new Set();
      this.byBot.set(botId, set);
    }
    return set;
  }

  #add(set, id) {
    set.delete(id);
    set.add(id);
    if (set.size > this.maxPerBot) set.delete(set.values().next().value);
  }

  #serial(work) {
    const run = this.chain.then(work);
    this.chain = run.catch(() => {});
    return run;
  }

  /**
   * Records an id this system is about to send (call it before sendMessage: Baileys may
   * deliver the echo before sendMessage resolves). Known at once; durable when resolved.
   */
  remember(botId, id) {
    const value = String(id ?? "");
    if (!value || value.includes("\n")) return Promise.resolve();
    this.#add(this.#set(botId), value);
    return this.#serial(async () => {
      const path = join(this.dir, fileName(botId));
      const lines = (this.lines.get(botId) ?? 0) + 1;
      if (lines > 2 * this.maxPerBot) {
        const tmp = `${path}.tmp`;
        const kept = [...this.#set(botId)];
        await writeFile(tmp, `${kept.join("\n")}\n`, { flush: true });
        await rename(tmp, path);
        this.lines.set(botId, kept.length);
      } else {
        await appendFile(path, `${value}\n`, { flush: true });
        this.lines.set(botId, lines);
      }
    }).catch((err) => {
      // Still known in memory; only an echo after a restart could be mistaken.
      this.logger.error({ err, bot_id: botId }, "could not persist a sent message id");
    });
  }

  /** True when this system sent the message with this id from this bot. */
  has(botId, id) {
    return this.byBot.get(botId)?.has(String(id ?? "")) ?? false;
  }

  /** Resolves when every started write has reached the disk. */
  flush() {
    return this.chain;
  }
}
