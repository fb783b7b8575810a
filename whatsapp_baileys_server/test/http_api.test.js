// The session HTTP API over a real loopback HTTP server, with the real SessionManager,
// Baileys' real useMultiFileAuthState on a temporary directory, and a socket double in
// place of the WhatsApp connection (tests never contact WhatsApp).
import { test } from "node:test";
import assert from "node:assert/strict";
import { EventEmitter, once } from "node:events";
import { mkdtemp, readdir, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { useMultiFileAuthState } from "baileys";
import { AckStatus, SessionState } from "../src/gen/chatbot/wire/v1/frames_pb.js";
import { SessionManager } from "../src/sessions.js";
import { createApp } from "../src/http_api.js";
import { createMemoryLogger } from "../src/logger.js";
import { assertMatchesGolden } from "./helpers/golden.js";
import { waitUntil } from "./helpers/wait.js";

const TOKEN = "node-api-token";

/** Stands in for a Baileys socket: same `ev` interface, records what is sent. */
class FakeSocket {
  constructor() {
    this.ev = new EventEmitter();
    this.sent = [];
    this.ended = false;
    this.loggedOut = false;
  }
  emit(event, payload) {
    this.ev.emit(event, payload);
  }
  async sendMessage(jid, content, options) {
    this.sent.push({ jid, content, options });
    return { key: { id: "OUT1" } };
  }
  async logout() {
    this.loggedOut = true;
  }
  end() {
    this.ended = true;
  }
  async groupMetadata() {
    return { subject: "Team" };
  }
}

async function setup(t) {
  const authDir = await mkdtemp(join(tmpdir(), "auth-"));
  const { logger, records } = createMemoryLogger();
  const sockets = [];
  const frames = [];
  const upserts = [];
  const lidUpdates = [];
  const remembered = [];
  const sentIds = { remember: async (botId, id) => { remembered.push({ botId, id }); } };
  const sessions = new SessionManager({
    authDir,
    logger,
    makeSocket: (options) => {
      assert.ok(options.auth.creds, "Baileys auth state is passed to the socket");
      const sock = new FakeSocket();
      sockets.push(sock);
      return sock;
    },
    useAuthState: useMultiFileAuthState,
    onUpsert: async (botId, event) => { upserts.push({ botId, event }); },
    onLidMapping: async (botId, update) => { lidUpdates.push({ botId, update }); },
    sentIds,
    emitFrame: async (frame, chatKey) => { frames.push({ frame, chatKey }); },
    reconnect: { initialMs: 10, maxMs: 20 },
  });
  const server = createApp({ sessions, apiToken: TOKEN, logger, metrics: () => 'node_messages_dropped_total{reason="own_echo"} 3\n' }).listen(0, "127.0.0.1");
  await once(server, "listening");
  const base = `http://127.0.0.1:${server.address().port}`;
  t.after(async () => {
    await sessions.stopAll();
    await new Promise((r) => server.close(r));
    await rm(authDir, { recursive: true, force: true });
  });
  const call = async (method, path, body, token = TOKEN) => {
    const headers = {};
    if (token) headers.authorization = `Bearer ${token}`;
    if (body !== undefined) headers["content-type"] = "application/json";
    const res = await fetch(base + path, {
      method,
      headers,
      body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
    });
    return { status: res.status, body: await res.json() };
  };
  return { authDir, sessions, sockets, frames, upserts, call, records, base, lidUpdates, remembered };
}

const INIT = { userId: "4915000000000@s.whatsapp.net", config: { media_storage_quota_gb: 2, maxMessages: 50 } };

test("every endpoint refuses a missing or wrong bearer token", async (t) => {
  const { call, sessions } = await setup(t);
  for (const [method, path] of [["POST", "/initialize"], ["GET", "/sessions/x"], ["GET", "/sessions/x/qr"], ["POST", "/sessions/x/logout"]]) {
    assert.equal((await call(method, path, method === "POST" ? INIT : undefined, null)).status, 401);
    assert.equal((await call(method, path, method === "POST" ? INIT : undefined, "wrong")).status, 401);
  }
  assert.equal(sessions.sessions.size, 0, "no state changed");
});

test("bad initialize bodies get 400 with a reason and change nothing", async (t) => {
  const { call, sessions, authDir, sockets } = await setup(t);
  const cases = [
    ["{not json", /not valid JSON/],
    [[], /JSON object/],
    [{ userId: "../etc", config: { media_storage_quota_gb: 1 } }, /userId/],
    [{ userId: "..", config: { media_storage_quota_gb: 1 } }, /userId/],
    [{ userId: "bot-1" }, /config/],
    [{ userId: "bot-1", config: {} }, /media_storage_quota_gb/],
    [{ userId: "bot-1", config: { media_storage_quota_gb: -1 } }, /media_storage_quota_gb/],
    [{ userId: "bot-1", config: { media_storage_quota_gb: "5" } }, /media_storage_quota_gb/],
    [{ userId: "bot-1", config: { media_storage_quota_gb: 1 }, forceReinit: "yes" }, /forceReinit/],
    [{ userId: "bot-1", config: { media_storage_quota_gb: 1 }, extra: 1 }, /unknown field "extra"/],
    [{ userId: "bot-1", config: { media_storage_quota_gb: 1, group_events: "yes" } }, /config.group_events must be true or false/],
    [{ userId: "bot-1", config: { media_storage_quota_gb: 1, owner_messages: 0 } }, /config.owner_messages must be true or false/],
  ];
  for (const [body, reason] of cases) {
    const res = await call("POST", "/initialize", body);
    assert.equal(res.status, 400, JSON.stringify(body));
    assert.match(res.body.error, reason);
  }
  assert.equal(sessions.sessions.size, 0);
  assert.equal(sockets.length, 0);
  assert.deepEqual(await readdir(authDir), []);
});

test("initialize, QR pairing, status, open, and logout", async (t) => {
  const { call, sockets, frames, authDir, upserts } = await setup(t);
  const created = await call("POST", "/initialize", INIT);
  assert.equal(created.status, 200);
  assert.equal(created.body.state, "CONNECTING");
  assert.equal(created.body.created, true);
  assert.equal(sockets.length, 1);

  assert.equal((await call("GET", `/sessions/${INIT.userId}/qr`)).status, 409, "no QR before Baileys offers one");
  sockets[0].emit("connection.update", { qr: "2@abc,def,ghi" });
  const status = await call("GET", `/sessions/${INIT.userId}`);
  assert.equal(status.body.state, "QR_REQUIRED");
  assert.equal(status.body.qrAvailable, true);
  assert.deepEqual(status.body.config, INIT.config);
  assert.deepEqual((await call("GET", `/sessions/${INIT.userId}/qr`)).body, { userId: INIT.userId, qr: "2@abc,def,ghi" });

  sockets[0].emit("creds.update", {});
  sockets[0].emit("connection.update", { connection: "open" });
  assert.equal((await call("GET", `/sessions/${INIT.userId}`)).body.state, "OPEN");
  const creds = join(authDir, INIT.userId, "baileys", "creds.json");
  await waitUntil(() => stat(creds).then((s) => s.isFile(), () => false), "auth state on disk");

  sockets[0].emit("messages.upsert", { type: "notify", messages: [] });
  assert.equal(upserts.length, 1);
  assert.equal(upserts[0].botId, INIT.userId, "bot_id is the session's userId");

  // Session changes reach the gateway as session-event frames.
  const states = frames.map((f) => f.frame.payload.value.state);
  assert.deepEqual(states, [SessionState.CONNECTING, SessionState.QR_REQUIRED, SessionState.OPEN]);
  for (const { frame } of frames) assertMatchesGolden(frame, "session_event");

  // Initialize again without forceReinit: config updated, same socket.
  const again = await call("POST", "/initialize", { ...INIT, config: { media_storage_quota_gb: 5 } });
  assert.equal(again.body.created, false);
  assert.equal(sockets.length, 1);
  assert.deepEqual(again.body.config, { media_storage_quota_gb: 5 });

  const out = await call("POST", `/sessions/${INIT.userId}/logout`);
  assert.equal(out.status, 200);
  assert.equal(out.body.state, "LOGGED_OUT");
  assert.equal(sockets[0].loggedOut, true);
  assert.equal(sockets[0].ended, true);
  assert.deepEqual(await readdir(authDir), [], "auth state deleted");
});

test("forceReinit restarts the socket and keeps the stored credentials", async (t) => {
  const { call, sockets } = await setup(t);
  await call("POST", "/initialize", INIT);
  sockets[0].emit("connection.update", { connection: "open" });
  const res = await call("POST", "/initialize", { ...INIT, forceReinit: true });
  assert.equal(res.body.created, true);
  assert.equal(sockets.length, 2);
  assert.equal(sockets[0].ended, true);
  sockets[0].emit("connection.update", { connection: "close" }); // late event of the old socket
  assert.equal((await call("GET", `/sessions/${INIT.userId}`)).body.state, "CONNECTING");
});

test("unknown sessions are 404; a dropped connection reconnects; WhatsApp logout ends it", async (t) => {
  const { call, sockets, authDir } = await setup(t);
  assert.equal((await call("GET", "/sessions/nobody")).status, 404);
  assert.equal((await call("GET", "/sessions/nobody/qr")).status, 404);
  await call("POST", "/initialize", INIT);
  sockets[0].emit("connection.update", { connection: "open" });
  const boom = Object.assign(new Error("Connection Closed"), { output: { statusCode: 428 } });
  sockets[0].emit("connection.update", { connection: "close", lastDisconnect: { error: boom } });
  assert.equal((await call("GET", `/sessions/${INIT.userId}`)).body.state, "CLOSED");
  // The backoff is short in tests; poll instead of sleeping a fixed time (loaded CI).
  for (let waited = 0; sockets.length < 2 && waited < 5000; waited += 20) {
    await new Promise((r) => setTimeout(r, 20));
  }
  assert.equal(sockets.length, 2, "a new socket after the backoff");
  const loggedOut = Object.assign(new Error("logged out"), { output: { statusCode: 401 } });
  sockets[1].emit("connection.update", { connection: "close", lastDisconnect: { error: loggedOut } });
  const status = await call("GET", `/sessions/${INIT.userId}`);
  assert.equal(status.body.state, "LOGGED_OUT");
  await new Promise((r) => setTimeout(r, 60));
  assert.equal(sockets.length, 2, "no reconnect after a logout");
  assert.deepEqual(await readdir(authDir), []);
});

test("replies go out through the bot's socket; no open session is REJECTED", async (t) => {
  const { call, sockets, sessions } = await setup(t);
  assert.deepEqual(await sessions.sendText({ botId: "ghost", correspondentId: "a@s", text: "hi" }), {
    status: AckStatus.REJECTED,
    reason: "no open session for bot ghost",
  });
  await call("POST", "/initialize", INIT);
  const connecting = await sessions.sendText({ botId: INIT.userId, correspondentId: "a@s", text: "hi" });
  assert.equal(connecting.status, AckStatus.RETRY, "a session that is (re)connecting asks for a resend");
  sockets[0].emit("connection.update", { connection: "open" });
  const ok = await sessions.sendText({ botId: INIT.userId, correspondentId: "a@s", text: "Thanks", quotedProviderMessageId: "Q1" });
  assert.equal(ok.status, AckStatus.ACCEPTED);
  assert.deepEqual(sockets[0].sent[0].content, { text: "Thanks" });
  assert.equal(sockets[0].sent[0].jid, "a@s");
  assert.equal(sockets[0].sent[0].options.quoted.key.id, "Q1");
  assert.equal(sessions.quotaGbFor(INIT.userId), 2);
});

test("a restarted manager resumes stored sessions without a new pairing", async (t) => {
  const first = await setup(t);
  await first.call("POST", "/initialize", INIT);
  first.sockets[0].emit("creds.update", {});
  const creds = join(first.authDir, INIT.userId, "baileys", "creds.json");
  await waitUntil(() => stat(creds).then((s) => s.isFile(), () => false), "auth state on disk");
  await first.sessions.stopAll();
  const { logger } = createMemoryLogger();
  const sockets = [];
  const again = new SessionManager({
    authDir: first.authDir,
    logger,
    makeSocket: (options) => {
      sockets.push(options);
      return new FakeSocket();
    },
    useAuthState: useMultiFileAuthState,
    onUpsert: async () => {},
    emitFrame: async () => {},
  });
  await again.resumeAll();
  t.after(() => again.stopAll());
  assert.equal(sockets.length, 1);
  assert.equal(again.status(INIT.userId).state, "CONNECTING");
  assert.equal(again.quotaGbFor(INIT.userId), 2);
  assert.equal(
    sockets[0].auth.creds.noiseKey.public.toString("base64"),
    first.sessions.sessions.get(INIT.userId) && (await useMultiFileAuthState(join(first.authDir, INIT.userId, "baileys"))).state.creds.noiseKey.public.toString("base64"),
    "the same credentials are loaded",
  );
});

test("GET /metrics serves the drop counter as Prometheus text, without a token", async (t) => {
  const { call, base } = await setup(t);
  assert.equal((await call("GET", "/sessions/x", undefined, null)).status, 401, "other routes still need the token");
  const res = await fetch(`${base}/metrics`);
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-type"), /^text\/plain; version=0\.0\.4/);
  assert.equal(await res.text(), 'node_messages_dropped_total{reason="own_echo"} 3\n');
});

test("the session forwards lid-mapping updates, knows the account's own LID, and records each sent id before sending", async (t) => {
  const { call, sessions, sockets, lidUpdates, remembered } = await setup(t);
  assert.equal((await call("POST", "/initialize", { ...INIT, config: { ...INIT.config, group_events: true } })).status, 200);
  const sock = sockets[0];
  sock.user = { id: "4915000000000:3@s.whatsapp.net", lid: "299999999999999:3@lid" };
  sock.signalRepository = { lidMapping: { marker: "store" } };
  sock.emit("connection.update", { connection: "open" });
  sock.emit("lid-mapping.update", { lid: "210000000000001@lid", pn: "4915112345678@s.whatsapp.net" });
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(lidUpdates, [{ botId: INIT.userId, update: { lid: "210000000000001@lid", pn: "4915112345678@s.whatsapp.net" } }]);
  assert.equal(sessions.ownLid(INIT.userId), "299999999999999@lid");
  assert.deepEqual(sessions.lidMappingOf(INIT.userId), { marker: "store" });
  assert.equal(sessions.configOf(INIT.userId).group_events, true);
  const sendOrder = [];
  const original = sock.sendMessage.bind(sock);
  sock.sendMessage = async (...args) => {
    sendOrder.push(`send:${remembered.length}`);
    return original(...args);
  };
  await sessions.sendText({ botId: INIT.userId, correspondentId: "4915112345678@s.whatsapp.net", text: "hi" });
  assert.equal(remembered.length, 1);
  assert.deepEqual(sendOrder, ["send:1"], "the id is recorded before sendMessage");
  assert.equal(sock.sent[0].options.messageId, remembered[0].id, "sent under the recorded id");
});
