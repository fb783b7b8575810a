// Configuration from environment variables, validated once at start-up. Every variable
// and its default is documented in whatsapp_baileys_server/README.md.

import { hostname } from "node:os";
import { resolve } from "node:path";

export class ConfigError extends Error {
  constructor(message) {
    super(message);
    this.name = "ConfigError";
  }
}

function integer(env, name, fallback, { min = 0, max = Number.MAX_SAFE_INTEGER } = {}) {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  if (!/^\d+$/.test(raw.trim())) throw new ConfigError(`${name}="${raw}" is not a whole number; unset it to use ${fallback}`);
  const value = Number(raw.trim());
  if (value < min || value > max) throw new ConfigError(`${name}=${value} is outside ${min}..${max}; unset it to use ${fallback}`);
  return value;
}

function flag(env, name) {
  const raw = (env[name] ?? "").trim().toLowerCase();
  if (raw === "" || raw === "0" || raw === "false" || raw === "no") return false;
  if (raw === "1" || raw === "true" || raw === "yes") return true;
  throw new ConfigError(`${name}="${env[name]}" is not a flag; use 1 or 0`);
}

/**
 * @param {Record<string, string | undefined>} env
 * @returns {Readonly<{
 *   host: string, port: number, apiToken: string, insecureDev: boolean,
 *   gatewayUrl: string, gatewayToken: string, authDir: string, outboxDir: string,
 *   stagingDir: string, pollStoreDir: string, sentIdsDir: string, sentKeysDir: string, undecryptableDir: string, undecryptableWindowSeconds: number, pollStoreMax: number, quotaTimeoutMs: number, maxMediaBytes: number,
 *   downloadTimeoutMs: number, reuploadTimeoutMs: number, ackTimeoutMs: number, shutdownGraceMs: number,
 *   chatWindow: number, retry: { initialMs: number, maxMs: number },
 *   authState: "store" | "files", gatewayHttpUrl: string, mediaStaging: "gateway" | "directory",
 *   ownership: "static" | "lease", replicaId: string, advertisedUrl: string, leaseTtlSeconds: number,
 *   logLevel: string, demoScript: string | undefined }>}
 */
