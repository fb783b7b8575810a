// The real server process: refuses to start without its token, starts on loopback with
// the documented layout, answers authenticated requests, reaches the gateway over an
// authenticated WebSocket, and stops cleanly on SIGTERM. No /initialize is sent with a
// valid body, so nothing ever tries to reach WhatsApp.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { TOKEN, startGateway } from "./helpers/fake_gateway.js";

const ENTRY = join(dirname(fileURLToPath(import.meta.url)), "..", "src", "index.js");

function run(env) {
  const child = spawn(process.execPath, [ENTRY], { env: { PATH: process.env.PATH, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  let stderr = "";
  child.stderr.on("data", (d) => { stderr += d; });
  return { child, stderr: () => stderr };
}

async function waitFor(predicate, timeoutMs = 10_000) {
  const started = Date.now();
  while (!predicate()) {
    if (Date.now() - started > timeoutMs) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 20));
  }
}

test("the server refuses to start without NODE_API_TOKEN and says what to do", async () => {
  const { child, stderr } = run({ GATEWAY_TOKEN: "x" });
  const [code] = await once(child, "exit");
  assert.equal(code, 2);
  assert.match(stderr(), /NODE_API_TOKEN is not set: set it to/);
});

test("the server starts on loopback, authenticates, talks to the gateway and stops on SIGTERM", async (t) => {
  const root = await mkdtemp(join(tmpdir(), "node-srv-"));
  t.after(() => rm(root, { recursive: true, force: true }));
  const gateway = await startGateway();
  t.after(() => gateway.close());
  const { child, stderr } = run({
    NODE_API_TOKEN: "api-secret",
    GATEWAY_TOKEN: TOKEN,
    GATEWAY_WS_URL: gateway.url,
    NODE_PORT: "0",
    AUTH_DIR: join(root, "auth"),
    OUTBOX_DIR: join(root, "outbox"),
    POLL_STORE_DIR: join(root, "polls"),
    MEDIA_STAGING_DIR: join(root, "staging"),
    SENT_IDS_DIR: join(root, "sent_ids"),
    UNDECRYPTABLE_DIR: join(root, "undecryptable"),
  });
  t.after(() => child.kill("SIGKILL"));
  await waitFor(() => /"msg":"whatsapp_baileys_server listening"/.test(stderr()));
  const line = stderr().split("\n").find((l) => l.includes("whatsapp_baileys_server listening"));
  const { host, port } = JSON.parse(line);
  assert.equal(host, "127.0.0.1", "loopback by default");
  // Media bytes go through the gateway by default: no staging directory is made.
  assert.deepEqual((await readdir(root)).sort(), ["auth", "outbox", "polls", "sent_ids", "undecryptable"]);

  const base = `http://127.0.0.1:${port}`;
  assert.equal((await fetch(`${base}/healthz`)).status, 200);
  assert.equal((await fetch(`${base}/sessions/bot-1`)).status, 401);
  const missing = await fetch(`${base}/sessions/bot-1`, { headers: { authorization: "Bearer api-secret" } });
  assert.equal(missing.status, 404);
  const bad = await fetch(`${base}/initialize`, {
    method: "POST",
    headers: { authorization: "Bearer api-secret", "content-type": "application/json" },
    body: JSON.stringify({ userId: "bot-1", config: {} }),
  });
  assert.equal(bad.status, 400);
  assert.match((await bad.json()).error, /media_storage_quota_gb/);

  await gateway.waitFor(() => gateway.sockets.size === 1, 10_000);
  assert.deepEqual(gateway.authHeaders, [`Bearer ${TOKEN}`]);

  child.kill("SIGTERM");
  const [code] = await once(child, "exit");
  assert.equal(code, 0, stderr());
  assert.match(stderr(), /"msg":"stopped"/);
});
