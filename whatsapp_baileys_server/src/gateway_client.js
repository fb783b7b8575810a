// The one WebSocket connection from Node to the gateway. Frames go through the disk
// outbox: each is sent, kept until the gateway acknowledges it, and resent after a
// reconnect or a restart. Within a chat up to `chatWindow` frames are in flight, in
// order; the gateway decides one chat's frames in arrival order and, once it answered
// RETRY to one, answers RETRY to the chat's later frames until that one comes back
// (services/gateway/queue_writer.py), so a RETRY or an outage never reorders a chat:
// on a RETRY this side stops the chat, waits the backoff and resends from its oldest
// pending frame (frames the gateway had already taken come back DUPLICATE). One frame
// per round trip per chat capped a single busy chat at about 100 messages a second.
// With a gateway that accepts frame batches (src/wire_batch.js) the frames and acks of
// one event-loop turn go out as one WebSocket message, and its acks come the same way.

import WebSocket from "ws";
import { AckStatus } from "./gen/chatbot/wire/v1/frames_pb.js";
import { FrameError, MAX_GATEWAY_FRAME_BYTES, buildNodeFrame, encodeNodeFrame, parseGatewayFrame } from "./wire.js";
import { BATCH_HEADER, BATCH_VERSION, MAX_BATCH_CHARS, splitFrames } from "./wire_batch.js";

/** Exponential backoff with full jitter, capped. */
export function backoffDelay(attempt, { initialMs, maxMs }, random = Math.random) {
  const ceiling = Math.min(maxMs, initialMs * 2 ** Math.min(attempt, 30));
  return Math.max(initialMs / 2, Math.floor(ceiling * random()));
}

/**
 * @typedef {object} GatewayClientOptions
 * @property {string} url
 * @property {string} token sent as `Authorization: Bearer <token>`
 * @property {import("./outbox.js").Outbox} outbox
 * @property {any} logger
 * @property {(outgoing: any, frameId: string) => Promise<{ status: number, reason?: string }>} onOutgoing
 *   sends one reply to WhatsApp; its result is acknowledged to the gateway
 * @property {(frame: any, status: number) => void} [onAcknowledged] called with each of
 *   our frames the gateway answered (read receipts)
 * @property {{ initialMs: number, maxMs: number }} [reconnect]
 * @property {{ initialMs: number, maxMs: number }} [retry] backoff after an ACK_STATUS_RETRY
 * @property {number} [ackTimeoutMs] resend a frame that got no ack within this time
 * @property {number} [chatWindow] frames of one chat in flight at once
 */

export class GatewayClient {
  /** @param {GatewayClientOptions} options */
  constructor({
    url,
    token,
    outbox,
    logger,
    onOutgoing,
    onAcknowledged = () => {},
    reconnect = { initialMs: 500, maxMs: 30_000 },
    retry = { initialMs: 500, maxMs: 30_000 },
    ackTimeoutMs = 30_000,
    chatWindow = 32,
  }) {
    Object.assign(this, { url, token, outbox, logger, onOutgoing, onAcknowledged, reconnect, retry, ackTimeoutMs, chatWindow });
    /** @type {WebSocket | undefined} */
    this.ws = undefined;
    this.connected = false;
    this.stopped = true;
    this.reconnectAttempt = 0;
    this.reconnectTimer = undefined;
    /** chatKey → (frameId → ack timer) of the frames awaiting their ack */
    this.inFlight = new Map();
    /** chatKey → timer while a RETRY backoff runs; the chat's head waits for it */
    this.retrying = new Map();
    /** chatKey → RETRY answers in a row, for the backoff */
    this.retryAttempts = new Map();
    /** Acknowledged frames whose outbox file is being deleted; their chat waits. */
    this.removing = new Set();
    /** Gateway frame ids already handled → the ack sent, so a resent reply is not sent twice. */
    this.handledOutgoing = new Map();
    this.outgoingInProgress = new Map();
    /** True while the socket's writes are held for the current burst of sends. */
    this.corked = false;
    /** True when the gateway accepted frame batches on the current connection. */
    this.batched = false;
    /** Frames (encoded) waiting to go out as the current turn's one message. */
    this.batch = [];
    this.batchChars = 0;
    this.batchScheduled = false;
    /** Chats whose window moved in this turn; each is pumped once at its end. */
    this.toPump = new Set();
  }

