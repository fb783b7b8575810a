// Baileys auth state (credentials, signal keys, lid-mapping, device-list, app-state keys)
// kept in the platform's store through the gateway, never in files on the pod: a session
// survives the loss of any Node pod and moves to another replica without a new QR code.
// Baileys' own documentation says not to use useMultiFileAuthState in production.
//
// Reads are cached in memory (a key read once is never fetched again; Baileys asks for
// the same session and sender keys on every message); writes go through to the store
// before they resolve, one change set at a time per bot, in order, so what the cache
// says is what the store has.

import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { BufferJSON, initAuthCreds, proto } from "baileys";

export class AuthStateError extends Error {
  constructor(message) {
    super(message);
    this.name = "AuthStateError";
  }
}

/** The gateway's /internal/whatsapp-auth routes (Node's GATEWAY_TOKEN opens them). */
export class GatewayAuthClient {
  /** @param {{ baseUrl: string, token: string, timeoutMs?: number }} options */
  constructor({ baseUrl, token, timeoutMs = 15_000 }) {
    Object.assign(this, { baseUrl: baseUrl.replace(/\/$/, ""), token, timeoutMs });
  }

  async #call(method, path, body) {
    const url = `${this.baseUrl}/internal/whatsapp-auth/${encodeURIComponent(path[0])}${path[1] ?? ""}`;
    let response;
    try {
      response = await fetch(url, {
        method,
        headers: { Authorization: `Bearer ${this.token}`, "Content-Type": "application/json" },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(this.timeoutMs),
      });
    } catch (err) {
      throw new AuthStateError(`cannot reach the gateway's auth state at ${url}: ${err?.message ?? err}`);
    }
    const text = await response.text();
    if (!response.ok) throw new AuthStateError(`the gateway refused ${method} ${url}: HTTP ${response.status} ${text.slice(0, 300)}`);
    return JSON.parse(text);
  }

  async get(botId, kind, ids) {
    return (await this.#call("POST", [botId, "/get"], { kind, ids })).values;
  }

  async set(botId, changes) {
    await this.#call("POST", [botId, "/set"], { changes });
  }

  async forget(botId) {
    return (await this.#call("DELETE", [botId])).deleted;
  }
}

const CREDS = "creds";

function revive(kind, text) {
  const value = JSON.parse(text, BufferJSON.reviver);
  // As useMultiFileAuthState does: Baileys expects the protobuf object for these.
  return kind === "app-state-sync-key" && value ? proto.Message.AppStateSyncKeyData.fromObject(value) : value;
}

/**
 * Auth states of every bot of this Node server, in the store.
 * `use(dir, botId)` has the shape of useMultiFileAuthState (plus the bot id); the files a
 * previous version left in `dir` are moved into the store once, on first use.
 */
export class StoreAuthStates {
  /** @param {{ client: GatewayAuthClient, logger: any }} options */
  constructor({ client, logger }) {
    this.client = client;
    this.logger = logger;
    /** botId → the tail of its write chain */
    this.writes = new Map();
  }

  #serial(botId, work) {
    const run = (this.writes.get(botId) ?? Promise.resolve()).then(work);
    this.writes.set(botId, run.catch(() => {}));
    return run;
  }

  use = async (dir, botId) => {
    let stored = (await this.client.get(botId, CREDS, [""]))[""];
    if (stored === undefined && dir) stored = await this.#migrate(dir, botId);
    const creds = stored === undefined ? initAuthCreds() : revive(CREDS, stored);
    /** `${kind}\u0000${id}` → value, or null when known to be missing */
    const cache = new Map();
    const cacheKey = (kind, id) => `${kind}\u0000${id}`;
    const keys = {
      get: async (kind, ids) => {
        const missing = ids.filter((id) => !cache.has(cacheKey(kind, id)));
        if (missing.length > 0) {
          const values = await this.client.get(botId, kind, missing);
          for (const id of missing) {
            if (!cache.has(cacheKey(kind, id))) cache.set(cacheKey(kind, id), values[id] === undefined ? null : revive(kind, values[id]));
          }
        }
        return Object.fromEntries(ids.map((id) => [id, cache.get(cacheKey(kind, id)) ?? null]));
      },
      set: async (data) => {
        const changes = {};
        for (const kind of Object.keys(data)) {
          changes[kind] = {};
          for (const [id, value] of Object.entries(data[kind])) {
            changes[kind][id] = value ? JSON.stringify(value, BufferJSON.replacer) : null;
          }
        }
        await this.#serial(botId, () => this.client.set(botId, changes));
        for (const kind of Object.keys(data)) {
          for (const [id, value] of Object.entries(data[kind])) cache.set(cacheKey(kind, id), value || null);
        }
      },
    };
    const saveCreds = () =>
      this.#serial(botId, () => this.client.set(botId, { [CREDS]: { "": JSON.stringify(creds, BufferJSON.replacer) } }));
    return { state: { creds, keys }, saveCreds };
  };

  /** Logout: the whole state goes (the next start pairs again). */
  forget(botId) {
    return this.#serial(botId, () => this.client.forget(botId));
  }

  /** A session paired by an earlier version kept its state in files: move it in once. */
  async #migrate(dir, botId) {
    let names;
    try {
      names = await readdir(dir);
    } catch {
      return undefined;
    }
    if (!names.includes("creds.json")) return undefined;
    const changes = {};
    for (const name of names) {
      if (!name.endsWith(".json")) continue;
      const text = await readFile(join(dir, name), "utf8");
      if (name === "creds.json") {
        (changes[CREDS] ??= {})[""] = text;
        continue;
      }
      // `${type}-${id}.json`, with "/" written as "__" and ":" as "-" in the id.
      const base = name.slice(0, -".json".length);
      const kind = KINDS.find((k) => base.startsWith(`${k}-`));
      if (!kind) continue;
      const id = base.slice(kind.length + 1).replace(/__/g, "/");
      (changes[kind] ??= {})[id] = text;
    }
    await this.#serial(botId, () => this.client.set(botId, changes));
    this.logger.info({ bot_id: botId, keys: Object.values(changes).reduce((n, c) => n + Object.keys(c).length, 0) }, "auth state files moved into the store");
    return changes[CREDS][""];
  }
}

// Baileys' key types, longest first so "sender-key-memory" is not read as "sender-key".
const KINDS = [
  "app-state-sync-version", "app-state-sync-key", "sender-key-memory", "lid-mapping", "device-list",
  "sender-key", "pre-key", "session", "tctoken", "identity-key",
];
