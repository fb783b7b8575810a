// DEMO ONLY. A scripted stand-in for the socket Baileys' makeWASocket returns, so the
// whole pipeline can run on one machine without WhatsApp. Selected by NODE_DEMO_SCRIPT
// in index.js's main(); nothing else in src/ imports this file. Only the socket and the
// media download are replaced: sessions, the message handler (with Baileys' own
// normalisation), staging, the outbox and the gateway link run as in production.
//
// The socket exposes the surface the server uses: `ev` ('connection.update',
// 'creds.update', 'messages.upsert'), sendMessage, updateMediaMessage, groupMetadata,
// logout, end, ws.close and user. Messages are built as proto.WebMessageInfo objects,
// as Baileys decodes them (Long timestamps and lengths, Uint8Array hashes, wrappers).
// Entries that refer to another message (reply, edit, delete, reaction, poll vote) name
// it by label: ids are random per replay, so only the replay knows the key to point at,
// and a vote must be encrypted with the secret of the poll it was injected with.

import { createHash, randomBytes } from "node:crypto";
import { createReadStream } from "node:fs";
import { readFile, stat } from "node:fs/promises";
import { EventEmitter } from "node:events";
import { dirname, isAbsolute, resolve } from "node:path";
import { proto } from "baileys";
import { encryptPollVote } from "./poll_crypto.js";
import { encryptSecretEdit } from "./edits.js";
import { USER_ID } from "./sessions.js";

export class DemoScriptError extends Error {
  constructor(message) {
    super(message);
    this.name = "DemoScriptError";
  }
}

const DEFAULT_FROM = "4915100000001@s.whatsapp.net";
const DEFAULT_DELAY_MS = 200;
const PERSON_JID = /^[0-9A-Za-z._:-]{1,64}@(s\.whatsapp\.net|lid|c\.us)$/;
const GROUP_JID = /^[0-9-]{1,64}@g\.us$/;

/** Media entry types → WhatsApp message layout and the MIME type used when none is given. */
const MEDIA_TYPES = Object.freeze({
  image: { mimetype: "image/jpeg", caption: true },
  view_once_image: { mimetype: "image/jpeg", caption: true },
  video: { mimetype: "video/mp4", caption: true, seconds: true },
  view_once_video: { mimetype: "video/mp4", caption: true, seconds: true },
  gif: { mimetype: "video/mp4", caption: true, seconds: true },
  video_note: { mimetype: "video/mp4", seconds: true },
  voice_note: { mimetype: "audio/ogg; codecs=opus", seconds: true },
  audio: { mimetype: "audio/mpeg", seconds: true },
  sticker: { mimetype: "image/webp", animated: true },
  document: { mimetype: "application/octet-stream", caption: true, filename: true },
});
const TEXT_TYPES = new Set(["text", "extended_text", "ephemeral_text"]);
/** Entry types that are neither text nor media → their own keys (beyond COMMON_KEYS). */
const STRUCTURED_TYPES = Object.freeze({
  reaction: ["text", "target"],
  location: ["latitude", "longitude", "name", "address", "live"],
  contact: ["name", "phone"],
  poll: ["question", "options"],
  poll_vote: ["poll", "options"],
  reply: ["text", "reply_to"],
  edit: ["target", "text"],
  // An edit as newer clients send it: sealed in a secretEncryptedMessage under the
  // original message's messageSecret.
  secret_edit: ["target", "text"],
  delete: ["target"],
});
/** Types whose text an `edit` can replace (WhatsApp edits only text and captions). */
const EDITABLE_TYPES = new Set([...TEXT_TYPES, "reply"]);
// `phone_jid`: the sender's phone JID when `from` is a LID (WhatsApp puts it in
// remoteJidAlt / participantAlt); `from_me`: the account owner typed it on the phone.
const COMMON_KEYS = ["type", "delay_ms", "from", "phone_jid", "from_me", "push_name", "id", "upsert", "group", "group_name", "label"];
const LABEL = /^[A-Za-z0-9_.:-]{1,64}$/;
const PHONE = /^\+?[0-9][0-9 ()./-]{2,39}$/;
const POLL_OPTIONS = { min: 2, max: 12 };
const MEDIA_KEYS = ["file", "mimetype", "download_fails", "url_expired", "hash_mismatch", "declared_length"];

function describeType(value) {
  return value === null ? "null" : Array.isArray(value) ? "an array" : typeof value;
}

