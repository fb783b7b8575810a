// The one WebSocket connection from Node to the gateway. Frames go through the disk
// outbox: each is sent, kept until the gateway acknowledges it, and resent after a
// reconnect or a restart. Within a chat only the oldest pending frame is in flight, so
// a RETRY or an outage can never reorder one chat's messages; chats do not wait on
// each other.

import WebSocket from "ws";
import { AckStatus } from "./gen/chatbot/wire/v1/frames_pb.js";
import { FrameError, MAX_GATEWAY_FRAME_BYTES, buildNodeFrame, encodeNodeFrame, parseGatewayFrame } from "./wire.js";

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
  }) {
    Object.assign(this, { url, token, outbox, logger, onOutgoing, onAcknowledged, reconnect, retry, ackTimeoutMs });
    /** @type {WebSocket | undefined} */
    this.ws = undefined;
    this.connected = false;
    this.stopped = true;
    this.reconnectAttempt = 0;
    this.reconnectTimer = undefined;
    /** chatKey → { frameId, timer } of the frame awaiting its ack */
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
  }

  start() {
    this.stopped = false;
    this.#connect();
  }

  /** Queues a frame durably, then sends it when its chat's turn comes. */
  async send(frame, chatKey) {
    await this.outbox.add(frame, chatKey);
    this.#pump();
  }

  /** Stops reconnecting, closes the socket; pending frames stay in the outbox. */
  async stop() {
    this.stopped = true;
    clearTimeout(this.reconnectTimer);
    for (const { timer } of this.inFlight.values()) clearTimeout(timer);
    for (const timer of this.retrying.values()) clearTimeout(timer);
    this.inFlight.clear();
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
      headers: { Authorization: `Bearer ${this.token}` },
      handshakeTimeout: 10_000,
      // Replies may carry a media file; the parser refuses anything larger with a reason.
      maxPayload: MAX_GATEWAY_FRAME_BYTES + 1024,
    });
    this.ws = ws;
    ws.on("open", () => {
      if (this.ws !== ws) return;
      this.connected = true;
      this.reconnectAttempt = 0;
      this.logger.info({ url: this.url, pending: this.outbox.size }, "connected to gateway");
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
      // Nothing is in flight on a closed socket: the heads are sent again on reconnect.
      for (const { timer } of this.inFlight.values()) clearTimeout(timer);
      this.inFlight.clear();
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
    if (!this.connected || !this.ws) return;
    for (const entry of this.outbox.heads()) {
      if (this.inFlight.has(entry.chatKey) || this.retrying.has(entry.chatKey)) continue;
      if (this.removing.has(entry.frameId)) continue;
      this.#transmit(entry);
    }
  }

  #transmit(entry) {
    const timer = setTimeout(() => {
      // No answer: resend the same frame (same id; the gateway drops duplicates).
      if (this.inFlight.get(entry.chatKey)?.frameId !== entry.frameId) return;
      this.logger.warn({ frame_id: entry.frameId }, "no ack in time; resending");
      this.inFlight.delete(entry.chatKey);
      this.#pump();
    }, this.ackTimeoutMs);
    this.inFlight.set(entry.chatKey, { frameId: entry.frameId, timer });
    this.ws.send(encodeNodeFrame(entry.frame), (err) => {
      if (err) this.logger.warn({ err: err.message, frame_id: entry.frameId }, "frame not sent; will resend");
    });
  }

  #onMessage(data) {
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
    const flight = this.inFlight.get(entry.chatKey);
    if (flight?.frameId === ack.frameId) {
      clearTimeout(flight.timer);
      this.inFlight.delete(entry.chatKey);
    }
    const log = { frame_id: ack.frameId, status: AckStatus[ack.status], reason: ack.reason };
    switch (ack.status) {
      case AckStatus.RETRY: {
        const attempt = this.retryAttempts.get(entry.chatKey) ?? 0;
        this.retryAttempts.set(entry.chatKey, attempt + 1);
        const delay = backoffDelay(attempt, this.retry);
        this.logger.warn({ ...log, delay_ms: delay }, "gateway asked to retry later");
        clearTimeout(this.retrying.get(entry.chatKey));
        this.retrying.set(entry.chatKey, setTimeout(() => {
          this.retrying.delete(entry.chatKey);
          this.#pump();
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
    this.outbox.remove(ack.frameId).then(
      () => {
        this.removing.delete(ack.frameId);
        this.#pump();
      },
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
    this.ws.send(encodeNodeFrame(frame));
  }
}
