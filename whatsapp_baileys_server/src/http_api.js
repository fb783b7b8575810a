// The session HTTP API used by the gateway's bot lifecycle: initialize, status, QR,
// logout. Every route but /healthz needs `Authorization: Bearer <NODE_API_TOKEN>`.

import { timingSafeEqual, createHash } from "node:crypto";
import express from "express";
import { SessionError, USER_ID } from "./sessions.js";
import { settingsProblem } from "./bot_settings.js";

const INIT_KEYS = new Set(["userId", "config", "forceReinit"]);

class BadRequest extends Error {}

function isPlainObject(value) {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Validates a POST /initialize body; throws BadRequest with the reason. */
export function parseInitializeBody(body) {
  if (!isPlainObject(body)) throw new BadRequest("body must be a JSON object");
  for (const key of Object.keys(body)) {
    if (!INIT_KEYS.has(key)) throw new BadRequest(`unknown field "${key}"; expected userId, config, forceReinit`);
  }
  const { userId, config, forceReinit = false } = body;
  if (typeof userId !== "string" || !USER_ID.test(userId)) {
    throw new BadRequest("userId must be 1-128 characters of letters, digits and @ . _ : + -");
  }
  if (!isPlainObject(config)) throw new BadRequest("config must be a JSON object");
  const quota = config.media_storage_quota_gb;
  if (typeof quota !== "number" || !Number.isFinite(quota) || quota < 0) {
    throw new BadRequest("config.media_storage_quota_gb must be a number of gigabytes >= 0");
  }
  const problem = settingsProblem(config);
  if (problem) throw new BadRequest(problem);
  if (typeof forceReinit !== "boolean") throw new BadRequest("forceReinit must be true or false");
  return { userId, config, forceReinit };
}

function sameToken(given, expected) {
  // Hash both so the comparison takes the same time whatever the lengths.
  const a = createHash("sha256").update(given).digest();
  const b = createHash("sha256").update(expected).digest();
  return timingSafeEqual(a, b) && given.length === expected.length;
}

/**
 * @param {{ sessions: import("./sessions.js").SessionManager, apiToken: string, logger: any,
 *   metrics?: () => string }} deps an empty apiToken disables authentication (NODE_INSECURE_DEV
 *   only); metrics renders the Prometheus text of GET /metrics
 */
export function createApp({ sessions, apiToken, logger, metrics = () => "", initialize = (userId, config, forceReinit) => sessions.initialize(userId, config, forceReinit) }) {
  const app = express();
  app.disable("x-powered-by");

  app.get("/healthz", (_req, res) => res.json({ ok: true }));

  // Like /healthz, unauthenticated: scrapers on the pod network read counts, no content.
  app.get("/metrics", (_req, res) => {
    res.type("text/plain; version=0.0.4; charset=utf-8").send(metrics());
  });

  app.use((req, res, next) => {
    if (!apiToken) return next();
    const header = req.get("authorization") ?? "";
    const match = /^Bearer (.+)$/.exec(header);
    if (!match || !sameToken(match[1], apiToken)) {
      logger.warn({ path: req.path, ip: req.ip }, "unauthenticated API request refused");
      res.set("WWW-Authenticate", "Bearer").status(401).json({ error: "missing or wrong bearer token" });
      return;
    }
    next();
  });

  app.use(express.json({ limit: "64kb", strict: true, type: "application/json" }));

  const userIdOf = (req) => {
    const { userId } = req.params;
    if (!USER_ID.test(userId)) throw new BadRequest(`userId "${userId}" is not a valid bot id`);
    return userId;
  };

  app.post("/initialize", async (req, res) => {
    if (!req.is("application/json")) throw new BadRequest("Content-Type must be application/json");
    const { userId, config, forceReinit } = parseInitializeBody(req.body);
    const result = await initialize(userId, config, forceReinit);
    logger.info({ bot_id: userId, forceReinit, created: result.created }, "session initialized");
    res.json(result);
  });

  app.get("/sessions/:userId", (req, res) => {
    res.json(sessions.status(userIdOf(req)));
  });

  app.get("/sessions/:userId/qr", (req, res) => {
    const userId = userIdOf(req);
    res.json({ userId, qr: sessions.qr(userId) });
  });

  app.post("/sessions/:userId/pairing-code", async (req, res) => {
    const userId = userIdOf(req);
    const phone = typeof req.body?.phoneNumber === "string" ? req.body.phoneNumber.replace(/[\s+()-]/g, "") : "";
    if (!/^[1-9][0-9]{6,14}$/.test(phone)) throw new BadRequest("phoneNumber must be the bot's phone number in international format (E.164 digits, e.g. 4915112345678)");
    res.json({ userId, code: await sessions.pairingCode(userId, phone) });
  });

  app.post("/sessions/:userId/logout", async (req, res) => {
    res.json(await sessions.logout(userIdOf(req)));
  });

  app.use((_req, res) => res.status(404).json({ error: "no such endpoint" }));

  // Express 5 forwards rejected promises of async handlers here.
  app.use((err, req, res, _next) => {
    if (err instanceof BadRequest) return res.status(400).json({ error: err.message });
    if (err instanceof SessionError) return res.status(err.httpStatus).json({ error: err.message });
    if (err?.type === "entity.parse.failed") return res.status(400).json({ error: `body is not valid JSON: ${err.message}` });
    if (err?.type === "entity.too.large") return res.status(413).json({ error: "body too large (64 KiB max)" });
    if (typeof err?.status === "number" && err.status >= 400 && err.status < 500) {
      return res.status(err.status).json({ error: err.message });
    }
    logger.error({ err, path: req.path }, "API request failed");
    res.status(500).json({ error: "internal error; see the server log" });
  });

  return app;
}
