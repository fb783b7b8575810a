// Lease ownership rounds against an in-memory lease table: a bot that POST /initialize
// takes while a round is reading the active bots is not handed over as "stopped" (the
// round's list predates it); a bot held before the read and missing from it is.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Ownership, SESSION_PREFIX } from "../src/ownership.js";
import { createMemoryLogger } from "../src/logger.js";

class MemoryLeases {
  constructor() {
    this.leases = new Map();
    this.active = [];
    /** Resolves the pending activeBots() read when set (the test decides when). */
    this.gate = undefined;
  }
  async acquire(name, holder) {
    const current = this.leases.get(name);
    if (current !== undefined && current !== holder) return false;
    this.leases.set(name, holder);
    return true;
  }
  async release(name, holder) {
    if (this.leases.get(name) === holder) this.leases.delete(name);
  }
  async holders(prefix) {
    return Object.fromEntries([...this.leases].filter(([name]) => name.startsWith(prefix)));
  }
  async activeBots() {
    const snapshot = this.active.map((botId) => ({ bot_id: botId, config: {} }));
    if (this.gate) await this.gate;
    return snapshot;
  }
}

function sessions() {
  const running = new Set();
  return {
    running,
    initialize: async (botId) => {
      running.add(botId);
      return { userId: botId };
    },
    release: (botId) => running.delete(botId),
  };
}

function ownership(client, sessionSet) {
  const { logger } = createMemoryLogger();
  return new Ownership({ client, sessions: sessionSet, drain: async () => true, replicaId: "node-a", url: "http://a", ttlSeconds: 3, logger });
}

test("a bot initialized while a round reads the active bots keeps its session", async () => {
  const client = new MemoryLeases();
  const running = sessions();
  const owner = ownership(client, running);
  let open;
  client.gate = new Promise((resolve) => {
    open = resolve;
  });
  const round = owner.tick();
  // The gateway marks the bot active and initializes it while the round's read is out.
  await new Promise((resolve) => setImmediate(resolve));
  client.active = ["bot-1"];
  await owner.initialize("bot-1", {}, false);
  open();
  await round;
  assert.ok(running.running.has("bot-1"), "the session was released by a stale list");
  assert.equal(client.leases.get(`${SESSION_PREFIX}bot-1`), "node-a");
});

test("a held bot missing from the active bots is handed over", async () => {
  const client = new MemoryLeases();
  const running = sessions();
  const owner = ownership(client, running);
  client.active = ["bot-1"];
  await owner.tick();
  assert.ok(running.running.has("bot-1"));
  client.active = [];
  await owner.tick();
  assert.ok(!running.running.has("bot-1"));
  assert.equal(client.leases.get(`${SESSION_PREFIX}bot-1`), undefined);
});
