// WhatsApp message types that are neither text nor media, turned into the structured
// `chatbot.common.v1.MessageDetails` of a StructuredMessage frame. Everything here comes
// from the sender: every string is clipped to the bound the wire declares, lists are cut
// to their max_items (the rest counted), coordinates are checked, vCards are read only up
// to a size, and nothing the sender controls can make this throw.

import { getAggregateVotesInPollMessage, decryptPollVote, getKeyAuthor, normalizeMessageContent, proto } from "baileys";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { InteractiveReplyKind } from "./gen/chatbot/common/v1/details_pb.js";
import { BUSINESS_TYPES, COMMERCE_TYPES, businessDetails } from "./business.js";
import { bytes, decryptSecretEdit, isSecretEdit } from "./edits.js";
import { clip, sanitizeTypeName } from "./text.js";

export { clip, sanitizeTypeName };

const PROTOCOL = proto.Message.ProtocolMessage.Type;

export const LIMITS = Object.freeze({
  maxContacts: 10,
  maxPhones: 5,
  maxVcardChars: 16 * 1024,
  maxVcardLines: 500,
  maxPollOptions: 12,
  snippetChars: 200,
});

/** Every content type that creates a poll (V4 is a wrapper around one of the others). */
export const POLL_CREATION_TYPES = Object.freeze([
  "pollCreationMessage",
  "pollCreationMessageV2",
  "pollCreationMessageV3",
  "pollCreationMessageV4",
  "pollCreationMessageV5",
]);

const STRUCTURED_TYPES = new Set([
  "locationMessage",
  "liveLocationMessage",
  "contactMessage",
  "contactsArrayMessage",
  ...POLL_CREATION_TYPES,
  "pollUpdateMessage",
  "reactionMessage",
  "eventMessage",
  "buttonsResponseMessage",
  "listResponseMessage",
  "templateButtonReplyMessage",
  "interactiveResponseMessage",
  "groupInviteMessage",
  "secretEncryptedMessage",
  ...BUSINESS_TYPES,
  ...COMMERCE_TYPES,
]);

/** Types that are WhatsApp housekeeping rather than something a person sent. */
const HOUSEKEEPING_TYPES = new Set(["senderKeyDistributionMessage", "messageContextInfo"]);
/** Protocol messages a bot is told about; every other one is housekeeping (counted). */
const FORWARDED_PROTOCOL = new Set([PROTOCOL.MESSAGE_EDIT, PROTOCOL.REVOKE, PROTOCOL.EPHEMERAL_SETTING]);

function str(value) {
  return typeof value === "string" ? value : "";
}

function optional(value, max) {
  const s = clip(value, max);
  return s === "" ? undefined : s;
}

function seconds(value) {
  let n;
  if (typeof value === "number") n = value;
  else if (typeof value === "bigint") n = Number(value);
  else if (value && typeof value === "object" && typeof value.low === "number") {
    if (typeof value.toNumber === "function") n = value.toNumber();
    else n = (value.high >>> 0) * 2 ** 32 + (value.low >>> 0);
  }
  // Positive and before year 10000 (the largest Timestamp proto3 JSON can write).
  return Number.isSafeInteger(n) && n > 0 && n < 253_402_300_800 ? n : undefined;
}

function timestamp(value) {
  const s = seconds(value);
  return s === undefined ? undefined : timestampFromDate(new Date(s * 1000));
}


export function location(m, live) {
  const lat = m?.degreesLatitude;
  const lon = m?.degreesLongitude;
  const valid =
    typeof lat === "number" && typeof lon === "number" && Number.isFinite(lat) && Number.isFinite(lon) &&
    lat >= -90 && lat <= 90 && lon >= -180 && lon <= 180;
  return {
    // Non-finite values would not survive JSON; the flag says what happened.
    latitude: typeof lat === "number" && Number.isFinite(lat) ? lat : 0,
    longitude: typeof lon === "number" && Number.isFinite(lon) ? lon : 0,
    coordinatesValid: valid,
    name: optional(m?.name, 256),
    address: optional(m?.address, 512),
    live,
    comment: optional(live ? m?.caption : m?.comment, 1024),
  };
}

function vcardValue(value) {
  return value.replace(/\\([,;:nN\\])/g, (_, c) => (c === "n" || c === "N" ? " " : c));
}