function isObject(value) {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * Reads and validates a demo script; every problem is a DemoScriptError that names the
 * script, the entry and what to change. File paths are resolved against the script's
 * directory and must name readable regular files.
 *
 * `pairing` (optional) maps a bot id to how its pairing goes, so pairing through the API
 * can run without WhatsApp: {"rotate_ms": 500, "scan_after_ms": 2000, "by": "qr"|"code"}.
 * The socket then shows a QR code (a new one every rotate_ms, like WhatsApp) until the
 * scan happens scan_after_ms later — for "code", that long after a pairing code was
 * requested — and only then opens. Pairing happens once per bot and Node process.
 *
 * @returns {Promise<{ path: string, bots: Map<string, any[]>, pairing: Map<string, any> }>}
 */
export async function loadDemoScript(path) {
  const where = resolve(path);
  let raw;
  try {
    raw = await readFile(where, "utf8");
  } catch (err) {
    throw new DemoScriptError(`cannot read the demo script ${where}: ${err.code ?? err.message}; set NODE_DEMO_SCRIPT to an existing JSON file`);
  }
  let doc;
  try {
    doc = JSON.parse(raw);
  } catch (err) {
    throw new DemoScriptError(`${where} is not valid JSON: ${err.message}`);
  }
  const fail = (at, message) => {
    throw new DemoScriptError(`${where}: ${at}: ${message}`);
  };
  if (!isObject(doc)) fail("top level", `must be an object like {"bots": {"demo-bot": [ … ]}}, got ${describeType(doc)}`);
  for (const key of Object.keys(doc)) {
    if (!["bots", "default_delay_ms", "comment", "pairing", "injected_events"].includes(key)) {
      fail("top level", `unknown key "${key}"; expected bots, default_delay_ms, pairing, injected_events, comment`);
    }
  }
  const injectedEvents = doc.injected_events ?? true;
  if (typeof injectedEvents !== "boolean") fail("injected_events", "must be true or false");
  const pairing = validatePairing(doc.pairing, fail);
  const defaultDelay = doc.default_delay_ms ?? DEFAULT_DELAY_MS;
  if (!Number.isInteger(defaultDelay) || defaultDelay < 0 || defaultDelay > 600_000) fail("default_delay_ms", "must be a whole number of milliseconds 0..600000");
  if (!isObject(doc.bots) || Object.keys(doc.bots).length === 0) fail("bots", "must be an object with at least one bot id mapped to a list of messages");
  const base = dirname(where);
  const bots = new Map();
  for (const [botId, list] of Object.entries(doc.bots)) {
    const botAt = `bots[${JSON.stringify(botId)}]`;
    if (!USER_ID.test(botId)) fail(botAt, "bot id must be 1-128 characters of letters, digits and @ . _ : + - (the userId sent to POST /initialize)");
    if (!Array.isArray(list)) fail(botAt, `must be a list of message entries, got ${describeType(list)}`);
    const entries = [];
    let from = DEFAULT_FROM;
    /** label → the earlier entry carrying it, for the references of later entries. */
    const labels = new Map();
    for (const [i, item] of list.entries()) {
      const entry = await validateEntry(item, `${botAt}[${i}]`, { base, defaultDelay, from, labels, fail });
      if (entry.from) from = entry.from;
      if (entry.label) labels.set(entry.label, entry);
      entries.push(entry);
    }
    bots.set(botId, entries);
  }
  return { path: where, bots, pairing, injectedEvents };
}

function validatePairing(doc, fail) {
  const pairing = new Map();
  if (doc === undefined) return pairing;
  if (!isObject(doc)) fail("pairing", `must map bot ids to {"rotate_ms", "scan_after_ms", "by"}, got ${describeType(doc)}`);
  for (const [botId, item] of Object.entries(doc)) {
    const at = `pairing[${JSON.stringify(botId)}]`;
    if (!USER_ID.test(botId)) fail(at, "must be a bot id");
    if (!isObject(item)) fail(at, `must be an object, got ${describeType(item)}`);
    for (const key of Object.keys(item)) {
      if (!["rotate_ms", "scan_after_ms", "by"].includes(key)) fail(at, `unknown key "${key}"; expected rotate_ms, scan_after_ms, by`);
    }
    const rotateMs = item.rotate_ms ?? 20_000;
    const scanAfterMs = item.scan_after_ms ?? 2_000;
    const by = item.by ?? "qr";
    if (!Number.isInteger(rotateMs) || rotateMs < 10 || rotateMs > 600_000) fail(`${at}.rotate_ms`, "must be a whole number of milliseconds 10..600000");
    if (!Number.isInteger(scanAfterMs) || scanAfterMs < 0 || scanAfterMs > 3_600_000) fail(`${at}.scan_after_ms`, "must be a whole number of milliseconds 0..3600000");
    if (!["qr", "code"].includes(by)) fail(`${at}.by`, `must be "qr" or "code", got ${JSON.stringify(by)}`);
    pairing.set(botId, { rotateMs, scanAfterMs, by });
  }
  return pairing;
}

/** A QR payload shaped like WhatsApp's (ref, noise key, identity key, adv secret). */
function demoQr() {
  return `2@${randomBytes(24).toString("base64")},${randomBytes(32).toString("base64")},${randomBytes(32).toString("base64")},${randomBytes(32).toString("base64")}`;
}

async function validateEntry(item, at, { base, defaultDelay, from, labels, fail }) {
  if (!isObject(item)) fail(at, `must be an object with a "type", got ${describeType(item)}`);
  const type = item.type;
  const media = MEDIA_TYPES[type];
  let allowed;
  if (TEXT_TYPES.has(type)) allowed = [...COMMON_KEYS, "text"];
  else if (Object.hasOwn(STRUCTURED_TYPES, type)) allowed = [...COMMON_KEYS, ...STRUCTURED_TYPES[type]];
  else if (media) {
    allowed = [...COMMON_KEYS, ...MEDIA_KEYS];
    if (media.caption) allowed.push("caption");
    if (media.seconds) allowed.push("seconds");
    if (media.animated) allowed.push("animated");
    if (media.filename) allowed.push("filename");
  } else if (type === "disconnect") allowed = ["type", "delay_ms", "status_code"];
  else {
    const known = [...TEXT_TYPES, ...Object.keys(STRUCTURED_TYPES), ...Object.keys(MEDIA_TYPES), "disconnect"].join(", ");
    fail(at, `unknown type ${JSON.stringify(type)}; use one of ${known}`);
  }
  for (const key of Object.keys(item)) {
    if (!allowed.includes(key)) fail(at, `key "${key}" is not used by type "${type}"; allowed: ${allowed.join(", ")}`);
  }
  const str = (key, { required = false, pattern, max = 65_536 } = {}) => {
    const value = item[key];
    if (value === undefined) {
      if (required) fail(at, `"${key}" is required for type "${type}"`);
      return undefined;
    }
    if (typeof value !== "string" || value.length === 0 || value.length > max) fail(at, `"${key}" must be a non-empty string of at most ${max} characters`);
    if (pattern && !pattern.test(value)) fail(at, `"${key}" = ${JSON.stringify(value)} is not a valid ${pattern === GROUP_JID ? "group JID (digits@g.us)" : "JID (e.g. 4915100000001@s.whatsapp.net)"}`);
    return value;
  };
  const int = (key, { min = 0, max = Number.MAX_SAFE_INTEGER } = {}) => {
    const value = item[key];
    if (value === undefined) return undefined;
    if (!Number.isInteger(value) || value < min || value > max) fail(at, `"${key}" must be a whole number ${min}..${max}`);
    return value;
  };
  const bool = (key) => {
    const value = item[key];
    if (value !== undefined && typeof value !== "boolean") fail(at, `"${key}" must be true or false`);
    return value === true;
  };
  const entry = { type, at, delayMs: int("delay_ms", { max: 600_000 }) ?? defaultDelay };
  if (type === "disconnect") {
    entry.statusCode = int("status_code", { min: 400, max: 599 }) ?? 428;
    return entry;
  }
  entry.from = str("from", { pattern: PERSON_JID, max: 128 }) ?? from;
  entry.phoneJid = str("phone_jid", { pattern: PERSON_JID, max: 128 });
  if (entry.phoneJid && !entry.from.endsWith("@lid")) fail(at, `"phone_jid" is the phone JID of a sender named by LID; "from" must end in @lid`);
  entry.fromMe = bool("from_me");
  entry.pushName = str("push_name", { max: 256 });
  entry.id = str("id", { max: 128 });
  entry.upsert = item.upsert ?? "notify";
  if (!["notify", "append"].includes(entry.upsert)) fail(at, `"upsert" must be "notify" or "append"`);
  entry.group = str("group", { pattern: GROUP_JID, max: 128 });
  entry.groupName = str("group_name", { max: 256 });
  if (entry.groupName && !entry.group) fail(at, `"group_name" needs "group" (the group's JID)`);
  entry.label = str("label", { max: 64 });
  if (entry.label !== undefined) {
    if (!LABEL.test(entry.label)) fail(at, `"label" = ${JSON.stringify(entry.label)} must be 1-64 letters, digits or _ . : -`);
    if (labels.has(entry.label)) fail(at, `label ${JSON.stringify(entry.label)} is already used by ${labels.get(entry.label).at}; labels are unique per bot`);
  }
  /** The earlier entry a label names, in this entry's chat, of one of `types` when given. */
  const ref = (key, { required = true, types, what = "entry" } = {}) => {
    const label = str(key, { required, max: 64 });
    if (label === undefined) return undefined;
    const target = labels.get(label);
    if (!target) fail(at, `"${key}" refers to label ${JSON.stringify(label)}, which no earlier entry of this bot carries`);
    if (types && !types.has(target.type)) fail(at, `"${key}" = ${JSON.stringify(label)} names a "${target.type}" entry (${target.at}); it must name ${what}`);
    const chat = entry.group ?? entry.from;
    const targetChat = target.group ?? target.from;
    if (chat !== targetChat) fail(at, `"${key}" = ${JSON.stringify(label)} is a message in chat ${targetChat}, but this entry is in chat ${chat}; set "from"/"group" to match`);
    return label;
  };
  const strings = (key, { min, max }) => {
    const value = item[key];
    if (!Array.isArray(value) || value.length < min || value.length > max) fail(at, `"${key}" must be a list of ${min}-${max} option names`);
    for (const name of value) {
      if (typeof name !== "string" || name.length === 0 || name.length > 256) fail(at, `"${key}" must hold non-empty strings of at most 256 characters, got ${JSON.stringify(name)}`);
    }
    if (new Set(value).size !== value.length) fail(at, `"${key}" names an option twice`);
    return value;
  };
  const number = (key, { min, max }) => {
    const value = item[key];
    if (value === undefined) fail(at, `"${key}" is required for type "${type}"`);
    if (typeof value !== "number" || !Number.isFinite(value) || value < min || value > max) fail(at, `"${key}" must be a number ${min}..${max}`);
    return value;
  };
  switch (type) {
    case "reaction":
      entry.text = str("text", { max: 16 }) ?? "👍";
      entry.target = ref("target", { required: false });
      return entry;
    case "location":
      entry.latitude = number("latitude", { min: -90, max: 90 });
      entry.longitude = number("longitude", { min: -180, max: 180 });
      entry.name = str("name", { max: 256 });
      entry.address = str("address", { max: 512 });
      entry.live = bool("live");
      if (entry.live && entry.address !== undefined) fail(at, `"address" is not sent with "live": true (a live location has only a caption, taken from "name")`);
      return entry;
    case "contact":
      entry.name = str("name", { required: true, max: 256 });
      entry.phone = str("phone", { required: true, max: 40 });
      if (!PHONE.test(entry.phone) || entry.phone.replace(/\D/g, "").length < 5) fail(at, `"phone" = ${JSON.stringify(entry.phone)} must be a phone number such as "+49 151 23456789"`);
      return entry;
    case "poll":
      entry.question = str("question", { required: true, max: 1024 });
      entry.options = strings("options", POLL_OPTIONS);
      return entry;
    case "poll_vote": {
      entry.poll = ref("poll", { types: new Set(["poll"]), what: "a poll entry" });
      // An empty list is a withdrawn vote, as WhatsApp sends it.
      entry.options = strings("options", { min: 0, max: POLL_OPTIONS.max });
      const offered = labels.get(entry.poll).options;
      for (const name of entry.options) {
        if (!offered.includes(name)) fail(at, `option ${JSON.stringify(name)} is not one of poll "${entry.poll}"'s options: ${offered.join(", ")}`);
      }
      return entry;
    }
    case "reply":
      entry.text = str("text", { required: true });
      entry.replyTo = ref("reply_to");
      return entry;
    case "edit":
    case "secret_edit":
      entry.target = ref("target", { types: EDITABLE_TYPES, what: `a text entry (${[...EDITABLE_TYPES].join(", ")})` });
      if (labels.get(entry.target).from !== entry.from) fail(at, `only the sender of "${entry.target}" (${labels.get(entry.target).from}) can edit it; set "from"`);
      entry.text = str("text", { required: true });
      return entry;
    case "delete":
      entry.target = ref("target");
      return entry;
    default:
      break;
  }
  if (TEXT_TYPES.has(type)) {
    entry.text = str("text", { required: true });
    return entry;
  }
  const file = str("file", { required: true, max: 4096 });
  entry.file = isAbsolute(file) ? file : resolve(base, file);
  let info;
  try {
    info = await stat(entry.file);
  } catch (err) {
    fail(at, `file ${entry.file} cannot be read (${err.code ?? err.message}); paths are relative to the script's directory`);
  }
  if (!info.isFile()) fail(at, `file ${entry.file} is not a regular file`);
  entry.mimetype = str("mimetype", { max: 255 }) ?? media.mimetype;
  entry.caption = str("caption");
  entry.seconds = int("seconds", { max: 86_400 });
  entry.animated = bool("animated");
  entry.filename = str("filename", { max: 1024 });
  entry.downloadFails = bool("download_fails");
  entry.urlExpired = bool("url_expired");
  entry.hashMismatch = bool("hash_mismatch");
  entry.declaredLength = int("declared_length");
  return entry;
}

function longLike(n) {
  return { low: n % 2 ** 32, high: Math.floor(n / 2 ** 32), unsigned: true };
}

async function hashFile(path) {
  const hash = createHash("sha256");
  let size = 0;
  for await (const chunk of createReadStream(path)) {
    hash.update(chunk);
    size += chunk.length;
  }
  return { sha256: new Uint8Array(hash.digest()), size };
}

function boomLike(statusCode, message) {
  // Baileys raises Boom errors: the status is in output.statusCode.
  return Object.assign(new Error(message), { isBoom: true, output: { statusCode, payload: { statusCode, message } } });
}

/**
 * Random bytes taken from a larger buffer filled at once: a message secret per injected
 * text cost a fill of its own, about 6 % of the Node server's CPU in a benchmark's burst.
 */
class RandomPool {
  constructor(size = 32 * 1024) {
    this.size = size;
    this.buffer = randomBytes(size);
    this.offset = 0;
  }

  /** A fresh copy of `n` random bytes (n at most the pool's size). */
  take(n) {
    if (this.offset + n > this.size) {
      this.buffer = randomBytes(this.size);
      this.offset = 0;
    }
    const bytes = this.buffer.subarray(this.offset, this.offset + n);
    this.offset += n;
    return new Uint8Array(bytes);
  }
}

function newMessageId() {
  return `3EB0${randomBytes(8).toString("hex").toUpperCase()}`;
}

/**
 * Message content (the `message` field of a WAMessage) for one script entry.
 *
 * @param {Map<string, { key: any, author: string, content: any, secret?: Uint8Array }>} sent
 *   label → the message injected for it in this replay (its key, sender and content)
 * @param {RandomPool} random where secrets and media keys come from
 */
async function contentFor(entry, id, lastKey, sent, random) {
  const labelled = (label) => {
    const target = sent.get(label);
    // Validation saw the label earlier in the script; only a lost injection gets here.
    if (!target) throw new Error(`demo: ${entry.at}: the message labelled "${label}" was not injected`);
    return target;
  };
  switch (entry.type) {
    // Like WhatsApp's, every text carries a messageSecret: a later sealed edit uses it.
    case "text":
      return { conversation: entry.text, messageContextInfo: { messageSecret: random.take(32) } };
    case "extended_text":
      return { extendedTextMessage: { text: entry.text }, messageContextInfo: { messageSecret: random.take(32) } };
    case "ephemeral_text":
      return { ephemeralMessage: { message: { extendedTextMessage: { text: entry.text, contextInfo: { expiration: 604_800 } } } } };
    case "reaction": {
      const key = entry.target ? labelled(entry.target).key : lastKey;
      return { reactionMessage: { key: key ?? { remoteJid: entry.group ?? entry.from, id: "3EB0UNKNOWN", fromMe: false }, text: entry.text, senderTimestampMs: Date.now() } };
    }
    case "location": {
      const position = { degreesLatitude: entry.latitude, degreesLongitude: entry.longitude };
      if (entry.live) return { liveLocationMessage: { ...position, ...(entry.name === undefined ? {} : { caption: entry.name }), sequenceNumber: 1 } };
      return { locationMessage: { ...position, ...(entry.name === undefined ? {} : { name: entry.name }), ...(entry.address === undefined ? {} : { address: entry.address }) } };
    }
    case "contact": {
      const waid = entry.phone.replace(/\D/g, "");
      const vcard = ["BEGIN:VCARD", "VERSION:3.0", `FN:${entry.name}`, `TEL;type=CELL;waid=${waid}:${entry.phone}`, "END:VCARD"].join("\n");
      return { contactMessage: { displayName: entry.name, vcard } };
    }
    case "poll":
      return {
        // selectableOptionsCount 0: any number of options may be chosen.
        pollCreationMessageV3: { name: entry.question, options: entry.options.map((optionName) => ({ optionName })), selectableOptionsCount: 0 },
        // The secret every vote on this poll is encrypted with.
        messageContextInfo: { messageSecret: random.take(32) },
      };
    case "poll_vote": {
      const poll = labelled(entry.poll);
      const vote = encryptPollVote({
        optionNames: entry.options,
        pollMsgId: poll.key.id,
        pollCreatorJid: poll.author,
        voterJid: entry.from,
        encKey: poll.content.messageContextInfo.messageSecret,
      });
      return { pollUpdateMessage: { pollCreationMessageKey: poll.key, vote, senderTimestampMs: Date.now() } };
    }
    case "reply": {
      const target = labelled(entry.replyTo);
      // WhatsApp quotes the whole message, without its per-message secret.
      const { messageContextInfo, ...quotedMessage } = target.content;
      return { extendedTextMessage: { text: entry.text, contextInfo: { stanzaId: target.key.id, participant: target.author, quotedMessage } } };
    }
    case "edit":
      // As WhatsApp delivers an edit: a MESSAGE_EDIT protocol message in editedMessage.
      return {
        editedMessage: {
          message: {
            protocolMessage: {
              type: proto.Message.ProtocolMessage.Type.MESSAGE_EDIT,
              key: labelled(entry.target).key,
              editedMessage: { conversation: entry.text },
              timestampMs: Date.now(),
            },
          },
        },
      };
    case "secret_edit": {
      const target = labelled(entry.target);
      return {
        secretEncryptedMessage: encryptSecretEdit({
          editedMessage: { conversation: entry.text },
          targetKey: target.key,
          secret: target.content.messageContextInfo.messageSecret,
          sender: target.author,
        }),
      };
    }
    case "delete":
      return { protocolMessage: { type: proto.Message.ProtocolMessage.Type.REVOKE, key: labelled(entry.target).key } };
    default:
      break;
  }
  const { sha256, size } = await hashFile(entry.file);
  if (entry.hashMismatch) sha256[0] ^= 0xff;
  const fields = {
    url: `https://mmg.whatsapp.net/v/t62.7118-24/demo/${id}.enc?ccb=11-4`,
    directPath: `/v/t62.7118-24/demo/${id}.enc?ccb=11-4`,
    mediaKey: random.take(32),
    mediaKeyTimestamp: Math.floor(Date.now() / 1000),
    fileSha256: sha256,
    fileEncSha256: random.take(32),
    // The sender's claim; the server must not trust it (a string becomes a Long too).
    fileLength: entry.declaredLength !== undefined ? String(entry.declaredLength) : longLike(size),
    mimetype: entry.mimetype,
  };
  const caption = entry.caption === undefined ? {} : { caption: entry.caption };
  const seconds = entry.seconds === undefined ? {} : { seconds: entry.seconds };
  switch (entry.type) {
    case "image":
      return { imageMessage: { ...fields, ...caption } };
    case "view_once_image":
      return { viewOnceMessageV2: { message: { imageMessage: { ...fields, ...caption, viewOnce: true } } } };
    case "video":
      return { videoMessage: { ...fields, ...caption, ...seconds } };
    case "view_once_video":
      return { viewOnceMessageV2: { message: { videoMessage: { ...fields, ...caption, ...seconds, viewOnce: true } } } };
    case "gif":
      return { videoMessage: { ...fields, ...caption, ...seconds, gifPlayback: true } };
    case "video_note":
      return { ptvMessage: { ...fields, ...seconds } };
    case "voice_note":
      return { audioMessage: { ...fields, ...seconds, ptt: true } };
    case "audio":
      return { audioMessage: { ...fields, ...seconds, ptt: false } };
    case "sticker":
      return { stickerMessage: { ...fields, isAnimated: entry.animated } };
    case "document": {
      const fileName = entry.filename ?? entry.file.split("/").pop();
      const doc = { documentMessage: { ...fields, ...caption, fileName, title: fileName } };
      // WhatsApp wraps a document with a caption; the handler must unwrap it.
      return entry.caption === undefined ? doc : { documentWithCaptionMessage: { message: doc } };
    }
    default:
      throw new Error(`demo: no content builder for type ${entry.type}`);
  }
}

/** What a sendMessage content is, for the `reply_sent` line and the echo. */
function describeContent(content) {
  if (typeof content?.text === "string") return { kind: "text", summary: { text: content.text } };
  if (content?.react) {
    const { text, key } = content.react;
    return { kind: "reaction", summary: { emoji: text, target: key?.id }, media: { reactionMessage: { text, key } } };
  }
  for (const kind of ["image", "document", "audio", "video"]) {
    const bytes = content?.[kind];
    if (!Buffer.isBuffer(bytes)) continue;
    const summary = {
      bytes: bytes.length,
      sha256: createHash("sha256").update(bytes).digest("hex"),
      mimetype: content.mimetype,
      ...(content.caption ? { text: content.caption } : {}),
      ...(content.fileName ? { fileName: content.fileName } : {}),
      ...(content.ptt ? { ptt: true } : {}),
    };
    const shown = kind === "audio" && content.ptt ? "voice_note" : kind;
    return { kind: shown, summary, media: { [`${kind}Message`]: { mimetype: content.mimetype, caption: content.caption } } };
  }
  throw new Error(`demo: cannot send content with keys ${Object.keys(content ?? {}).join(", ")}`);
}

/**
 * The demo replacement for the WhatsApp connection: a socket factory with the signature
 * SessionManager expects and a media downloader with the one the handler expects.
 *
 * @param {{ bots: Map<string, any[]> }} script from loadDemoScript
 * @param {{ logger: any, print?: (line: string) => void }} options print receives the
 *   JSON lines for stdout (reply_sent, message_injected, script_done)
 */
/**
 * Prints lines to stdout, the lines of one burst in one write: a write per line was a
 * tenth of the Node server's CPU under the Node path benchmark. Whatever is still held
 * when the process exits is written then (a SIGKILL loses at most the current burst).
 */
export function stdoutLines() {
  let held = [];
  const flush = () => {
    if (held.length === 0) return;
    const text = `${held.join("\n")}\n`;
    held = [];
    // Synchronous for files and pipes on Linux, so the exit handler's write lands too.
    process.stdout.write(text);
  };
  process.once("exit", flush);
  return (line) => {
    if (held.length === 0) setImmediate(flush);
    held.push(line);
  };
}

export function createDemoWhatsApp(script, { logger, print = stdoutLines() }) {
  const state = {
    script,
    logger,
    emit: (event) => print(JSON.stringify(event)),
    /**
     * Per bot: where the socket that replaces a scripted disconnect goes on. Any other
     * new socket (forceReinit, a restart resuming the stored session, a new pairing
     * after logout) replays the script from the start with fresh message ids.
     */
    resume: new Map(),
    /** Message id → media entry, for the downloader. */
    media: new Map(),
    /** Bots whose scripted pairing has happened in this process. */
    paired: new Set(),
    reuploaded: new Set(),
  };
  return {
    demo: true,
    makeSocket: (options, { userId } = {}) => new DemoSocket(state, userId, options.logger ?? logger, options.auth),
    download: async (message) => {
      const id = message?.key?.id;
      const entry = state.media.get(id);
      const url = `https://mmg.whatsapp.net/v/t62.7118-24/demo/${id}.enc`;
      if (!entry) throw boomLike(404, `Failed to fetch stream from ${url}`);
      if (entry.downloadFails || (entry.urlExpired && !state.reuploaded.has(id))) {
        throw boomLike(410, `Failed to fetch stream from ${url}`);
      }
      return createReadStream(entry.file);
    },
  };
}

/** One scripted "WhatsApp connection" for one bot. */
export class DemoSocket {
  constructor(state, botId, logger, auth) {
    this.state = state;
    // The session's auth state, as Baileys gets it: pairing writes `me` into the
    // credentials, and a socket whose credentials have it does not pair again.
    this.auth = auth;
    this.botId = botId;
    this.logger = logger;
    this.ev = new EventEmitter();
    this.user = undefined;
    this.closed = false;
    /** Pending steps: timer → its resolve, so a close settles them. */
    this.timers = new Map();
    this.lastKey = undefined;
    this.random = new RandomPool();
    this.ws = { close: () => this.end(undefined) };
    this.entries = state.script.bots.get(botId);
    // labels: label → the message injected for it, kept across a scripted disconnect.
    this.position = state.resume.get(botId) ?? { index: 0, sent: 0, labels: new Map() };
    state.resume.delete(botId);
    logger.warn({ from_entry: this.position.index }, "demo socket created: WhatsApp is NOT contacted, the script is replayed");
    if (!this.entries) logger.warn("demo: the script has no messages for this bot; the session opens and stays quiet");
    // Listeners are attached right after the factory returns, as with Baileys.
    this.#later(0, () => this.#connect());
  }

  #later(ms, fn) {
    return new Promise((resolveDone) => {
      const run = () => {
        this.timers.delete(timer);
        if (!this.closed) Promise.resolve().then(fn).then(resolveDone, (err) => {
          this.logger.error({ err }, "demo: scripted step failed");
          resolveDone();
        });
        else resolveDone();
      };
      // setTimeout(0) waits at least 1 ms: a script of zero-delay entries (the Node path
      // benchmark) would be paced by the timer, not by the server it measures.
      const timer = ms === 0 ? { immediate: setImmediate(run) } : { timeout: setTimeout(run, ms) };
      this.timers.set(timer, resolveDone);
    });
  }

  async #connect() {
    this.ev.emit("connection.update", { connection: "connecting" });
    const pairing = this.state.script.pairing?.get(this.botId);
    const registered = Boolean(this.auth?.creds?.me) || this.state.paired.has(this.botId);
    if (pairing && !registered) {
      await this.#pair(pairing);
      if (this.closed) return;
      this.state.paired.add(this.botId);
      this.state.emit({ event: "paired", botId: this.botId, by: pairing.by });
    }
    const me = this.botId?.includes("@") ? this.botId : `${this.botId}@s.whatsapp.net`;
    this.user = { id: me, name: this.botId };
    const update = { me: this.user, registered: true };
    // Baileys merges every credentials update into the state before announcing it.
    if (this.auth?.creds) Object.assign(this.auth.creds, update);
    this.ev.emit("creds.update", update);
    await this.#later(20, () => {
      this.ev.emit("connection.update", { connection: "open", receivedPendingNotifications: true });
    });
    await this.#replay();
  }

  /** Shows rotating QR codes until the scripted scan (or code entry) happens. */
  async #pair({ rotateMs, scanAfterMs, by }) {
    const scanned = new Promise((resolveScan) => {
      this.scan = () => this.#later(scanAfterMs, resolveScan);
    });
    if (by === "qr") this.scan();
    let rotating = true;
    const rotate = async () => {
      while (rotating && !this.closed) {
        const qr = demoQr();
        this.state.emit({ event: "qr_shown", botId: this.botId, qr });
        this.ev.emit("connection.update", { qr });
        await Promise.race([this.#later(rotateMs, () => {}), scanned]);
      }
    };
    const rotation = rotate();
    await scanned;
    rotating = false;
    await rotation;
  }

  /** Like Baileys' requestPairingCode: only while pairing; the scan follows by script. */
  async requestPairingCode(phoneNumber) {
    if (this.closed) throw boomLike(428, "Connection Closed");
    if (!this.scan || this.state.paired.has(this.botId) || this.auth?.creds?.me) throw boomLike(400, "not pairing");
    const code = createHash("sha256").update(`${this.botId}:${phoneNumber}`).digest("hex").slice(0, 8).toUpperCase();
    this.state.emit({ event: "pairing_code", botId: this.botId, phoneNumber, code });
    if (this.state.script.pairing.get(this.botId)?.by === "code") this.scan();
    return code;
  }

  async #replay() {
    const entries = this.entries ?? [];
    const position = this.position;
    while (!this.closed && position.index < entries.length) {
      const entry = entries[position.index];
      await this.#later(entry.delayMs, async () => {
        position.index += 1;
        if (entry.type === "disconnect") {
          this.logger.info({ status_code: entry.statusCode }, "demo: scripted disconnect");
          this.state.resume.set(this.botId, position);
          this.#close(boomLike(entry.statusCode, "demo: scripted disconnect"));
          return;
        }
        await this.#inject(entry);
        position.sent += 1;
      });
    }
    if (!this.closed) this.state.emit({ event: "script_done", botId: this.botId, messages: position.sent });
  }

  async #inject(entry) {
    const id = entry.id ?? newMessageId();
    const remoteJid = entry.group ?? entry.from;
    const fromMe = entry.fromMe === true;
    const key = entry.group ? { remoteJid, fromMe, id, participant: entry.from } : { remoteJid, fromMe, id };
    // A sender addressed by LID, with the phone JID beside it. Baileys 7 adds these to the
    // decoded key (they are not fields of the MessageKey proto), so they are set after it.
    const alt = entry.phoneJid
      ? { ...(entry.group ? { participantAlt: entry.phoneJid } : { remoteJidAlt: entry.phoneJid }), addressingMode: "lid" }
      : {};
    const message = await contentFor(entry, id, this.lastKey, this.position.labels, this.random);
    if (this.closed) return;
    if (entry.label) this.position.labels.set(entry.label, { key, author: entry.from, content: message });
    if (entry.file) this.state.media.set(id, entry);
    const waMessage = proto.WebMessageInfo.fromObject({
      key,
      message,
      messageTimestamp: Math.floor(Date.now() / 1000),
      pushName: entry.pushName ?? "Demo User",
      ...(entry.group ? { participant: entry.from } : {}),
    });
    Object.assign(waMessage.key, alt);
    this.lastKey = key;
    // A benchmark injecting thousands a second turns these off (`injected_events`): the
    // line per message, and its reader, would cost more than the server it measures.
    if (this.state.script.injectedEvents !== false) {
      this.state.emit({ event: "message_injected", botId: this.botId, id, type: entry.type, from: entry.from, chat: remoteJid, upsert: entry.upsert });
    }
    this.ev.emit("messages.upsert", { type: entry.upsert, messages: [waMessage] });
  }

  #close(error) {
    if (this.closed) return;
    this.closed = true;
    for (const [timer, settle] of this.timers) {
      if (timer.immediate) clearImmediate(timer.immediate);
      else clearTimeout(timer.timeout);
      settle();
    }
    this.timers.clear();
    this.ev.emit("connection.update", { connection: "close", lastDisconnect: { error, date: new Date() } });
  }

  /** Like Baileys: closing the socket reports a close (the session ignores a stale one). */
  end(error) {
    this.#close(error);
  }

  async logout() {
    if (this.closed) throw boomLike(428, "Connection Closed");
    this.#close(boomLike(401, "Intentional Logout"));
  }

  /**
   * Like Baileys' sendMessage for the kinds this system sends (text, image, document,
   * audio / voice note, video, reaction); prints one `reply_sent` line with the kind and,
   * for media, the byte count and sha256, so tests can check what reached "WhatsApp".
   */
  async sendMessage(jid, content, options) {
    if (this.closed) throw boomLike(428, "Connection Closed");
    const { kind, media, summary } = describeContent(content);
    const id = options?.messageId ?? newMessageId();
    const quoted = options?.quoted?.key?.id;
    this.state.emit({ event: "reply_sent", botId: this.botId, to: jid, kind, ...summary, ...(quoted ? { quoted } : {}), id });
    const sent = proto.WebMessageInfo.fromObject({
      key: { remoteJid: jid, fromMe: true, id },
      message: media ?? { extendedTextMessage: { text: content.text ?? "" } },
      messageTimestamp: Math.floor(Date.now() / 1000),
      status: proto.WebMessageInfo.Status.SERVER_ACK,
    });
    // Baileys echoes the bot's own messages as an upsert; the handler must drop them.
    setImmediate(() => {
      if (!this.closed) this.ev.emit("messages.upsert", { type: "append", messages: [sent] });
    });
    return sent;
  }

  async readMessages(keys) {
    if (this.closed) throw boomLike(428, "Connection Closed");
    for (const key of keys) {
      this.state.emit({ event: "read_sent", botId: this.botId, chat: key.remoteJid, id: key.id, ...(key.participant ? { participant: key.participant } : {}) });
    }
  }

  async sendPresenceUpdate(presence, jid) {
    if (this.closed) throw boomLike(428, "Connection Closed");
    this.state.emit({ event: "presence_sent", botId: this.botId, to: jid, presence });
  }

  /** The sender's phone "uploads again": the next download of this message succeeds unless it always fails. */
  async updateMediaMessage(message) {
    if (this.closed) throw boomLike(428, "Connection Closed");
    this.state.reuploaded.add(message.key.id);
    return message;
  }

  async groupMetadata(jid) {
    for (const entry of this.entries ?? []) {
      if (entry.group === jid && entry.groupName) {
        return { id: jid, subject: entry.groupName, participants: [], owner: undefined, creation: 0 };
      }
    }
    throw boomLike(404, "item-not-found");
  }
}