  start() {
    this.stopped = false;
    this.#connect();
  }

  /** Queues a frame durably, then sends it when its chat's turn comes. */
  async send(frame, chatKey) {
    await this.outbox.add(frame, chatKey);
    this.#pumpSoon(chatKey);
  }

  /** True once no frame of the bot waits in the outbox (false after `timeoutMs`). */
  async drained(botId, timeoutMs) {
    const deadline = Date.now() + timeoutMs;
    const mine = (key) => key.startsWith(`${botId}\u0000`) || key === `session\u0000${botId}`;
    while (this.outbox.chatKeys().some(mine)) {
      if (Date.now() >= deadline) return false;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    return true;
  }

  /** Stops reconnecting, closes the socket; pending frames stay in the outbox. */
  async stop() {
    this.stopped = true;
    clearTimeout(this.reconnectTimer);
    for (const chat of this.inFlight.keys()) this.#land(chat);
    for (const timer of this.retrying.values()) clearTimeout(timer);
    this.retrying.clear();
    const ws = this.ws;
    this.ws = undefined;
    this.connected = false;
    if (ws && ws.readyState !== WebSocket.CLOSED) {
      await new Promise((resolve) => {
        const timer = setTimeout(() => { ws.terminate(); resolve(); }, 1000);
        ws.once("close", () => { clearTimeout(timer); resolve(); });
        ws.close(1001, "node shutting down");
      });
    }
    await Promise.allSettled(this.outgoingInProgress.values());
    await this.outbox.flush();
  }

  #connect() {
    if (this.stopped) return;
    const ws = new WebSocket(this.url, {
      headers: { Authorization: `Bearer ${this.token}`, [BATCH_HEADER]: BATCH_VERSION },
      handshakeTimeout: 10_000,
      // Replies may carry a media file; the parser refuses anything larger with a reason.
      maxPayload: MAX_GATEWAY_FRAME_BYTES + 1024,
      // Frames are small JSON on a cluster network: compressing each (and inflating each
      // ack) took a third of the Node server's CPU for nothing worth saving.
      perMessageDeflate: false,
    });
    this.ws = ws;
    this.batched = false;
    this.batch = [];
    this.batchChars = 0;
    ws.on("upgrade", (res) => {
      if (this.ws === ws) this.batched = res.headers[BATCH_HEADER.toLowerCase()] === BATCH_VERSION;
    });
    ws.on("open", () => {
      if (this.ws !== ws) return;
      this.connected = true;
      this.reconnectAttempt = 0;
      this.logger.info({ url: this.url, pending: this.outbox.size, batched: this.batched }, "connected to gateway");
      this.#pump();
    });
    ws.on("message", (data) => {
      if (this.ws === ws) this.#onMessage(data);
    });
    ws.on("unexpected-response", (_req, res) => {
      this.logger.error({ status: res.statusCode }, "gateway refused the WebSocket (check GATEWAY_TOKEN and GATEWAY_WS_URL)");
    });
    ws.on("error", (err) => {
      this.logger.warn({ err: err.message, url: this.url }, "gateway connection error");
    });
    ws.on("close", () => {
      if (this.ws !== ws) return;
      this.connected = false;
      this.ws = undefined;
      // Nothing is in flight on a closed socket: everything is sent again on reconnect.
      for (const chat of this.inFlight.keys()) this.#land(chat);
      this.#scheduleReconnect();
    });
  }

  #scheduleReconnect() {
    if (this.stopped) return;
    const delay = backoffDelay(this.reconnectAttempt++, this.reconnect);
    this.logger.info({ delay_ms: delay, pending: this.outbox.size }, "gateway disconnected; reconnecting");
    this.reconnectTimer = setTimeout(() => this.#connect(), delay);
  }

