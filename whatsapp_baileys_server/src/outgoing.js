// Sends what the gateway streams from its outbox to WhatsApp, one OutgoingMessage at a
// time, and reports each outcome as an OutgoingResult frame (through the durable outbox
// to the gateway, so a result survives a disconnect).
//
// A message is posted to WhatsApp at most once per idempotency key:
// - it is sent under the WhatsApp id the gateway derived from the key
//   (`providerMessageId`, Baileys' `messageId` option), so a resend after a crash
//   between sending and recording is the same message to WhatsApp;
// - the keys already sent are remembered on disk (after the send), and a key streamed
//   again is answered SENT without posting.

import { randomBytes } from "node:crypto";
import { AckStatus, OutgoingKind, OutgoingStatus, SessionState } from "./gen/chatbot/wire/v1/frames_pb.js";
import { buildNodeFrame } from "./wire.js";

/** What WhatsApp needs to play audio as a voice note. */
export const VOICE_NOTE_MIME = "audio/ogg; codecs=opus";
const CONNECTION_CLOSED = 428; // Baileys DisconnectReason.connectionClosed

/** The Baileys content of one outgoing message (media bytes as a Buffer). */
export function contentOf(outgoing) {
  const caption = outgoing.text || undefined;
  const media = outgoing.media;
  const bytes = media ? Buffer.from(media.data.buffer, media.data.byteOffset, media.data.byteLength) : undefined;
  switch (outgoing.kind) {
    case OutgoingKind.IMAGE:
      return { image: bytes, caption, mimetype: media.mimeType };
    case OutgoingKind.DOCUMENT:
      return { document: bytes, caption, mimetype: media.mimeType, fileName: media.filename || "document" };
    case OutgoingKind.AUDIO:
      return { audio: bytes, mimetype: media.mimeType };
    case OutgoingKind.VOICE_NOTE:
      return { audio: bytes, ptt: true, mimetype: VOICE_NOTE_MIME };
    case OutgoingKind.VIDEO:
      return { video: bytes, caption, mimetype: media.mimeType };
    case OutgoingKind.REACTION:
      return { react: { text: outgoing.reactionEmoji ?? "", key: keyOf(outgoing, outgoing.targetMessageId) } };
    default:
      return { text: outgoing.text };
  }
}

function keyOf(outgoing, id) {
  return { remoteJid: outgoing.correspondentId, id, fromMe: false };
}

/**
 * @typedef {object} OutgoingSenderOptions
 * @property {import("./sessions.js").SessionManager} sessions
 * @property {import("./sent_ids.js").SentIds} sentKeys idempotency keys already sent, per bot
 * @property {import("./sent_ids.js").SentIds} [sentIds] WhatsApp ids this system sends (own echoes)
 * @property {(frame: any, chatKey: string) => Promise<void>} emitFrame the gateway outbox
 * @property {any} logger
 */

export class OutgoingSender {
  /** @param {OutgoingSenderOptions} options */
  constructor({ sessions, sentKeys, sentIds, emitFrame, logger }) {
    Object.assign(this, { sessions, sentKeys, sentIds, emitFrame, logger });
  }

  /** Sends one message; the returned status is the ack for the gateway's frame. */
  async send(outgoing) {
    const { botId, idempotencyKey: key } = outgoing;
    if (key && this.sentKeys.has(botId, key)) {
      await this.#report(outgoing, OutgoingStatus.SENT);
      return { status: AckStatus.ACCEPTED };
    }
    const session = this.sessions.sessions.get(botId);
    if (session?.state === SessionState.LOGGED_OUT) {
      return this.#failed(outgoing, `bot ${botId} is logged out of WhatsApp; pair it again`);
    }
    const sock = this.sessions.socketFor(botId);
    if (!sock) {
      // Not paired yet, or reconnecting: the message is fine, the moment is not.
      const state = session ? SessionState[session.state] : "not initialised";
      return { status: AckStatus.RETRY, reason: `session of bot ${botId} is ${state}` };
    }
    try {
      await this.#post(sock, outgoing);
    } catch (err) {
      const code = err?.output?.statusCode;
      if (code === CONNECTION_CLOSED || this.sessions.socketFor(botId) !== sock) {
        return { status: AckStatus.RETRY, reason: `connection closed while sending: ${err?.message ?? err}` };
      }
      this.logger.warn({ err, bot_id: botId, key }, "WhatsApp refused an outgoing message");
      return this.#failed(outgoing, `WhatsApp refused it: ${err?.message ?? err}`);
    }
    if (key) await this.sentKeys.remember(botId, key);
    await this.#report(outgoing, OutgoingStatus.SENT);
    return { status: AckStatus.ACCEPTED };
  }

  async #post(sock, outgoing) {
    const jid = outgoing.correspondentId;
    if (outgoing.kind === OutgoingKind.READ) {
      await sock.readMessages([keyOf(outgoing, outgoing.targetMessageId)]);
      return;
    }
    if (outgoing.kind === OutgoingKind.TYPING) {
      await sock.sendPresenceUpdate("composing", jid);
      return;
    }
    // This system always picks the id (derived from the idempotency key; random for a
    // frame without one) and remembers it before sending: Baileys may hand the echo to
    // messages.upsert before sendMessage returns, and it must be dropped, not forwarded.
    const options = { messageId: outgoing.providerMessageId || `3EB0${randomBytes(9).toString("hex").toUpperCase()}` };
    await this.sentIds?.remember(outgoing.botId, options.messageId);
    if (outgoing.quotedProviderMessageId) {
      options.quoted = { key: keyOf(outgoing, outgoing.quotedProviderMessageId), message: { conversation: "" } };
    }
    await sock.sendMessage(jid, contentOf(outgoing), options);
  }

  async #failed(outgoing, reason) {
    if (!outgoing.idempotencyKey) return { status: AckStatus.REJECTED, reason };
    await this.#report(outgoing, OutgoingStatus.FAILED, reason);
    return { status: AckStatus.ACCEPTED };
  }

  async #report(outgoing, status, reason) {
    if (!outgoing.idempotencyKey) return; // a frame from before the outbox: its ack is the answer
    const sent = status === OutgoingStatus.SENT;
    const frame = buildNodeFrame({
      payload: {
        case: "outgoingResult",
        value: {
          botId: outgoing.botId,
          idempotencyKey: outgoing.idempotencyKey,
          status,
          providerMessageId: sent && outgoing.providerMessageId ? outgoing.providerMessageId : undefined,
          reason: reason ? String(reason).slice(0, 1024) : undefined,
        },
      },
    });
    await this.emitFrame(frame, `outgoing\u0000${outgoing.botId}`);
  }
}