/**
 * The name and phone numbers of one vCard, read defensively: at most `maxVcardChars`
 * characters and `maxVcardLines` lines, at most `maxPhones` numbers (the rest counted).
 */
export function parseVcard(vcard, displayName) {
  const raw = str(vcard);
  let truncated = raw.length > LIMITS.maxVcardChars;
  const text = (truncated ? raw.slice(0, LIMITS.maxVcardChars) : raw).replace(/\r?\n[ \t]/g, "");
  const lines = text.split(/\r?\n/);
  if (lines.length > LIMITS.maxVcardLines) truncated = true;
  let name = "";
  const phones = [];
  let omitted = 0;
  for (const line of lines.slice(0, LIMITS.maxVcardLines)) {
    const colon = line.indexOf(":");
    if (colon <= 0) continue;
    const [property, ...params] = line.slice(0, colon).split(";");
    const key = property.replace(/^[^.]*\./, "").toUpperCase();
    const value = vcardValue(line.slice(colon + 1)).trim();
    if (key === "FN" && !name) name = value;
    if (key !== "TEL" || !value) continue;
    if (phones.length >= LIMITS.maxPhones) {
      omitted += 1;
      continue;
    }
    const waid = params.map((p) => /^waid=(.+)$/i.exec(p.trim())?.[1]).find(Boolean);
    phones.push({ number: clip(value, 64), waId: optional(waid, 64) });
  }
  return {
    displayName: clip(str(displayName).trim() || name, 256),
    phoneNumbers: phones,
    omittedPhoneCount: omitted,
    vcardTruncated: truncated,
  };
}

function contacts(list) {
  const cards = Array.isArray(list) ? list : [];
  return {
    contacts: cards.slice(0, LIMITS.maxContacts).map((c) => parseVcard(c?.vcard, c?.displayName)),
    omittedContactCount: Math.max(0, cards.length - LIMITS.maxContacts),
  };
}

/** The poll inside any poll creation type, or undefined. */
export function pollCreation(content) {
  for (const type of POLL_CREATION_TYPES) {
    const value = content?.[type];
    if (!value) continue;
    if (type === "pollCreationMessageV4") {
      // A future-proof wrapper: the poll is one of the other versions inside it.
      const inner = normalizeMessageContent(value.message);
      return POLL_CREATION_TYPES.filter((t) => t !== type).map((t) => inner?.[t]).find(Boolean);
    }
    return value;
  }
  return undefined;
}

/** The bounded poll a frame carries (and the poll store keeps). */
export function poll(p) {
  const options = Array.isArray(p?.options) ? p.options : [];
  return {
    question: clip(p?.name, 1024),
    options: options.slice(0, LIMITS.maxPollOptions).map((o) => ({ name: clip(o?.optionName, 256) })),
    omittedOptionCount: Math.max(0, options.length - LIMITS.maxPollOptions),
    selectableCount: Math.min(seconds(p?.selectableOptionsCount) ?? 0, 0xffffffff),
  };
}

/**
 * Decrypts a vote with Baileys against the stored poll and names the chosen options.
 * Unknown poll or undecryptable vote: `decrypted: false`, never an exception.
 */
export async function pollVote(update, voteKey, { botId, chatJid, meId, polls, log }) {
  const pollId = clip(update?.pollCreationMessageKey?.id, 256);
  const unknown = { pollMessageId: pollId || "unknown", decrypted: false, pollQuestion: "", selectedOptions: [] };
  if (!pollId || !polls) return unknown;
  const stored = await polls.get(botId, chatJid, pollId);
  if (!stored) {
    log.warn({ poll_id: pollId }, "vote on a poll whose creation message is unknown");
    return unknown;
  }
  try {
    const sealed = { encPayload: bytes(update.vote?.encPayload), encIv: bytes(update.vote?.encIv) };
    const vote = decryptPollVote(sealed, {
      pollCreatorJid: stored.creatorJid,
      pollMsgId: pollId,
      pollEncKey: stored.encKey,
      voterJid: getKeyAuthor(voteKey, meId),
    });
    const tally = getAggregateVotesInPollMessage(
      {
        message: { pollCreationMessage: { name: stored.question, options: stored.options.map((n) => ({ optionName: n })) } },
        pollUpdates: [{ pollUpdateMessageKey: voteKey, vote }],
      },
      meId,
    );
    const chosen = tally.filter((o) => o.voters.length > 0).map((o) => ({ name: clip(o.name, 256) }));
    return {
      pollMessageId: pollId,
      decrypted: true,
      pollQuestion: clip(stored.question, 1024),
      selectedOptions: chosen.slice(0, LIMITS.maxPollOptions),
    };
  } catch (err) {
    log.warn({ err, poll_id: pollId }, "poll vote could not be decrypted");
    return unknown;
  }
}