  #pump() {
    for (const chatKey of this.outbox.chatKeys()) this.#pumpChat(chatKey);
  }

  /** Sends the chat's oldest frames that are not in flight yet, up to the window. */
  #pumpChat(chatKey) {
    if (!this.connected || !this.ws || this.retrying.has(chatKey)) return;
    let flying = this.inFlight.get(chatKey);
    if (flying && flying.size >= this.chatWindow) return;
    for (const entry of this.outbox.chatEntries(chatKey)) {
      if (flying?.has(entry.frameId) || this.removing.has(entry.frameId)) continue;
      if (!flying) this.inFlight.set(chatKey, (flying = new Map()));
      this.#transmit(entry, flying);
      if (flying.size >= this.chatWindow) return;
    }
  }

  /**
   * Pumps the chat once the current run of callbacks is over: a batch made durable
   * together, or a message of acks, moves a chat's window many times, and each pump
   * walks the chat's frames from its oldest.
   */
  #pumpSoon(chatKey) {
    if (this.toPump.has(chatKey)) return;
    this.toPump.add(chatKey);
    // The first chat of the turn schedules the pump; later ones join it.
    if (this.toPump.size > 1) return;
    process.nextTick(() => {
      const chats = this.toPump;
      this.toPump = new Set();
      for (const chat of chats) this.#pumpChat(chat);
    });
  }

  /** Forgets what is in flight for a chat (its frames will be sent again). */
  #land(chatKey) {
    for (const timer of this.inFlight.get(chatKey)?.values() ?? []) clearTimeout(timer);
    this.inFlight.delete(chatKey);
  }

  #transmit(entry, flying) {
    const timer = setTimeout(() => {
      // No answer: resend the same frame (same id; the gateway drops duplicates).
      if (this.inFlight.get(entry.chatKey)?.get(entry.frameId) !== timer) return;
      this.logger.warn({ frame_id: entry.frameId }, "no ack in time; resending");
      this.inFlight.get(entry.chatKey).delete(entry.frameId);
      this.#pumpChat(entry.chatKey);
    }, this.ackTimeoutMs);
    flying.set(entry.frameId, timer);
    this.#write(entry.json, entry.frameId);
  }

  /** Sends one encoded frame: alone, or in this turn's batch when the gateway takes them. */
  #write(text, frameId) {
    if (!this.batched) {
      this.#corkUntilNextTick();
      this.ws.send(text, (err) => {
        if (err) this.logger.warn({ err: err.message, frame_id: frameId }, "frame not sent; will resend");
      });
      return;
    }
    if (this.batch.length > 0 && this.batchChars + text.length > MAX_BATCH_CHARS) this.#flushBatch();
    this.batch.push(text);
    this.batchChars += text.length + 1;
    if (this.batchScheduled) return;
    this.batchScheduled = true;
    // Frames made durable together are sent from one run of promise callbacks: the
    // tick after it sees them all.
    process.nextTick(() => {
      this.batchScheduled = false;
      this.#flushBatch();
    });
  }

  #flushBatch() {
    const frames = this.batch;
    if (frames.length === 0) return;
    this.batch = [];
    this.batchChars = 0;
    // A connection lost meanwhile: its frames are resent (and its acks answered again)
    // after the reconnect.
    if (!this.connected || !this.ws) return;
    this.ws.send(frames.join("\n"), (err) => {
      if (err) this.logger.warn({ err: err.message, frames: frames.length }, "frames not sent; will resend");
    });
  }

  /**
   * Holds the socket's writes until the current burst of sends is over: a batch made
   * durable together goes out in one write instead of one per frame. `_socket` is the
   * ws connection's net.Socket (ws corks it around each frame itself; corks nest).
   */
  #corkUntilNextTick() {
    const socket = this.ws?._socket;
    if (this.corked || !socket || typeof socket.cork !== "function") return;
    this.corked = true;
    socket.cork();
    process.nextTick(() => {
      this.corked = false;
      socket.uncork();
    });
  }

  #onMessage(data) {
    if (!this.batched) {
      this.#onFrame(data);
      return;
    }
    for (const part of splitFrames(data)) this.#onFrame(part);
  }

  #onFrame(data) {
    let frame;
    try {
      frame = parseGatewayFrame(data);
    } catch (err) {
      if (!(err instanceof FrameError)) throw err;
      this.logger.error({ reason: err.reason, frame_id: err.frameId }, "bad frame from gateway");
      if (err.frameId) this.#sendAck(err.frameId, AckStatus.REJECTED, err.reason);
      return;
    }
    if (frame.payload.case === "ack") this.#onAck(frame.payload.value);
    else if (frame.payload.case === "outgoingMessage") this.#onOutgoing(frame.frameId, frame.payload.value);
  }

  #onAck(ack) {
    const entry = this.outbox.get(ack.frameId);
    if (!entry) {
      this.logger.debug({ frame_id: ack.frameId }, "ack for a frame no longer pending");
      return;
    }
    const flying = this.inFlight.get(entry.chatKey);
    const wasInFlight = flying?.has(ack.frameId) ?? false;
    if (wasInFlight) {
      clearTimeout(flying.get(ack.frameId));
      flying.delete(ack.frameId);
    }
    const log = { frame_id: ack.frameId, status: AckStatus[ack.status], reason: ack.reason };
    switch (ack.status) {
      case AckStatus.RETRY: {
        // A late RETRY for a copy sent before the chat was stopped changes nothing.
        if (!wasInFlight) return;
        // The gateway answers RETRY to this chat's later frames too; stop the chat and
        // resend it from its oldest pending frame after the backoff.
        this.#land(entry.chatKey);
        const attempt = this.retryAttempts.get(entry.chatKey) ?? 0;
        this.retryAttempts.set(entry.chatKey, attempt + 1);
        const delay = backoffDelay(attempt, this.retry);
        this.logger.warn({ ...log, delay_ms: delay }, "gateway asked to retry later");
        clearTimeout(this.retrying.get(entry.chatKey));
        this.retrying.set(entry.chatKey, setTimeout(() => {
          this.retrying.delete(entry.chatKey);
          this.#pumpChat(entry.chatKey);
        }, delay));
        return;
      }
      case AckStatus.REJECTED:
        this.logger.error(log, "gateway rejected a frame; dropped");
        break;
      default:
        this.logger.debug(log, "frame acknowledged");
    }
    try {
      this.onAcknowledged(entry.frame, ack.status);
    } catch (err) {
      this.logger.warn({ err, frame_id: ack.frameId }, "acknowledgement hook failed");
    }
    this.retryAttempts.delete(entry.chatKey);
    if (this.removing.has(ack.frameId)) return;
    this.removing.add(ack.frameId);
    // The window moved: the chat's next frame need not wait for the deletion's fsync.
    this.#pumpSoon(entry.chatKey);
    this.outbox.remove(ack.frameId).then(
      // Nothing more to send once it is gone: the window moved with the ack above.
      () => this.removing.delete(ack.frameId),
      (err) => {
        // The frame stays pending and is resent; the gateway answers DUPLICATE.
        this.removing.delete(ack.frameId);
        this.logger.error({ err, frame_id: ack.frameId }, "could not delete acknowledged frame from the outbox");
      },
    );
  }

  async #onOutgoing(frameId, outgoing) {
    const done = this.handledOutgoing.get(frameId);
    if (done) {
      this.#sendAck(frameId, done.status, done.reason);
      return;
    }
    if (this.outgoingInProgress.has(frameId)) return;
    const work = (async () => {
      let result;
      try {
        result = await this.onOutgoing(outgoing, frameId);
      } catch (err) {
        this.logger.error({ err, frame_id: frameId, bot_id: outgoing.botId }, "sending a reply to WhatsApp failed");
        result = { status: AckStatus.RETRY, reason: `send failed: ${err?.message ?? err}` };
      }
      // A RETRY is not remembered: the gateway's resend must really try again.
      if (result.status !== AckStatus.RETRY) {
        this.handledOutgoing.set(frameId, result);
        if (this.handledOutgoing.size > 10_000) this.handledOutgoing.delete(this.handledOutgoing.keys().next().value);
      }
      this.#sendAck(frameId, result.status, result.reason);
    })().finally(() => this.outgoingInProgress.delete(frameId));
    this.outgoingInProgress.set(frameId, work);
  }

  /** Acks are answers, not deliveries: sent once, never kept in the outbox. */
  #sendAck(frameId, status, reason) {
    if (!this.connected || !this.ws) {
      this.logger.warn({ frame_id: frameId }, "ack not sent: gateway disconnected (it will resend the frame)");
      return;
    }
    const frame = buildNodeFrame({
      payload: { case: "ack", value: { frameId, status, reason: reason ? String(reason).slice(0, 1024) : undefined } },
    });
    this.#write(encodeNodeFrame(frame), frameId);
  }
}
