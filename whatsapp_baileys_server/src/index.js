// Composition root: configuration from the environment, then the outbox, the gateway
// client, the message handler, the Baileys sessions and the HTTP API, wired together.
// Nothing else in src/ reads the environment or holds process-wide state.

import { mkdir } from "node:fs/promises";
import { once } from "node:events";
import { pathToFileURL } from "node:url";
import makeWASocket, { Browsers, downloadMediaMessage, makeCacheableSignalKeyStore, useMultiFileAuthState } from "baileys";
import { ConfigError, loadConfig } from "./config.js";
import { createLogger } from "./logger.js";
import { Outbox } from "./outbox.js";
import { GatewayAuthClient, StoreAuthStates } from "./auth_state.js";
import { GatewayLeaseClient, Ownership } from "./ownership.js";
import { GatewayClient } from "./gateway_client.js";
import { createMessageHandler } from "./handler.js";
import { PollStore } from "./poll_store.js";
import { removeStalePartials } from "./media.js";
import { GatewayStager } from "./stagers.js";
import { SessionManager } from "./sessions.js";
import { SentIds } from "./sent_ids.js";
import { PendingStubs } from "./undecryptable.js";
import { DropCounter } from "./drops.js";
import { OutgoingSender } from "./outgoing.js";
import { readReceipts } from "./read_receipts.js";
import { createApp } from "./http_api.js";

/** The real WhatsApp connection: Baileys' socket and its media downloader. */
export function baileysWhatsApp() {
  return {
    makeSocket: ({ auth, logger: log, ...rest }) =>
      makeWASocket({
        ...rest,
        auth: { creds: auth.creds, keys: makeCacheableSignalKeyStore(auth.keys, log) },
        logger: log,
        browser: Browsers.ubuntu("Chrome"),
      }),
    // No reupload context here: the handler asks for one re-upload itself, with its own
    // timeout and for 403 too.
    download: (message) => downloadMediaMessage(message, "stream", {}),
  };
}

/**
 * Starts the server; resolves with a handle whose stop() shuts it down gracefully.
 * `whatsapp` is the socket factory and downloader; only the demo mode passes another.
 * @param {ReturnType<typeof loadConfig>} config
 */
/** Where sessions keep their Baileys auth state: the store (through the gateway), or files. */
function authStateOf(config, logger) {
  if (config.authState === "files") {
    logger.warn("NODE_AUTH_STATE=files: sessions live on this pod's disk only (development)");
    return { useAuthState: useMultiFileAuthState };
  }
  const states = new StoreAuthStates({
    client: new GatewayAuthClient({ baseUrl: config.gatewayHttpUrl, token: config.gatewayToken }),
    logger: logger.child({ component: "auth_state" }),
  });
  return { useAuthState: states.use, forgetAuthState: (botId) => states.forget(botId) };
}

