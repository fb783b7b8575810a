// One Baileys session per bot (bot_id == the session's userId). Auth state lives on
// disk per user (useMultiFileAuthState), next to the session's config, so a restart
// resumes every paired session without a new QR code.

import { mkdir, readFile, readdir, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { generateMessageIDV2, jidNormalizedUser } from "baileys";
import { AckStatus, SessionState } from "./gen/chatbot/wire/v1/frames_pb.js";
import { buildNodeFrame } from "./wire.js";
import { backoffDelay } from "./gateway_client.js";

const LOGGED_OUT_CODE = 401; // Baileys DisconnectReason.loggedOut
const RESTART_REQUIRED_CODE = 515; // Baileys DisconnectReason.restartRequired

/** A bot id that is safe as a directory name (JIDs such as 4915…@s.whatsapp.net fit). */
export const USER_ID = /^(?!\.{1,2}$)[A-Za-z0-9@._:+-]{1,128}$/;

export class SessionError extends Error {
  /** @param {number} httpStatus */
  constructor(message, httpStatus) {
    super(message);
    this.name = "SessionError";
    this.httpStatus = httpStatus;
  }
}

async function writeJsonAtomic(path, value) {
  const tmp = `${path}.tmp`;
  await writeFile(tmp, JSON.stringify(value), { flush: true });
  await rename(tmp, path);
}

/**
 * @typedef {object} SessionManagerOptions
 * @property {string} authDir
 * @property {any} logger
 * @property {(options: any, context: { userId: string }) => any} makeSocket Baileys' makeWASocket
 *   (which ignores the context) or a stand-in that needs to know the bot
 * @property {(dir: string) => Promise<{ state: any, saveCreds: () => Promise<void> }>} useAuthState
 * @property {(botId: string, event: any) => Promise<any>} onUpsert the message handler
 * @property {(botId: string, reactions: any[]) => Promise<any>} [onReactions] `messages.reaction` events
 * @property {(frame: any, chatKey: string) => Promise<void>} emitFrame the gateway outbox
 * @property {() => Date} [clock]
 * @property {{ initialMs: number, maxMs: number }} [reconnect]
 * @property {(auth: any, logger: any) => any} [wrapAuth] e.g. makeCacheableSignalKeyStore
 * @property {import("./sent_ids.js").SentIds} [sentIds] ids of the messages this system sends
 */

export class SessionManager {
  /** @param {SessionManagerOptions} options */
  constructor({ authDir, logger, makeSocket, useAuthState, onUpsert, onReactions = async () => [], emitFrame, clock = () => new Date(), reconnect = { initialMs: 1000, maxMs: 60_000 }, socketOptions = {}, sentIds }) {
    Object.assign(this, { authDir, logger, makeSocket, useAuthState, onUpsert, onReactions, emitFrame, clock, reconnect, socketOptions, sentIds });
    /** @type {Map<string, any>} */
    this.sessions = new Map();
    this.closing = false;
  }

  #dir(userId) {
    if (!USER_ID.test(userId)) throw new SessionError(`userId "${userId}" is not a valid bot id`, 400);
    return join(this.authDir, userId);
  }

  /** Starts every session whose config was stored by an earlier run. */
  async resumeAll() {
    await mkdir(this.authDir, { recursive: true });
    for (const name of await readdir(this.authDir)) {
      if (!USER_ID.test(name)) continue;
      let stored;
      try {
        stored = JSON.parse(await readFile(join(this.authDir, name, "session.json"), "utf8"));
      } catch {
        continue; // not a session directory, or one being logged out
      }
      this.logger.info({ bot_id: name }, "resuming stored session");
      const session = this.#newSession(name, stored.config);
      await this.#start(session);
    }
  }

  #newSession(userId, config) {
    const session = { userId, config, state: SessionState.UNSPECIFIED, qr: undefined, sock: undefined, generation: 0, attempts: 0, timer: undefined, detail: undefined, updatedAt: this.clock() };
    this.sessions.set(userId, session);
    return session;
  }

  /**
   * Creates (or, with forceReinit, restarts) a bot's session. Without forceReinit an
   * existing live session only takes the new config.
   */
  async initialize(userId, config, forceReinit = false) {
    const dir = this.#dir(userId);
    if (this.closing) throw new SessionError("shutting down", 503);
    await mkdir(join(dir, "baileys"), { recursive: true });
    await writeJsonAtomic(join(dir, "session.json"), { userId, config });
    let session = this.sessions.get(userId);
    if (session && !forceReinit && session.state !== SessionState.LOGGED_OUT) {
      session.config = config;
      return { ...this.status(userId), created: false };
    }
    if (session) this.#stopSocket(session);
    else session = this.#newSession(userId, config);
    session.config = config;
    session.attempts = 0;
    await this.#start(session);
    return { ...this.status(userId), created: true };
  }

  async #start(session) {
    const generation = ++session.generation;
    const log = this.logger.child({ bot_id: session.userId });
    const { state, saveCreds } = await this.useAuthState(join(this.#dir(session.userId), "baileys"));
    if (generation !== session.generation || this.closing) return;
    this.#setState(session, SessionState.CONNECTING);
    const sock = this.makeSocket(
      { auth: state, logger: log, markOnlineOnConnect: false, syncFullHistory: false, ...this.socketOptions },
      { userId: session.userId },
    );
    session.sock = sock;
    const current = () => generation === session.generation && session.sock === sock;
    sock.ev.on("creds.update", () => {
      saveCreds().catch((err) => log.error({ err }, "could not save auth state"));
    });
    sock.ev.on("connection.update", (update) => {
      if (current()) this.#onConnection(session, update, log);
    });
    sock.ev.on("messages.upsert", (event) => {
      if (!current()) return;
      this.onUpsert(session.userId, event).catch((err) => log.error({ err }, "messages.upsert handling failed"));
    });
    sock.ev.on("messages.reaction", (reactions) => {
      if (!current()) return;
      this.onReactions(session.userId, reactions).catch((err) => log.error({ err }, "messages.reaction handling failed"));
    });
  }

  #onConnection(session, { connection, qr, lastDisconnect }, log) {
    if (qr) {
      session.qr = qr;
      this.#setState(session, SessionState.QR_REQUIRED, "scan the QR code to pair");
    }
    if (connection === "open") {
      session.qr = undefined;
      session.attempts = 0;
      this.#setState(session, SessionState.OPEN);
    } else if (connection === "close") {
      const err = lastDisconnect?.error;
      const code = err?.output?.statusCode;
      const detail = `disconnected${code ? ` (${code})` : ""}: ${err?.message ?? "unknown reason"}`;
      session.sock = undefined;
      if (code === LOGGED_OUT_CODE) {
        log.warn({ code }, "logged out by WhatsApp; a new pairing is needed");
        this.#setState(session, SessionState.LOGGED_OUT, detail);
        this.#forgetAuth(session.userId).catch((e) => log.error({ err: e }, "could not delete auth state"));
        return;
      }
      this.#setState(session, SessionState.CLOSED, detail);
      if (this.closing) return;
      const delay = code === RESTART_REQUIRED_CODE ? 0 : backoffDelay(session.attempts++, this.reconnect);
      log.info({ code, delay_ms: delay }, "session closed; reconnecting");
      clearTimeout(session.timer);
      session.timer = setTimeout(() => {
        this.#start(session).catch((e) => log.error({ err: e }, "session restart failed"));
      }, delay);
    }
  }

  #setState(session, state, detail) {
    const changed = session.state !== state || session.detail !== detail;
    session.state = state;
    session.detail = detail;
    session.updatedAt = this.clock();
    if (!changed) return;
    const frame = buildNodeFrame({
      payload: {
        case: "sessionEvent",
        value: { botId: session.userId, state, time: timestampFromDate(session.updatedAt), detail: detail?.slice(0, 1024) },
      },
    });
    this.emitFrame(frame, `session\u0000${session.userId}`).catch((err) =>
      this.logger.error({ err, bot_id: session.userId }, "session event not queued"));
  }

  #stopSocket(session) {
    clearTimeout(session.timer);
    session.generation += 1; // late events of the old socket are ignored
    const sock = session.sock;
    session.sock = undefined;
    if (sock) {
      try {
        sock.end(undefined);
      } catch (err) {
        this.logger.warn({ err, bot_id: session.userId }, "closing a socket failed");
      }
    }
  }

  async #forgetAuth(userId) {
    await rm(this.#dir(userId), { recursive: true, force: true });
  }

  status(userId) {
    this.#dir(userId);
    const s = this.sessions.get(userId);
    if (!s) throw new SessionError(`no session for userId "${userId}"; POST /initialize first`, 404);
    return {
      userId,
      state: SessionState[s.state],
      qrAvailable: s.qr !== undefined && s.state === SessionState.QR_REQUIRED,
      detail: s.detail ?? null,
      updatedAt: s.updatedAt.toISOString(),
      config: s.config,
    };
  }

  qr(userId) {
    this.status(userId);
    const s = this.sessions.get(userId);
    if (s.state !== SessionState.QR_REQUIRED || !s.qr) {
      throw new SessionError(`no QR code pending for "${userId}" (state ${SessionState[s.state]})`, 409);
    }
    return s.qr;
  }

  /** Logs the bot out of WhatsApp and deletes its stored auth state. */
  async logout(userId) {
    this.status(userId);
    const s = this.sessions.get(userId);
    const sock = s.sock;
    if (sock && s.state === SessionState.OPEN) {
      try {
        await sock.logout("logout requested by operator");
      } catch (err) {
        this.logger.warn({ err, bot_id: userId }, "WhatsApp logout failed; deleting local auth state anyway");
      }
    }
    this.#stopSocket(s);
    s.qr = undefined;
    await this.#forgetAuth(userId);
    this.#setState(s, SessionState.LOGGED_OUT, "logged out by operator");
    return this.status(userId);
  }

  /** The bot's media_storage_quota_gb, or undefined when it has none. */
  /** The bot's own JID (normalised, without device), once its socket knows it. */
  ownJid(botId) {
    const id = this.sessions.get(botId)?.sock?.user?.id;
    return typeof id === "string" && id ? jidNormalizedUser(id) : undefined;
  }

  quotaGbFor(botId) {
    const quota = this.sessions.get(botId)?.config?.media_storage_quota_gb;
    return typeof quota === "number" ? quota : undefined;
  }

  socketFor(botId) {
    const s = this.sessions.get(botId);
    return s?.state === SessionState.OPEN ? s.sock : undefined;
  }

  /** Sends one reply; the result is the ack for the gateway. */
  async sendText({ botId, correspondentId, text, quotedProviderMessageId }) {
    const s = this.sessions.get(botId);
    if (!s || s.state === SessionState.LOGGED_OUT || s.state === SessionState.QR_REQUIRED) {
      return { status: AckStatus.REJECTED, reason: `no open session for bot ${botId}` };
    }
    if (s.state !== SessionState.OPEN || !s.sock) {
      // Reconnecting: the reply is fine, the moment is not.
      return { status: AckStatus.RETRY, reason: `session of bot ${botId} is ${SessionState[s.state]}` };
    }
    const options = quotedProviderMessageId
      ? { quoted: { key: { remoteJid: correspondentId, id: quotedProviderMessageId, fromMe: false }, message: { conversation: "" } } }
      : undefined;
    // The id is chosen and remembered before sending: Baileys hands the echo of a sent
    // message to messages.upsert before sendMessage resolves, and the handler must know
    // it as this system's own (not the owner typing on the phone).
    const messageId = generateMessageIDV2(s.sock.user?.id);
    await this.sentIds?.remember(botId, messageId);
    await s.sock.sendMessage(correspondentId, { text }, { ...options, messageId });
    return { status: AckStatus.ACCEPTED };
  }

  /** Asks the sender's phone to re-upload expired media (Baileys updateMediaMessage). */
  async reupload(botId, message) {
    const sock = this.socketFor(botId);
    if (!sock) throw new Error(`no open session for bot ${botId}`);
    return sock.updateMediaMessage(message);
  }

  /** Group subject for frames' GroupInfo; cached per group. */
  async groupName(botId, jid) {
    const s = this.sessions.get(botId);
    if (!s) return undefined;
    s.groupNames ??= new Map();
    const hit = s.groupNames.get(jid);
    if (hit && hit.until > Date.now()) return hit.name;
    const sock = this.socketFor(botId);
    if (!sock) return hit?.name;
    const meta = await sock.groupMetadata(jid);
    s.groupNames.set(jid, { name: meta?.subject, until: Date.now() + 10 * 60_000 });
    return meta?.subject;
  }

  /** Closes every socket; stored auth state is kept for the next start. */
  async stopAll() {
    this.closing = true;
    for (const s of this.sessions.values()) this.#stopSocket(s);
  }
}
