// Configuration from environment variables, validated once at start-up. Every variable
// and its default is documented in whatsapp_baileys_server/README.md.

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
 *   stagingDir: string, pollStoreDir: string, sentIdsDir: string, sentKeysDir: string, pollStoreMax: number, quotaTimeoutMs: number, maxMediaBytes: number,
 *   downloadTimeoutMs: number, reuploadTimeoutMs: number, ackTimeoutMs: number, shutdownGraceMs: number,
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
  const logLevel = env.LOG_LEVEL || "info";
  if (!["trace", "debug", "info", "warn", "error", "fatal", "silent"].includes(logLevel)) {
    throw new ConfigError(`LOG_LEVEL="${logLevel}" is unknown; use trace, debug, info, warn, error, fatal or silent`);
  }
  return Object.freeze({
    host: env.NODE_HOST || "127.0.0.1",
    port: integer(env, "NODE_PORT", 8091, { max: 65535 }),
    apiToken,
    insecureDev,
    gatewayUrl,
    gatewayToken,
    authDir: resolve(env.AUTH_DIR || "./var/auth"),
    outboxDir: resolve(env.OUTBOX_DIR || "./var/outbox"),
    stagingDir: resolve(env.MEDIA_STAGING_DIR || "./var/staging"),
    pollStoreDir: resolve(env.POLL_STORE_DIR || "./var/polls"),
    sentIdsDir: resolve(env.SENT_IDS_DIR || "./var/sent_ids"),
    sentKeysDir: resolve(env.SENT_KEYS_DIR || "./var/sent_keys"),
    pollStoreMax: integer(env, "POLL_STORE_MAX", 10_000, { min: 1 }),
    quotaTimeoutMs: integer(env, "QUOTA_CHECK_TIMEOUT_MS", 2000, { min: 1 }),
    maxMediaBytes: integer(env, "MAX_MEDIA_BYTES", 100 * 1024 * 1024, { min: 1 }),
    downloadTimeoutMs: integer(env, "DOWNLOAD_TIMEOUT_MS", 120_000, { min: 1 }),
    reuploadTimeoutMs: integer(env, "REUPLOAD_TIMEOUT_MS", 30_000, { min: 1 }),
    ackTimeoutMs: integer(env, "GATEWAY_ACK_TIMEOUT_MS", 30_000, { min: 1 }),
    shutdownGraceMs: integer(env, "SHUTDOWN_GRACE_MS", 5000),
    logLevel,
    // Demo only: a script replayed instead of contacting WhatsApp (src/demo_socket.js).
    demoScript: env.NODE_DEMO_SCRIPT ? resolve(env.NODE_DEMO_SCRIPT) : undefined,
  });
}