export async function start(config, { logger = createLogger({ level: config.logLevel }), whatsapp = baileysWhatsApp() } = {}) {
  if (config.insecureDev) logger.warn("NODE_INSECURE_DEV is set: authentication may be disabled; never use this in production");
  for (const dir of [config.authDir, config.outboxDir]) await mkdir(dir, { recursive: true });
  let stager;
  if (config.mediaStaging === "directory") {
    logger.warn({ stagingDir: config.stagingDir }, "NODE_MEDIA_STAGING=directory: media bytes go to a directory media_svc must share (development)");
    await mkdir(config.stagingDir, { recursive: true });
    const stale = await removeStalePartials(config.stagingDir, Math.max(3_600_000, 2 * config.downloadTimeoutMs));
    if (stale.length > 0) logger.info({ files: stale.length }, "removed partial downloads left by an earlier run");
  } else {
    // An upload cut off by a crash is discarded by the gateway; nothing to clean here.
    stager = new GatewayStager({ baseUrl: config.gatewayHttpUrl, token: config.gatewayToken });
  }

  const polls = await new PollStore({
    dir: config.pollStoreDir,
    maxPolls: config.pollStoreMax,
    logger: logger.child({ component: "polls" }),
  }).open();
  const sentIds = await new SentIds({ dir: config.sentIdsDir, logger: logger.child({ component: "sent_ids" }) }).open();
  // Idempotency keys of outgoing messages already posted to WhatsApp, per bot: a key the
  // gateway streams again is answered SENT without posting (same store, other directory).
  const sentKeys = await new SentIds({ dir: config.sentKeysDir, logger: logger.child({ component: "sent_keys" }) }).open();
  const outbox = await new Outbox({ dir: config.outboxDir, logger: logger.child({ component: "outbox" }) }).open();
  // Bound late: the gateway needs the sessions to send replies, the sessions need the
  // gateway to report frames.
  let sessions;
  const gateway = new GatewayClient({
    url: config.gatewayUrl,
    token: config.gatewayToken,
    outbox,
    logger: logger.child({ component: "gateway" }),
    onOutgoing: (outgoing) => sender.send(outgoing),
    onAcknowledged: (frame, status) => markRead(frame, status),
    ackTimeoutMs: config.ackTimeoutMs,
    chatWindow: config.chatWindow,
    retry: config.retry,
  });
  const drops = new DropCounter();
  // Bound late too: an expired stub's marker is built by the handler.
  let handler;
  const pendingStubs = await new PendingStubs({
    dir: config.undecryptableDir,
    windowMs: config.undecryptableWindowSeconds * 1000,
    logger: logger.child({ component: "undecryptable" }),
    onExpire: (botId, stub) => handler.emitUndecryptable(botId, stub, stub.messageStubParameters?.[0] || "no content"),
  }).open();
  handler = createMessageHandler({
    stager,
    stagingDir: config.stagingDir,
    download: whatsapp.download,
    reupload: (botId, message) => sessions.reupload(botId, message),
    quotaGbFor: (botId) => sessions.quotaGbFor(botId),
    groupNameOf: (botId, jid) => sessions.groupName(botId, jid),
    polls,
    meIdOf: (botId) => sessions.ownJid(botId),
    meLidOf: (botId) => sessions.ownLid(botId),
    configOf: (botId) => sessions.configOf(botId),
    lidMappingOf: (botId) => sessions.lidMappingOf(botId),
    sentIds,
    pendingStubs,
    drops,
    frameSink: (frame, chatKey) => gateway.send(frame, chatKey),
    logger: logger.child({ component: "handler" }),
    quotaTimeoutMs: config.quotaTimeoutMs,
    maxMediaBytes: config.maxMediaBytes,
    downloadTimeoutMs: config.downloadTimeoutMs,
    reuploadTimeoutMs: config.reuploadTimeoutMs,
  });
  sessions = new SessionManager({
    authDir: config.authDir,
    logger: logger.child({ component: "sessions" }),
    makeSocket: whatsapp.makeSocket,
    ...authStateOf(config, logger),
    onUpsert: (botId, event) => handler.handleUpsert(botId, event),
    onReactions: (botId, reactions) => handler.handleReactions(botId, reactions),
    onLidMapping: (botId, update) => handler.learnMappings(botId, update),
    emitFrame: (frame, chatKey) => gateway.send(frame, chatKey),
    sentIds,
  });

  const sender = new OutgoingSender({
    sessions,
    sentKeys,
    sentIds,
    emitFrame: (frame, chatKey) => gateway.send(frame, chatKey),
    logger: logger.child({ component: "outgoing" }),
  });
  const markRead = readReceipts({ sessions, logger: logger.child({ component: "read_receipts" }) });

  gateway.start();
  let ownership;
  if (config.ownership === "lease") {
    ownership = new Ownership({
      client: new GatewayLeaseClient({ baseUrl: config.gatewayHttpUrl, token: config.gatewayToken }),
      sessions,
      drain: (botId, timeoutMs) => gateway.drained(botId, timeoutMs),
      replicaId: config.replicaId,
      url: config.advertisedUrl,
      ttlSeconds: config.leaseTtlSeconds,
      logger: logger.child({ component: "ownership" }),
    });
    ownership.start();
  } else {
    await sessions.resumeAll();
  }
  pendingStubs.start();

  const app = createApp({
    sessions,
    apiToken: config.apiToken,
    logger: logger.child({ component: "api" }),
    metrics: () => drops.render(),
    ...(ownership ? { initialize: (userId, cfg, force) => ownership.initialize(userId, cfg, force) } : {}),
  });
  const server = app.listen(config.port, config.host);
  await once(server, "listening");
  const { address, port } = server.address();
  logger.info({ host: address, port, gateway: config.gatewayUrl }, "whatsapp_baileys_server listening");

  let stopping;
  const stop = () => {
    stopping ??= (async () => {
      logger.info("shutting down");
      // Stop accepting requests first, then close WhatsApp sockets (no new messages),
      // then the gateway link; pending frames stay in the outbox for the next start.
      const closed = new Promise((resolve) => server.close(resolve));
      server.closeIdleConnections?.();
      // Hand the bots over first: their frames drain while the gateway link is up.
      await ownership?.stop();
      await sessions.stopAll();
      await pendingStubs.stop();
      // Let downloads under way finish and queue their frames (bounded: a download has
      // its own timeout, but shutdown should not wait for it in full).
      const settled = await Promise.race([
        handler.idle().then(() => true),
        new Promise((resolve) => setTimeout(resolve, config.shutdownGraceMs, false).unref()),
      ]);
      if (!settled) logger.warn("messages still being handled at shutdown; WhatsApp will redeliver unacknowledged ones");
      await gateway.stop();
      await outbox.close();
      await sentIds.flush();
      await sentKeys.flush();
      await closed;
      logger.info({ pending_frames: outbox.size }, "stopped");
    })();
    return stopping;
  };
  return { server, port, stop, outbox, gateway, sessions };
}

async function main() {
  let config;
  try {
    config = loadConfig(process.env);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`whatsapp_baileys_server: configuration error: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const logger = createLogger({ level: config.logLevel });
  let whatsapp;
  if (config.demoScript) {
    // Demo only: loaded on demand so production never runs (or even imports) it.
    const demo = await import("./demo_socket.js");
    let script;
    try {
      script = await demo.loadDemoScript(config.demoScript);
    } catch (err) {
      if (err instanceof demo.DemoScriptError) {
        process.stderr.write(`whatsapp_baileys_server: NODE_DEMO_SCRIPT error: ${err.message}\n`);
        process.exit(2);
      }
      throw err;
    }
    logger.warn(
      { script: script.path, bots: [...script.bots.keys()] },
      "DEMO MODE (NODE_DEMO_SCRIPT is set): WhatsApp is NOT contacted; sessions replay a script. Never use this in production",
    );
    whatsapp = demo.createDemoWhatsApp(script, { logger: logger.child({ component: "demo" }) });
  }
  const running = await start(config, { logger, whatsapp });
  for (const signal of ["SIGTERM", "SIGINT"]) {
    process.once(signal, () => {
      logger.info({ signal }, "signal received");
      const force = setTimeout(() => {
        logger.error("graceful shutdown took too long; exiting");
        process.exit(1);
      }, 10_000);
      force.unref();
      running.stop().then(() => process.exit(0), (err) => {
        logger.error({ err }, "shutdown failed");
        process.exit(1);
      });
    });
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  main().catch((err) => {
    process.stderr.write(`whatsapp_baileys_server: failed to start: ${err?.stack ?? err}\n`);
    process.exit(1);
  });
}
