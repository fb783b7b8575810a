// Who wrote a message and how it was addressed: the header's correspondent and sender
// (LID when known, else phone JID) and the MessageContext beside them (phone numbers,
// chat kind, owner, mentions, view-once, forwarded, album, ad reply, disappearing timer,
// push name). Everything here comes from the key and contextInfo the sender controls:
// bounded and sanitized like any text.

import { ChatKind, IdKind } from "./gen/chatbot/common/v1/context_pb.js";
import { bareJid, jidKind, phoneOf } from "./identity.js";
import { clip, sanitizeTypeName } from "./text.js";

const MAX_MENTIONS = 32;
const VIEW_ONCE_WRAPPERS = ["viewOnceMessage", "viewOnceMessageV2", "viewOnceMessageV2Extension"];
const MEDIA_ALBUM = 1;

/** What kind of chat a remote JID is. */
export function chatKindOf(remoteJid) {
  switch (jidKind(bareJid(remoteJid) || remoteJid)) {
    case IdKind.GROUP:
      return ChatKind.GROUP;
    case IdKind.NEWSLETTER:
      return ChatKind.NEWSLETTER;
    case IdKind.BROADCAST:
      return ChatKind.STATUS;
    default:
      return ChatKind.DIRECT;
  }
}

function optional(value, max) {
  const s = clip(value, max);
  return s === "" ? undefined : s;
}

function uint32(value) {
  const n = typeof value === "number" ? value : Number(value?.low ?? value);
  return Number.isSafeInteger(n) && n > 0 ? Math.min(n, 0xffffffff) : 0;
}

/** True when the raw message (before unwrapping) was sent as view-once. */
export function isViewOnce(msg, content, contentType) {
  let m = msg.message;
  for (let i = 0; i < 3 && m; i += 1) {
    if (VIEW_ONCE_WRAPPERS.some((w) => m[w])) return true;
    m = m.ephemeralMessage?.message ?? m.documentWithCaptionMessage?.message;
  }
  return Boolean(msg.key?.isViewOnce || (contentType && content?.[contentType]?.viewOnce));
}

/** The click-to-WhatsApp ad a message answers, typed and bounded; undefined when none. */
export function adReplyOf(contextInfo) {
  const ad = contextInfo?.externalAdReply;
  if (!ad || typeof ad !== "object") return undefined;
  const mediaType = typeof ad.mediaType === "number" ? ["NONE", "IMAGE", "VIDEO"][ad.mediaType] ?? String(ad.mediaType) : ad.mediaType;
  const value = {
    title: clip(ad.title, 1024),
    body: clip(ad.body, 2048),
    sourceType: typeof ad.sourceType === "string" && ad.sourceType ? sanitizeTypeName(ad.sourceType) : "",
    sourceId: clip(ad.sourceId, 256),
    sourceUrl: clip(ad.sourceUrl, 2048),
    clickId: clip(ad.ctwaClid, 512),
    mediaType: typeof mediaType === "string" && mediaType ? sanitizeTypeName(mediaType).slice(0, 32) : "",
  };
  return Object.values(value).some(Boolean) ? value : undefined;
}

/** The line a text-only bot reads about the ad (appended to the message's text). */
export function adReplyLine(ad) {
  const what = [ad.title, ad.sourceUrl].filter(Boolean).join(" ");
  return clip(`[Reply to an ad${what ? `: ${what.replace(/\s+/g, " ")}` : ""}]`, 300);
}

/**
 * Builds the identity fields of a header and its MessageContext.
 * @param {{ resolve: (botId: string, jid: string, ...alts: string[]) => Promise<any> }} identities
 * @param {(botId: string) => { id?: string, lid?: string }} ownIdsOf the bot's own JIDs
 */
