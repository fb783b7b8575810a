// Turns Baileys `messages.upsert` events into wire frames. A plain module: the socket,
// the downloader, the staging directory, the quota and the frame sink are all passed in,
// so tests drive it with Baileys-shaped events and no WhatsApp connection.

import { WAMessageStubType, getContentType, getKeyAuthor, normalizeMessageContent } from "baileys";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { MediaKind } from "./gen/chatbot/common/v1/message_pb.js";
import { buildNodeFrame } from "./wire.js";
import { MediaError, measureStaging, stageMedia, withTimeout } from "./media.js";
import { detailsOf, poll, pollCreation, replyContext, structuredKind } from "./structured.js";
const GIB = 1024 ** 3;

/** Upsert types that carry new incoming messages (`append`: queued while offline). */
export const HANDLED_UPSERT_TYPES = Object.freeze(["notify", "append"]);

/** `audio/ogg; codecs=opus` → `audio/ogg`: the form used for routing decisions. */
export function baseMime(mime) {
  return String(mime ?? "").split(";")[0].trim().toLowerCase();
}

/** Cuts a string to at most `max` code points (what the wire's max_length counts). */
function clip(value, max) {
  const s = String(value ?? "");
  const points = Array.from(s);
  return points.length <= max ? s : points.slice(0, max).join("");
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
  return msg.messageStubType === WAMessageStubType.CIPHERTEXT || !msg.message;
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

function originatingDate(msg, clock) {
  const seconds = untrustedCount(msg.messageTimestamp);
  return seconds ? new Date(seconds * 1000) : clock();
}

/**
 * @typedef {object} HandlerDeps
 * @property {string} stagingDir
 * @property {(message: any) => Promise<any>} download returns the decrypted byte stream
 * @property {(botId: string, message: any) => Promise<any>} [reupload] refreshes expired media URLs
 * @property {(botId: string) => number | undefined} quotaGbFor the bot's media_storage_quota_gb
 * @property {(frame: any, chatKey: string) => Promise<void>} frameSink durable hand-off (the outbox)
 * @property {() => Date} [clock]
 * @property {any} logger
 * @property {(dir: string) => Promise<number>} [sizeOf] staging size measurement
 * @property {number} [quotaTimeoutMs]
 * @property {number} [maxMediaBytes]
 * @property {number} [downloadTimeoutMs]
 * @property {number} [reuploadTimeoutMs]
 * @property {number} [seenLimit] how many message ids to remember per handler
 * @property {(botId: string, groupJid: string) => Promise<string | undefined>} [groupNameOf]
 * @property {import("./poll_store.js").PollStore} [polls] poll creations, for decrypting votes
 * @property {(botId: string) => string | undefined} [meIdOf] the bot's own normalised JID
 */

/** @param {HandlerDeps} deps */
export function createMessageHandler({
  stagingDir,
  download,
  reupload,
  quotaGbFor,
  frameSink,
  clock = () => new Date(),
  logger,
  sizeOf,
  quotaTimeoutMs = 2000,
  maxMediaBytes = 100 * 1024 * 1024,
  downloadTimeoutMs = 120_000,
  reuploadTimeoutMs = 30_000,
  seenLimit = 10_000,
  groupNameOf,
  polls,
  meIdOf = () => undefined,
}) {
  // Ids already handled, so a message repeated across `notify` and `append` is not
  // downloaded twice. Insertion-ordered Map used as a bounded LRU.
  const seen = new Map();
  const remember = (key) => {
    seen.set(key, true);
    if (seen.size > seenLimit) seen.delete(seen.keys().next().value);
  };

  async function groupName(botId, jid, log) {
    if (!groupNameOf) return undefined;
    try {
      const name = await withTimeout(Promise.resolve().then(() => groupNameOf(botId, jid)), 2000, "group name lookup");
      return name ? clip(name, 256) : undefined;
    } catch (err) {
      log.debug({ err }, "group name unavailable");
      return undefined;
    }
  }

  async function header(botId, msg, log) {
    const remoteJid = String(msg.key.remoteJid);
    const isGroup = remoteJid.endsWith("@g.us");
    const sender = isGroup ? msg.key.participant || msg.key.participantAlt || msg.participant || remoteJid : remoteJid;
    return {
      botId,
      correspondentId: remoteJid,
      sender: String(sender),
      providerMessageId: String(msg.key.id),
      originatingTime: timestampFromDate(originatingDate(msg, clock)),
      group: isGroup ? { groupId: remoteJid, groupName: await groupName(botId, remoteJid, log) } : undefined,
    };
  }

  async function emit(payloadCase, value, chatKey) {
    const frame = buildNodeFrame({ payload: { case: payloadCase, value } });
    await frameSink(frame, chatKey);
    return frame;
  }

  /** Keeps a poll's creation message so that votes on it can be decrypted later. */
  async function rememberPoll(botId, msg, content, log) {
    const p = pollCreation(content);
    if (!p || !polls) return;
    const encKey = content.messageContextInfo?.messageSecret ?? msg.message?.messageContextInfo?.messageSecret;
    if (!encKey || encKey.length === 0) {
      log.warn("poll without messageSecret: its votes cannot be decrypted");
      return;
    }
    const bounded = poll(p);
    try {
      await polls.put(botId, String(msg.key.remoteJid), String(msg.key.id), {
        creatorJid: getKeyAuthor(msg.key, meIdOf(botId)),
        encKey,
        question: bounded.question,
        options: bounded.options.map((o) => o.name),
        selectableCount: bounded.selectableCount,
      });
    } catch (err) {
      // The poll itself is still forwarded; only its votes will read as unknown.
      log.error({ err }, "could not store poll creation message");
    }
  }

  async function handleStructured(botId, msg, content, info, hdr, replyTo, chatKey, log) {
    const details = await detailsOf(info.contentType, content, {
      botId,
      chatJid: String(msg.key.remoteJid),
      key: msg.key,
      meId: meIdOf(botId),
      polls,
      log,
    });
    if (details.case === "poll") await rememberPoll(botId, msg, content, log);
    if (details.case === "unsupported") log.info({ content_type: details.value.messageType }, "unsupported message type forwarded as a marker");
    return emit("structuredMessage", { header: hdr, details: { kind: details }, replyTo }, chatKey);
  }

  async function handleMedia(botId, msg, info, hdr, replyTo, chatKey, log) {
    const base = {
      header: hdr,
      replyTo,
      message: info.caption,
      mimeType: clip(info.mimeType, 255),
      mediaKind: info.kind,
      originalFilename: info.fileName === undefined ? undefined : clip(info.fileName, 1024),
    };
    const quotaGb = quotaGbFor(botId);
    if (quotaGb !== undefined) {
      const quotaBytes = Math.floor(quotaGb * GIB);
      const used = await measureStaging({ stagingDir, sizeOf, timeoutMs: quotaTimeoutMs, logger: log });
      if (used !== undefined && used >= quotaBytes) {
        log.warn({ used_bytes: used, quota_bytes: quotaBytes }, "staging quota exceeded; media not downloaded");
        return emit("quotaExceededMediaMessage", {
          ...base,
          usedBytes: BigInt(used),
          quotaBytes: BigInt(quotaBytes),
        }, chatKey);
      }
    }
    try {
      const staged = await stageMedia({
        message: msg,
        stagingDir,
        download,
        reupload: reupload ? (m) => reupload(botId, m) : undefined,
        fileSha256: info.media?.fileSha256,
        maxBytes: maxMediaBytes,
        downloadTimeoutMs,
        reuploadTimeoutMs,
        logger: log,
      });
      log.info(
        { media_processing_id: staged.mediaProcessingId, size: staged.size, mime: baseMime(info.mimeType),
          declared_size: untrustedCount(info.media?.fileLength) },
        "media staged",
      );
      return emit("mediaMessage", {
        ...base,
        mimeType: base.mimeType || "application/octet-stream",
        mediaProcessingId: staged.mediaProcessingId,
        fileSize: BigInt(staged.size),
      }, chatKey);
    } catch (err) {
      if (!(err instanceof MediaError)) throw err;
      log.warn({ reason: err.reason, mime: baseMime(info.mimeType) }, "media unusable; sending corrupt-media frame");
      return emit("corruptMediaMessage", { ...base, reason: clip(err.reason, 1024) }, chatKey);
    }
  }

  /**
   * Handles one message; resolves once its frame (if any) is in the sink. Returns the
   * frame, or undefined when nothing is forwarded.
   */
  async function handleMessage(botId, msg) {
    const key = msg?.key;
    if (!key?.remoteJid || !key.id) {
      logger.warn({ bot_id: botId }, "message without key ignored");
      return undefined;
    }
    const log = logger.child({ bot_id: botId, correspondent_id: key.remoteJid, provider_message_id: key.id });
    if (key.remoteJid === "status@broadcast") return undefined;
    if (key.fromMe) {
      // The bot's own messages are not forwarded, but a poll it created is kept: the
      // votes on it arrive later and can only be decrypted with it.
      if (!isDecryptionStub(msg)) await rememberPoll(botId, msg, unwrap(msg.message) ?? {}, log);
      return undefined;
    }
    if (isDecryptionStub(msg)) {
      // Not marked as seen: the decrypted message may arrive later under the same id.
      log.warn({ stub: msg.messageStubType, params: msg.messageStubParameters }, "undecryptable message not forwarded");
      return undefined;
    }
    const seenKey = `${botId}\u0000${key.remoteJid}\u0000${key.id}`;
    if (seen.has(seenKey)) {
      log.debug("message already handled");
      return undefined;
    }
    const content = unwrap(msg.message);
    const info = classify(content ?? {});
    if (info.type === "ignored") {
      log.debug({ content_type: info.contentType }, "message type not forwarded");
      return undefined;
    }
    if (info.type === "text" && info.text === "") return undefined;
    remember(seenKey);
    const chatKey = `${botId}\u0000${key.remoteJid}`;
    try {
      const hdr = await header(botId, msg, log);
      const contentType = getContentType(content);
      const replyTo = contentType ? replyContext(content[contentType]?.contextInfo) : undefined;
      if (info.type === "text") return await emit("textMessage", { header: hdr, message: info.text, replyTo }, chatKey);
      if (info.type === "structured") return await handleStructured(botId, msg, content, info, hdr, replyTo, chatKey, log);
      return await handleMedia(botId, msg, info, hdr, replyTo, chatKey, log);
    } catch (err) {
      // Nothing reached the sink: let a redelivery of this id try again.
      seen.delete(seenKey);
      throw err;
    }
  }

  /**
   * Handles a whole `messages.upsert` batch. Text frames enter the sink in arrival
   * order at once; media downloads run alongside and do not hold later texts back.
   */
  const inFlight = new Set();

  /** Resolves when every message being handled now is done (for graceful shutdown). */
  async function idle() {
    while (inFlight.size > 0) await Promise.allSettled([...inFlight]);
  }

  async function handleUpsert(botId, event) {
    if (!HANDLED_UPSERT_TYPES.includes(event?.type)) return [];
    const work = handleBatch(botId, event);
    inFlight.add(work);
    try {
      return await work;
    } finally {
      inFlight.delete(work);
    }
  }

  /** Per chat: the last text or structured message being handled, to queue behind. */
  const chatTails = new Map();

  async function handleBatch(botId, event) {
    const pending = [];
    for (const msg of event.messages ?? []) {
      const content = msg?.message && !isDecryptionStub(msg) ? unwrap(msg.message) : undefined;
      // Text and structured messages enter the sink in arrival order per chat, across
      // upserts too (Baileys emits each as its own event, and handling one can wait on
      // the poll store or a group lookup): a vote must find the poll stored before it.
      // Only media waits, for its download.
      const isText = content !== undefined && classify(content).type !== "media";
      const handle = () => handleMessage(botId, msg).catch((err) => {
        logger.error({ err, bot_id: botId, provider_message_id: msg?.key?.id }, "message handling failed");
        return undefined;
      });
      if (isText) {
        const chat = `${botId}\u0000${msg?.key?.remoteJid}`;
        const done = (chatTails.get(chat) ?? Promise.resolve()).then(handle);
        chatTails.set(chat, done);
        done.finally(() => {
          if (chatTails.get(chat) === done) chatTails.delete(chat);
        });
        await done;
        pending.push(done);
      } else {
        pending.push(handle());
      }
    }
    return (await Promise.all(pending)).filter(Boolean);
  }

  /**
   * Handles a `messages.reaction` event. Baileys also delivers each reaction inside
   * `messages.upsert`; both carry the reaction message's own key, so whichever comes
   * second is dropped as already handled.
   */
  async function handleReactions(botId, reactions) {
    const frames = [];
    for (const item of Array.isArray(reactions) ? reactions : []) {
      const key = item?.reaction?.key;
      if (!key?.id || !key.remoteJid) continue;
      const ms = untrustedCount(item.reaction.senderTimestampMs);
      const msg = {
        key,
        messageTimestamp: ms === undefined ? undefined : Math.floor(ms / 1000),
        message: { reactionMessage: { key: item.key, text: item.reaction.text ?? "" } },
      };
      try {
        const frame = await handleMessage(botId, msg);
        if (frame) frames.push(frame);
      } catch (err) {
        logger.error({ err, bot_id: botId, provider_message_id: key.id }, "reaction handling failed");
      }
    }
    return frames;
  }

  return { handleUpsert, handleMessage, handleReactions, idle };
}