export function loadConfig(env = process.env) {
  const insecureDev = flag(env, "NODE_INSECURE_DEV");
  const apiToken = env.NODE_API_TOKEN ?? "";
  if (!apiToken && !insecureDev) {
    throw new ConfigError(
      "NODE_API_TOKEN is not set: set it to the bearer token the gateway uses for POST /initialize " +
        "(or NODE_INSECURE_DEV=1 to run without authentication on a development machine)",
    );
  }
  const gatewayToken = env.GATEWAY_TOKEN ?? "";
  if (!gatewayToken && !insecureDev) {
    throw new ConfigError(
      "GATEWAY_TOKEN is not set: set it to the token the gateway expects on its WebSocket " +
        "(or NODE_INSECURE_DEV=1 on a development machine)",
    );
  }
  const gatewayUrl = env.GATEWAY_WS_URL || "ws://127.0.0.1:8090/ws";
  let parsed;
  try {
    parsed = new URL(gatewayUrl);
  } catch {
    throw new ConfigError(`GATEWAY_WS_URL="${gatewayUrl}" is not a URL; use e.g. ws://127.0.0.1:8090/ws`);
  }
  if (parsed.protocol !== "ws:" && parsed.protocol !== "wss:") {
    throw new ConfigError(`GATEWAY_WS_URL must start with ws:// or wss://, got "${gatewayUrl}"`);
  }
  const authState = env.NODE_AUTH_STATE || "store";
  if (!["store", "files"].includes(authState)) {
    throw new ConfigError(`NODE_AUTH_STATE="${authState}" is unknown; use store (the default: in the platform's store, through the gateway) or files (development only)`);
  }
  // The gateway serves Node's auth state on the same host and port as its WebSocket.
  const gatewayHttpUrl = env.GATEWAY_HTTP_URL || `${parsed.protocol === "wss:" ? "https:" : "http:"}//${parsed.host}`;
  const mediaStaging = env.NODE_MEDIA_STAGING || "gateway";
  if (!["gateway", "directory"].includes(mediaStaging)) {
    throw new ConfigError(`NODE_MEDIA_STAGING="${mediaStaging}" is unknown; use gateway (the default: media bytes go through the gateway into the platform's MediaStore) or directory (MEDIA_STAGING_DIR shared with media_svc; development)`);
  }
  const ownership = env.NODE_OWNERSHIP || "static";
  if (!["static", "lease"].includes(ownership)) {
    throw new ConfigError(`NODE_OWNERSHIP="${ownership}" is unknown; use static (one Node server runs the bots it is told to) or lease (replicas share the bots)`);
  }
  const host = env.NODE_HOST || "127.0.0.1";
  const port = integer(env, "NODE_PORT", 8091, { max: 65535 });
  const logLevel = env.LOG_LEVEL || "info";
  if (!["trace", "debug", "info", "warn", "error", "fatal", "silent"].includes(logLevel)) {
    throw new ConfigError(`LOG_LEVEL="${logLevel}" is unknown; use trace, debug, info, warn, error, fatal or silent`);
  }
  return Object.freeze({
    host,
    port,
    ownership,
    // A StatefulSet pod's name (node-0, node-1 …) is a stable replica id.
    replicaId: env.NODE_REPLICA_ID || hostname(),
    advertisedUrl: env.NODE_ADVERTISED_URL || `http://${host}:${port}`,
    leaseTtlSeconds: integer(env, "NODE_LEASE_TTL_SECONDS", 15, { min: 3, max: 300 }),
    apiToken,
    insecureDev,
    gatewayUrl,
    gatewayToken,
    authDir: resolve(env.AUTH_DIR || "./var/auth"),
    outboxDir: resolve(env.OUTBOX_DIR || "./var/outbox"),
    mediaStaging,
    stagingDir: resolve(env.MEDIA_STAGING_DIR || "./var/staging"),
    pollStoreDir: resolve(env.POLL_STORE_DIR || "./var/polls"),
    sentIdsDir: resolve(env.SENT_IDS_DIR || "./var/sent_ids"),
    undecryptableDir: resolve(env.UNDECRYPTABLE_DIR || "./var/undecryptable"),
    undecryptableWindowSeconds: integer(env, "NODE_UNDECRYPTABLE_WINDOW_SECONDS", 60, { min: 1, max: 86_400 }),
    sentKeysDir: resolve(env.SENT_KEYS_DIR || "./var/sent_keys"),
    pollStoreMax: integer(env, "POLL_STORE_MAX", 10_000, { min: 1 }),
    quotaTimeoutMs: integer(env, "QUOTA_CHECK_TIMEOUT_MS", 2000, { min: 1 }),
    maxMediaBytes: integer(env, "MAX_MEDIA_BYTES", 100 * 1024 * 1024, { min: 1 }),
    downloadTimeoutMs: integer(env, "DOWNLOAD_TIMEOUT_MS", 120_000, { min: 1 }),
    reuploadTimeoutMs: integer(env, "REUPLOAD_TIMEOUT_MS", 30_000, { min: 1 }),
    ackTimeoutMs: integer(env, "GATEWAY_ACK_TIMEOUT_MS", 30_000, { min: 1 }),
    // Frames of one chat in flight to the gateway at once (order is kept either way).
    chatWindow: integer(env, "GATEWAY_CHAT_WINDOW", 32, { min: 1, max: 1024 }),
    authState,
    gatewayHttpUrl,
    // Backoff after the gateway answers RETRY (bot not active, queue_svc unavailable).
    retry: {
      initialMs: integer(env, "GATEWAY_RETRY_INITIAL_MS", 500, { min: 1 }),
      maxMs: integer(env, "GATEWAY_RETRY_MAX_MS", 30_000, { min: 1 }),
    },
    shutdownGraceMs: integer(env, "SHUTDOWN_GRACE_MS", 5000),
    logLevel,
    // Demo only: a script replayed instead of contacting WhatsApp (src/demo_socket.js).
    demoScript: env.NODE_DEMO_SCRIPT ? resolve(env.NODE_DEMO_SCRIPT) : undefined,
  });
}