function interactiveId(paramsJson) {
  const text = str(paramsJson);
  if (text.length === 0 || text.length > 4096) return "";
  try {
    const parsed = JSON.parse(text);
    return typeof parsed?.id === "string" ? parsed.id : "";
  } catch {
    return "";
  }
}

/** The text of a (quoted or edited) message, for snippets and edits. */
export function textOf(content) {
  const c = normalizeMessageContent(content);
  if (!c) return "";
  if (typeof c.conversation === "string" && c.conversation) return c.conversation;
  if (c.extendedTextMessage?.text) return str(c.extendedTextMessage.text);
  for (const type of ["imageMessage", "videoMessage", "documentMessage", "ptvMessage"]) {
    if (c[type]?.caption) return str(c[type].caption);
  }
  const p = pollCreation(c);
  if (p?.name) return str(p.name);
  if (c.locationMessage) return str(c.locationMessage.name) || "location";
  return "";
}

/** The reply context from a message's contextInfo, or undefined when it quotes nothing. */
export function replyContext(contextInfo) {
  const id = str(contextInfo?.stanzaId);
  if (!id) return undefined;
  const full = textOf(contextInfo.quotedMessage);
  const snippet = clip(full, LIMITS.snippetChars);
  return {
    quotedMessageId: clip(id, 256),
    quotedSender: optional(contextInfo.participant, 256),
    snippet,
    snippetTruncated: snippet.length < full.length,
  };
}

/**
 * How a content type is handled: "structured" (a StructuredMessage), "housekeeping"
 * (not forwarded), or undefined (not ours: text, media, or an unsupported type).
 */
export function structuredKind(contentType, content) {
  if (STRUCTURED_TYPES.has(contentType)) return "structured";
  if (contentType === "protocolMessage") {
    return FORWARDED_PROTOCOL.has(protocolType(content.protocolMessage)) ? "structured" : "housekeeping";
  }
  if (contentType === undefined || HOUSEKEEPING_TYPES.has(contentType)) return "housekeeping";
  return undefined;
}

/** A protocol message's type as a number (JSON payloads may spell it by name). */
export function protocolType(p) {
  const type = p?.type;
  return typeof type === "string" ? PROTOCOL[type] : (type ?? PROTOCOL.REVOKE);
}

/** The name of a protocol message's type, for drop reasons and logs. */
export function protocolTypeName(p) {
  return PROTOCOL[protocolType(p)] ?? "UNKNOWN";
}

/** The largest text a bot can be sent (Edit.text's bound). */
export const MAX_TEXT = 65536;

function protocolDetails(p) {
  const type = protocolType(p);
  if (type === PROTOCOL.EPHEMERAL_SETTING) {
    return { case: "disappearingTimer", value: { expirationSeconds: Math.min(seconds(p.ephemeralExpiration) ?? 0, 0xffffffff) } };
  }
  const target = clip(p.key?.id, 256);
  if (!target) return { case: "unsupported", value: { messageType: "protocolMessage" } };
  if (type === PROTOCOL.REVOKE) return { case: "deletion", value: { targetMessageId: target } };
  return { case: "edit", value: { targetMessageId: target, text: clip(textOf(p.editedMessage), MAX_TEXT), decrypted: true } };
}

