// Baileys auth state through the gateway's /internal/whatsapp-auth routes, played here by
// a real local HTTP server over a Map (the Python side and the store have their own
// tests): round trips with Buffers, the read cache, ordered writes, logout, and the
// move of an earlier version's files into the store.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { once } from "node:events";
import { mkdtemp, rm, writeFile, mkdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BufferJSON, initAuthCreds } from "baileys";
import { GatewayAuthClient, StoreAuthStates } from "../src/auth_state.js";
import { createMemoryLogger } from "../src/logger.js";

async function fakeGateway(t, token = "node-token") {
  const values = new Map(); // `${bot}\u0000${kind}\u0000${id}` → text
  const calls = [];
  const server = createServer(async (req, res) => {
    let body = "";
    for await (const chunk of req) body += chunk;
    const match = /^\/internal\/whatsapp-auth\/([^/]+)(\/get|\/set)?$/.exec(req.url);
    if (req.headers.authorization !== `Bearer ${token}` || !match) {
      res.writeHead(req.headers.authorization === `Bearer ${token}` ? 404 : 401).end("{}");
      return;
    }
    const bot = decodeURIComponent(match[1]);
    const json = body ? JSON.parse(body) : {};
    calls.push({ method: req.method, op: match[2] ?? "", bot, json });
    let answer;
    if (match[2] === "/get") {
      answer = { values: Object.fromEntries(json.ids.filter((id) => values.has(`${bot}\u0000${json.kind}\u0000${id}`)).map((id) => [id, values.get(`${bot}\u0000${json.kind}\u0000${id}`)])) };
    } else if (match[2] === "/set") {
      for (const [kind, entries] of Object.entries(json.changes)) {
        for (const [id, value] of Object.entries(entries)) {
          if (value === null) values.delete(`${bot}\u0000${kind}\u0000${id}`);
          else values.set(`${bot}\u0000${kind}\u0000${id}`, value);
        }
      }
      answer = { ok: true };
    } else {
      let deleted = 0;
      for (const key of [...values.keys()]) if (key.startsWith(`${bot}\u0000`)) { values.delete(key); deleted++; }
      answer = { deleted };
    }
    res.writeHead(200, { "Content-Type": "application/json" }).end(JSON.stringify(answer));
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  t.after(() => server.close());
  const baseUrl = `http://127.0.0.1:${server.address().port}`;
  return { values, calls, client: new GatewayAuthClient({ baseUrl, token }), baseUrl };
}

test("credentials and keys round-trip through the store, Buffers included", async (t) => {
  const gw = await fakeGateway(t);
  const { logger } = createMemoryLogger();
  const first = await new StoreAuthStates({ client: gw.client, logger }).use(undefined, "bot-1");
  assert.equal(first.state.creds.registered, false, "a bot never seen starts with new credentials");
  first.state.creds.me = { id: "4915100000001:3@s.whatsapp.net" };
  await first.saveCreds();
  await first.state.keys.set({ "pre-key": { 1: { public: Buffer.from([1, 2, 3]), private: Buffer.from([4]) }, 2: { public: Buffer.from([9]), private: Buffer.from([8]) } }, "lid-mapping": { "4915100000001": "123456789012345" } });
  await first.state.keys.set({ "pre-key": { 2: null } });

  // Another replica (a new StoreAuthStates, nothing cached) gets the same state.
  const other = await new StoreAuthStates({ client: gw.client, logger }).use(undefined, "bot-1");
  assert.equal(other.state.creds.me.id, "4915100000001:3@s.whatsapp.net");
  assert.deepEqual(other.state.creds.noiseKey.public, first.state.creds.noiseKey.public);
  assert.ok(Buffer.isBuffer(other.state.creds.noiseKey.public), "Buffers come back as Buffers");
  const keys = await other.state.keys.get("pre-key", ["1", "2"]);
  assert.deepEqual(keys["1"].public, Buffer.from([1, 2, 3]));
  assert.equal(keys["2"], null, "deleted keys read as missing");
  assert.deepEqual(await other.state.keys.get("lid-mapping", ["4915100000001"]), { "4915100000001": "123456789012345" });
  // Read once, then served from memory.
  const gets = gw.calls.filter((c) => c.op === "/get").length;
  await other.state.keys.get("pre-key", ["1", "2"]);
  assert.equal(gw.calls.filter((c) => c.op === "/get").length, gets);
});

test("writes of one bot reach the store in the order Baileys made them", async (t) => {
  const gw = await fakeGateway(t);
  const { logger } = createMemoryLogger();
  const { state } = await new StoreAuthStates({ client: gw.client, logger }).use(undefined, "bot-2");
  await Promise.all(Array.from({ length: 20 }, (_, i) => state.keys.set({ session: { a: { n: i } } })));
  const stored = JSON.parse(gw.values.get("bot-2\u0000session\u0000a"), BufferJSON.reviver);
  assert.equal(stored.n, 19, "the last write wins, as it would on one disk");
});

test("logout forgets the bot's state in the store, and only that bot's", async (t) => {
  const gw = await fakeGateway(t);
  const { logger } = createMemoryLogger();
  const states = new StoreAuthStates({ client: gw.client, logger });
  for (const bot of ["bot-a", "bot-b"]) {
    const { saveCreds } = await states.use(undefined, bot);
    await saveCreds();
  }
  await states.forget("bot-a");
  assert.deepEqual([...gw.values.keys()].map((k) => k.split("\u0000")[0]), ["bot-b"]);
});

test("a session paired by the file-based version moves into the store once", async (t) => {
  const gw = await fakeGateway(t);
  const dir = await mkdtemp(join(tmpdir(), "auth-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const creds = { ...initAuthCreds(), me: { id: "4915100000009@s.whatsapp.net" } };
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, "creds.json"), JSON.stringify(creds, BufferJSON.replacer));
  await writeFile(join(dir, "pre-key-5.json"), JSON.stringify({ public: Buffer.from([5]) }, BufferJSON.replacer));
  await writeFile(join(dir, "sender-key-memory-120363@g.us.json"), JSON.stringify({ x: true }));
  await writeFile(join(dir, "app-state-sync-key-AAAA.json"), JSON.stringify({ keyData: Buffer.from([7]) }, BufferJSON.replacer));
  const { logger, records } = createMemoryLogger();
  const { state } = await new StoreAuthStates({ client: gw.client, logger }).use(dir, "bot-old");
  assert.equal(state.creds.me.id, "4915100000009@s.whatsapp.net", "no new pairing");
  assert.deepEqual((await state.keys.get("pre-key", ["5"]))["5"].public, Buffer.from([5]));
  assert.ok(gw.values.has("bot-old\u0000sender-key-memory\u0000120363@g.us"), "the longest key type wins");
  assert.ok(gw.values.has("bot-old\u0000app-state-sync-key\u0000AAAA"));
  assert.ok(records.some((r) => r.msg === "auth state files moved into the store"));
});

test("a gateway that refuses says so, with what to check", async (t) => {
  const gw = await fakeGateway(t);
  const wrong = new GatewayAuthClient({ baseUrl: gw.baseUrl, token: "wrong" });
  await assert.rejects(() => new StoreAuthStates({ client: wrong, logger: createMemoryLogger().logger }).use(undefined, "bot"), /refused POST .* HTTP 401/);
});
