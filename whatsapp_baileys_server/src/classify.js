// What a WhatsApp message is, decided from its content alone: text, media of which kind,
// a structured message, or housekeeping. Pure functions, shared by the handler and tests.

import { WAMessageStubType, getContentType, normalizeMessageContent } from "baileys";
import { MediaKind } from "./gen/chatbot/common/v1/message_pb.js";
import { structuredKind } from "./structured.js";

/** Upsert types that carry new incoming messages (`append`: queued while offline). */
export const HANDLED_UPSERT_TYPES = Object.freeze(["notify", "append"]);

/** `audio/ogg; codecs=opus` → `audio/ogg`: the form used for routing decisions. */
export function baseMime(mime) {
  return String(mime ?? "").split(";")[0].trim().toLowerCase();
}

/**
 * A non-negative integer from WhatsApp's number / string / Long, or undefined. Values
 * like fileLength come from the sender and are only ever used as hints.
 */
export function untrustedCount(value) {
  let n;
  if (typeof value === "number") n = value;
  else if (typeof value === "bigint") n = Number(value);
  else if (typeof value === "string" && /^\d+$/.test(value.trim())) n = Number(value.trim());
  else if (value && typeof value === "object" && typeof value.low === "number" && typeof value.high === "number") {
    n = (value.high >>> 0) * 2 ** 32 + (value.low >>> 0);
    if (!value.unsigned && value.high < 0) return undefined;
  }
  return Number.isSafeInteger(n) && n >= 0 ? n : undefined;
}

/** True for a message whose content could not be decrypted (yet). */
export function isDecryptionStub(msg) {
  return msg.messageStubType === WAMessageStubType.CIPHERTEXT || msg.messageStubType === "CIPHERTEXT" || !msg.message;
}

/** True when WhatsApp sent a raw message only as an `editedMessage` wrapper. */
export function editedWrapper(message) {
  let m = message;
  for (let i = 0; i < 3 && m; i += 1) {
    if (m.editedMessage) return m.editedMessage;
    m = m.ephemeralMessage?.message;
  }
  return undefined;
}

/**
 * The message content with every wrapper removed (ephemeral, view-once v1/v2/extension,
 * document-with-caption, edited …), by Baileys' own normalisation. An edit stays a
 * protocol message: it becomes an Edit referencing the original, not a new text.
 */
export function unwrap(content) {
  return normalizeMessageContent(content);
}

/**
 * What a message is, decided by its WhatsApp message type (never by MIME alone).
 * Every type a person can send is forwarded: text, media, or a structured message
 * (location, contacts, poll, vote, reaction, event, interactive reply, group invite, edit,
 * deletion, and an Unsupported marker for anything else); only WhatsApp housekeeping
 * (key distribution, other protocol messages) is "ignored".
 * @returns {{ type: "text", text: string } | { type: "media", kind: number, media: any,
 *   mimeType: string, caption: string, fileName?: string } |
 *   { type: "structured", contentType?: string } | { type: "ignored", contentType?: string }}
 */
export function classify(content) {
  const contentType = getContentType(content);
  if (contentType === "conversation") return { type: "text", text: content.conversation ?? "" };
  if (contentType === "extendedTextMessage") return { type: "text", text: content.extendedTextMessage?.text ?? "" };
  const media = contentType ? content[contentType] : undefined;
  const common = () => ({ media, mimeType: String(media?.mimetype ?? ""), caption: String(media?.caption ?? "") });
  switch (contentType) {
    case "imageMessage":
      return { type: "media", kind: MediaKind.IMAGE, ...common() };
    case "stickerMessage":
      // Static and animated stickers are both stickers (image/webp), never images.
      return { type: "media", kind: MediaKind.STICKER, ...common(), caption: "" };
    case "audioMessage":
      return { type: "media", kind: media?.ptt ? MediaKind.VOICE_NOTE : MediaKind.AUDIO, ...common(), caption: "" };
    case "videoMessage":
      return { type: "media", kind: media?.gifPlayback ? MediaKind.GIF : MediaKind.VIDEO, ...common() };
    case "ptvMessage":
      return { type: "media", kind: MediaKind.VIDEO_NOTE, ...common() };
    case "documentMessage": {
      const fileName = media?.fileName ? String(media.fileName) : undefined;
      return { type: "media", kind: MediaKind.DOCUMENT, ...common(), fileName };
    }
    default:
      return structuredKind(contentType, content) === "housekeeping"
        ? { type: "ignored", contentType }
        : { type: "structured", contentType };
  }
}