export function createContextBuilder({ identities, ownIdsOf }) {
  function botIds(botId) {
    const own = ownIdsOf(botId) ?? {};
    return new Set([own.id, own.lid].map(bareJid).filter(Boolean));
  }

  function isBot(botId, who) {
    const ids = botIds(botId);
    return ids.has(who.id) || (who.phone !== undefined && ids.has(`${who.phone}@s.whatsapp.net`));
  }

  async function mentions(botId, contextInfo) {
    const list = Array.isArray(contextInfo?.mentionedJid) ? contextInfo.mentionedJid : [];
    const out = [];
    let omitted = 0;
    const seen = new Set();
    for (const jid of list) {
      if (typeof jid !== "string") continue;
      const who = await identities.resolve(botId, jid);
      if (!who.id || seen.has(who.id)) continue;
      seen.add(who.id);
      if (out.length >= MAX_MENTIONS) {
        omitted += 1;
        continue;
      }
      out.push({ jid: clip(who.id, 256), phone: who.phone, isBot: isBot(botId, who) });
    }
    return { mentions: out, omitted };
  }

  /**
   * @param {string} botId
   * @param {any} msg the WAMessage
   * @param {{ content?: any, contentType?: string, fromOwner: boolean, albums?: Map<string, any> }} envelope
   * @returns {Promise<{ correspondentId: string, sender: string, context: any }>}
   */
  async function build(botId, msg, { content, contentType, fromOwner, albums }) {
    const key = msg.key;
    const remoteJid = String(key.remoteJid);
    const chatKind = chatKindOf(remoteJid);
    const own = ownIdsOf(botId) ?? {};
    // Before the socket knows the account's own JIDs, the bot id names the owner.
    const ownSender = async () => (own.lid || own.id ? identities.resolve(botId, own.lid || own.id, own.id || "") : { id: botId, kind: jidKind(botId) });
    let correspondent = { id: bareJid(remoteJid) || remoteJid, kind: jidKind(remoteJid) };
    let sender;
    if (chatKind === ChatKind.DIRECT) {
      correspondent = await identities.resolve(botId, remoteJid, key.remoteJidAlt, key.senderPn, key.senderLid);
      sender = key.fromMe ? await ownSender() : correspondent;
    } else if (chatKind === ChatKind.NEWSLETTER) {
      sender = correspondent;
    } else {
      const participant = key.participant || msg.participant || "";
      sender = key.fromMe
        ? await ownSender()
        : await identities.resolve(botId, participant, key.participantAlt, key.participantPn, key.participantLid);
      if (!sender.id) sender = correspondent;
    }
    if (!sender.id) sender = correspondent;
    // Evolution API stores a message with its contextInfo lifted to the record's root.
    const rootContext = msg.contextInfo && typeof msg.contextInfo === "object" ? msg.contextInfo : undefined;
    const contextInfo = (contentType ? content?.[contentType]?.contextInfo : undefined) ?? rootContext;
    const { mentions: mentioned, omitted } = await mentions(botId, contextInfo);
    let repliesToBot = false;
    if (typeof contextInfo?.participant === "string" && contextInfo.stanzaId) {
      repliesToBot = isBot(botId, await identities.resolve(botId, contextInfo.participant));
    }
    const association = content?.messageContextInfo?.messageAssociation ?? msg.message?.messageContextInfo?.messageAssociation;
    const albumId = association && (association.associationType === MEDIA_ALBUM || association.associationType === "MEDIA_ALBUM")
      ? clip(association.parentMessageKey?.id, 256)
      : "";
    const announced = albumId ? albums?.get(`${botId}\u0000${albumId}`) : undefined;
    const context = {
      correspondentIdKind: correspondent.kind ?? jidKind(correspondent.id),
      correspondentPhone: chatKind === ChatKind.DIRECT ? correspondent.phone : undefined,
      senderIdKind: sender.kind ?? jidKind(sender.id),
      senderPhone: sender.phone,
      chatKind,
      fromOwner,
      viewOnce: isViewOnce(msg, content, contentType),
      forwarded: Boolean(contextInfo?.isForwarded) || uint32(contextInfo?.forwardingScore) > 0,
      mentions: mentioned,
      omittedMentionCount: omitted,
      mentionsBot: mentioned.some((m) => m.isBot),
      repliesToBot,
      adReply: adReplyOf(contextInfo),
      album: albumId
        ? { albumMessageId: albumId, expectedImageCount: uint32(announced?.expectedImageCount), expectedVideoCount: uint32(announced?.expectedVideoCount) }
        : undefined,
      expirationSeconds: uint32(contextInfo?.expiration),
      senderName: key.fromMe ? undefined : optional(msg.pushName, 256),
    };
    return { correspondentId: clip(correspondent.id, 256), sender: clip(sender.id, 256), context };
  }

  return { build, isBot, botIds };
}