/** A sealed edit: opened with the original's messageSecret when known, else a marker. */
function secretEditDetails(m, ctx) {
  if (!isSecretEdit(m)) return { case: "unsupported", value: { messageType: "secretEncryptedMessage" } };
  const target = clip(m.targetMessageKey?.id, 256);
  if (!target) return { case: "unsupported", value: { messageType: "secretEncryptedMessage" } };
  const secret = ctx.secrets?.get(ctx.botId, target);
  const opened = secret ? decryptSecretEdit(m, secret, ctx.senderIds ?? []) : undefined;
  if (!opened) {
    ctx.log.info({ target, secret_known: Boolean(secret) }, "encrypted edit could not be opened; forwarded as an edit marker");
    return { case: "edit", value: { targetMessageId: target, text: "", decrypted: false } };
  }
  const inner = normalizeMessageContent(opened);
  const edited = inner?.protocolMessage?.editedMessage ?? inner;
  return { case: "edit", value: { targetMessageId: target, text: clip(textOf(edited), MAX_TEXT), decrypted: true } };
}

/**
 * The MessageDetails `kind` of a structured message (see structuredKind), or an
 * Unsupported marker for any type this system does not understand.
 * @param {string | undefined} contentType
 * @param {any} content the unwrapped message content
 * @param {{ botId: string, chatJid: string, key: any, meId?: string, polls?: any, log: any,
 *   secrets?: import("./edits.js").MessageSecrets, senderIds?: string[] }} ctx
 */
export async function detailsOf(contentType, content, ctx) {
  const m = content[contentType];
  switch (contentType) {
    case "locationMessage":
      return { case: "location", value: location(m, false) };
    case "liveLocationMessage":
      return { case: "location", value: location(m, true) };
    case "contactMessage":
      return { case: "contacts", value: contacts([m]) };
    case "contactsArrayMessage":
      return { case: "contacts", value: contacts(m?.contacts) };
    case "pollUpdateMessage":
      return { case: "pollVote", value: await pollVote(m, ctx.key, ctx) };
    case "reactionMessage": {
      const emoji = clip(m?.text, 32);
      return { case: "reaction", value: { targetMessageId: clip(m?.key?.id, 256), emoji, removed: emoji === "" } };
    }
    case "eventMessage":
      return {
        case: "event",
        value: {
          name: clip(m?.name, 1024),
          description: optional(m?.description, 2048),
          startTime: timestamp(m?.startTime),
          endTime: timestamp(m?.endTime),
          location: m?.location ? location(m.location, false) : undefined,
          canceled: Boolean(m?.isCanceled),
        },
      };
    case "buttonsResponseMessage":
      return {
        case: "interactiveReply",
        value: { kind: InteractiveReplyKind.BUTTON, selectedId: clip(m?.selectedButtonId, 256), selectedTitle: clip(m?.selectedDisplayText, 1024) },
      };
    case "listResponseMessage":
      return {
        case: "interactiveReply",
        value: { kind: InteractiveReplyKind.LIST, selectedId: clip(m?.singleSelectReply?.selectedRowId, 256), selectedTitle: clip(m?.title, 1024) },
      };
    case "templateButtonReplyMessage":
      return {
        case: "interactiveReply",
        value: { kind: InteractiveReplyKind.TEMPLATE_BUTTON, selectedId: clip(m?.selectedId, 256), selectedTitle: clip(m?.selectedDisplayText, 1024) },
      };
    case "interactiveResponseMessage":
      return {
        case: "interactiveReply",
        value: {
          kind: InteractiveReplyKind.INTERACTIVE,
          selectedId: clip(interactiveId(m?.nativeFlowResponseMessage?.paramsJson) || m?.nativeFlowResponseMessage?.name, 256),
          selectedTitle: clip(m?.body?.text, 1024),
        },
      };
    case "groupInviteMessage":
      return {
        case: "groupInvite",
        value: {
          groupId: clip(m?.groupJid, 256),
          groupName: clip(m?.groupName, 256),
          inviteCode: clip(m?.inviteCode, 256),
          caption: optional(m?.caption, 1024),
          expiresAt: timestamp(m?.inviteExpiration),
        },
      };
    case "protocolMessage":
      return protocolDetails(m);
    case "secretEncryptedMessage":
      return secretEditDetails(m, ctx);
    default: {
      const business = businessDetails(contentType, m);
      if (business) return business;
      const p = POLL_CREATION_TYPES.includes(contentType) ? pollCreation(content) : undefined;
      if (p) return { case: "poll", value: poll(p) };
      return { case: "unsupported", value: { messageType: sanitizeTypeName(contentType) } };
    }
  }
}
