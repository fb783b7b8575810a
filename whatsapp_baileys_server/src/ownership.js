// Which Node replica runs which bot's WhatsApp session (NODE_OWNERSHIP=lease): every
// replica renews a membership lease in the store (through the gateway), and a bot
// belongs to its rendezvous winner among the live members (highest sha256(replica id,
// bot id): a resize moves only the bots whose winner changed). The winner takes the
// bot's session lease before it starts the session, so two replicas never run one bot;
// a replica that dies stops renewing, and its bots are started elsewhere once its
// leases expire (at most about two lease times). The auth state is in the store, so
// the new replica needs no QR code. The gateway routes a bot's calls by the same
// leases (services/gateway/node_directory.py).

import { createHash } from "node:crypto";
import { SessionError } from "./sessions.js";

export const MEMBER_PREFIX = "node-member:";
export const SESSION_PREFIX = "whatsapp-session:";

/** The replica a bot belongs to among `replicaIds` (the gateway applies the same rule). */
export function rendezvousOwner(botId, replicaIds) {
  let best;
  let bestHash;
  for (const replica of replicaIds) {
    const hash = createHash("sha256").update(`${replica}\u0000${botId}`).digest();
    if (best === undefined || Buffer.compare(hash, bestHash) > 0) {
      best = replica;
      bestHash = hash;
    }
  }
  return best;
}

/** The gateway's /internal/leases and /internal/bots routes (Node's GATEWAY_TOKEN). */
export class GatewayLeaseClient {
  constructor({ baseUrl, token, timeoutMs = 10_000 }) {
    Object.assign(this, { baseUrl: baseUrl.replace(/\/$/, ""), token, timeoutMs });
  }

  async #call(method, path, body) {
    const response = await fetch(`${this.baseUrl}${path}`, {
      method,
      headers: { Authorization: `Bearer ${this.token}`, "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(this.timeoutMs),
    });
    const text = await response.text();
    if (!response.ok) throw new Error(`gateway refused ${method} ${path}: HTTP ${response.status} ${text.slice(0, 300)}`);
    return JSON.parse(text);
  }

  async acquire(name, holder, ttlSeconds) {
    return (await this.#call("POST", "/internal/leases/acquire", { name, holder, ttl_seconds: ttlSeconds })).acquired;
  }

  async release(name, holder) {
    await this.#call("POST", "/internal/leases/release", { name, holder });
  }

  async holders(prefix) {
    return (await this.#call("GET", `/internal/leases?prefix=${encodeURIComponent(prefix)}`)).leases;
  }

  async activeBots() {
    return (await this.#call("GET", "/internal/bots")).bots;
  }
}

export class Ownership {
  /**
   * @param {{ client: GatewayLeaseClient, sessions: any, drain: (botId: string, timeoutMs: number) => Promise<boolean>,
   *   replicaId: string, url: string, ttlSeconds: number, logger: any }} options
   */
  constructor({ client, sessions, drain, replicaId, url, ttlSeconds, logger }) {
    Object.assign(this, { client, sessions, drain, replicaId, url, ttlSeconds, logger });
    /** Bots whose session lease this replica holds. */
    this.held = new Set();
    this.timer = undefined;
    this.running = undefined;
    this.stopped = false;
  }

  start() {
    this.logger.info({ replica: this.replicaId, url: this.url, ttl_s: this.ttlSeconds }, "sharing bots by lease");
    const loop = async () => {
      this.running = this.tick().catch((err) => this.logger.error({ err }, "ownership round failed; retrying"));
      await this.running;
      if (!this.stopped) this.timer = setTimeout(loop, (this.ttlSeconds * 1000) / 3);
    };
    loop();
  }

  /** One round: renew membership, take the bots this replica wins, give up the others. */
  async tick() {
    if (!(await this.client.acquire(`${MEMBER_PREFIX}${this.replicaId}`, this.url, this.ttlSeconds))) {
      this.logger.error({ replica: this.replicaId }, "another server uses this NODE_REPLICA_ID; give every replica its own");
      return;
    }
    const members = Object.keys(await this.client.holders(MEMBER_PREFIX)).map((n) => n.slice(MEMBER_PREFIX.length));
    // A bot POST /initialize takes while the list is read may be missing from it (the
    // gateway marks it active just before): only bots held before the read can be
    // "stopped".
    const heldBefore = new Set(this.held);
    const bots = await this.client.activeBots();
    const active = new Set(bots.map((b) => b.bot_id));
    for (const { bot_id: botId, config } of bots) {
      if (this.stopped) return;
      if (rendezvousOwner(botId, members) !== this.replicaId) {
        if (this.held.has(botId)) await this.#handOver(botId, "another replica wins it now");
        continue;
      }
      const got = await this.client.acquire(`${SESSION_PREFIX}${botId}`, this.replicaId, this.ttlSeconds);
      if (!got) {
        // Still held by its previous replica (alive, or not yet expired): wait for it.
        if (this.held.delete(botId)) this.#stopSession(botId, "its session lease was lost");
        continue;
      }
      if (!this.held.has(botId)) {
        this.held.add(botId);
        this.logger.info({ bot_id: botId }, "took the bot's session");
        await this.sessions.initialize(botId, config, false);
      }
    }
    for (const botId of [...this.held]) {
      if (!active.has(botId) && heldBefore.has(botId)) await this.#handOver(botId, "the bot was stopped");
    }
  }

  /**
   * POST /initialize in lease mode: the session starts here only under its lease, so a
   * gateway that routed by a stale view never makes two replicas run one bot.
   */
  async initialize(botId, config, forceReinit) {
    const got = await this.client.acquire(`${SESSION_PREFIX}${botId}`, this.replicaId, this.ttlSeconds);
    if (!got) throw new SessionError(`bot "${botId}" is held by another Node replica; ask the gateway again`, 409);
    this.held.add(botId);
    return this.sessions.initialize(botId, config, forceReinit);
  }

  #stopSession(botId, why) {
    this.logger.warn({ bot_id: botId, why }, "stopping the bot's session here");
    this.sessions.release(botId);
  }

  /** Stops the session, lets its frames reach the gateway, then frees the lease. */
  async #handOver(botId, why) {
    this.held.delete(botId);
    this.logger.info({ bot_id: botId, why }, "handing the bot's session over");
    this.sessions.release(botId);
    if (!(await this.drain(botId, (this.ttlSeconds * 1000) / 2))) {
      this.logger.warn({ bot_id: botId }, "frames still unacknowledged at handover; they stay in this outbox and are resent");
    }
    await this.client.release(`${SESSION_PREFIX}${botId}`, this.replicaId).catch((err) => this.logger.warn({ err, bot_id: botId }, "lease not released; it expires"));
  }

  /** Graceful stop: every bot handed over, then the membership released. */
  async stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running;
    for (const botId of [...this.held]) await this.#handOver(botId, "shutting down");
    await this.client.release(`${MEMBER_PREFIX}${this.replicaId}`, this.url).catch(() => {});
  }
}
