// Turns Baileys `messages.upsert` events into wire frames. A plain module: the socket,
// the downloader, the staging directory, the quota and the frame sink are all passed in,
// so tests drive it with Baileys-shaped events and no WhatsApp connection.

import { getContentType, getKeyAuthor } from "baileys";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { ChatKind } from "./gen/chatbot/common/v1/context_pb.js";
import { buildNodeFrame } from "./wire.js";
import { MediaError, QuotaExceededError, measureStaging, stageMedia, withTimeout } from "./media.js";
import { DirectoryStager } from "./stagers.js";
import { MAX_TEXT, detailsOf, poll, pollCreation, protocolTypeName, replyContext } from "./structured.js";
import { HANDLED_UPSERT_TYPES, baseMime, classify, editedWrapper, isDecryptionStub, untrustedCount, unwrap } from "./classify.js";
import { botSettings } from "./bot_settings.js";
import { adReplyLine, chatKindOf, createContextBuilder } from "./context.js";
import { DropCounter } from "./drops.js";
import { MessageSecrets, bytes } from "./edits.js";
import { groupEvent, isGroupStub, stubName } from "./group_events.js";
import { bareJid, createIdentityResolver } from "./identity.js";
import { clip } from "./text.js";
import { createTurns } from "./turns.js";

export { HANDLED_UPSERT_TYPES, baseMime, classify, isDecryptionStub, untrustedCount, unwrap } from "./classify.js";

const MAX_MAPPINGS_PER_FRAME = 1000;
const MAX_ALBUMS = 2000;
const GIB = 1024 ** 3;

function originatingDate(msg, clock) {
  const seconds = untrustedCount(msg.messageTimestamp);
  return seconds ? new Date(seconds * 1000) : clock();
}

/**
 * @typedef {object} HandlerDeps
 * @property {any} [stager] where media bytes go (stagers.js); default a DirectoryStager on stagingDir
 * @property {string} [stagingDir] the directory stager's directory
 * @property {(message: any) => Promise<any>} download returns the decrypted byte stream
 * @property {(botId: string, message: any) => Promise<any>} [reupload] refreshes expired media URLs
 * @property {(botId: string) => number | undefined} quotaGbFor the bot's media_storage_quota_gb
 * @property {(frame: any, chatKey: string) => Promise<void>} frameSink durable hand-off (the outbox);
 *   frames take their place in it when it is called (its order is the call order) and the
 *   promise resolves once the frame is durable
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
 * @property {(botId: string) => string | undefined} [meLidOf] the bot's own LID, once known
 * @property {(botId: string) => any} [configOf] the bot's config from /initialize (settings)
 * @property {(botId: string) => any} [lidMappingOf] Baileys' sock.signalRepository.lidMapping
 * @property {import("./sent_ids.js").SentIds} [sentIds] ids of the messages this system sent
 * @property {import("./undecryptable.js").PendingStubs} [pendingStubs] undecryptable stubs in their window
 * @property {DropCounter} [drops] counts every message not forwarded, by reason
 */

/** @param {HandlerDeps} deps */
export function createMessageHandler({
  stager: givenStager,
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
  meLidOf = () => undefined,
  configOf = () => undefined,
  lidMappingOf = () => undefined,
  sentIds,
  pendingStubs,
  drops = new DropCounter(),
}) {
  // The directory walk measures the whole staging directory: only the directory stager
  // does it; the gateway checks the bot's own counter in the store.
  const stager = givenStager ?? new DirectoryStager({
    stagingDir,
    measure: (log) => measureStaging({ stagingDir, sizeOf, timeoutMs: quotaTimeoutMs, logger: log }),
  });
  const identities = createIdentityResolver({ lidMappingOf, logger });
  const contexts = createContextBuilder({ identities, ownIdsOf: (botId) => ({ id: meIdOf(botId), lid: meLidOf(botId) }) });
  const secrets = new MessageSecrets();
  // Albums announced by their header (albumMessage), so each item carries the counts.
  const albums = new Map();
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

  function drop(reason, log, fields = {}) {
    drops.count(reason);
    log.debug({ reason, ...fields }, "message not forwarded");
    return undefined;
  }

  /** The header: the person named by the LID when known, and the message's context. */
  async function header(botId, msg, env, log) {
    const remoteJid = String(msg.key.remoteJid);
    const { correspondentId, sender, context } = await contexts.build(botId, msg, { ...env, albums });
    const isGroup = context.chatKind === ChatKind.GROUP;
    return {
      botId,
      correspondentId,
      sender,
      providerMessageId: clip(msg.key.id, 256),
      originatingTime: timestampFromDate(originatingDate(msg, clock)),
      group: isGroup ? { groupId: remoteJid, groupName: await groupName(botId, remoteJid, log) } : undefined,
      context,
    };
  }

  /** The reply context with the quoted sender named as the header names people. */
  async function replyOf(botId, contextInfo) {
    const reply = replyContext(contextInfo);
    if (reply?.quotedSender) {
      const who = await identities.resolve(botId, reply.quotedSender);
      reply.quotedSender = who.id ? clip(who.id, 256) : undefined;
    }
    return reply;
  }

  /**
   * Hands a frame to the sink; resolves once it is durable. `entered` is told as soon as
   * the frame has its place in the sink, so the chat's next message may go on meanwhile.
   */
  async function emit(payloadCase, value, chatKey, entered) {
    const frame = buildNodeFrame({ payload: { case: payloadCase, value } });
    const durable = frameSink(frame, chatKey);
    entered?.();
    await durable;
    return frame;
  }

  /** Sends the LID↔phone pairs learned since the last call (at most 1000 per frame). */
  async function reportMappings(botId) {
    const pairs = identities.takeUnreported(botId);
    for (let i = 0; i < pairs.length; i += MAX_MAPPINGS_PER_FRAME) {
      const mappings = pairs.slice(i, i + MAX_MAPPINGS_PER_FRAME);
      await emit("identityMappings", { botId, mappings }, `identity\u0000${botId}`);
    }
  }

  /** Pairs from Baileys' `lid-mapping.update` event (one pair or a list). */
  async function learnMappings(botId, update) {
    for (const pair of Array.isArray(update) ? update : [update]) {
      identities.learn(botId, pair?.lid, pair?.pn ?? pair?.phoneNumber);
    }
    await reportMappings(botId);
  }

  /** Keeps a poll's creation message so that votes on it can be decrypted later. */
  async function rememberPoll(botId, msg, content, log) {
    const p = pollCreation(content);
    if (!p || !polls) return;
    const encKey = bytes(content.messageContextInfo?.messageSecret ?? msg.message?.messageContextInfo?.messageSecret);
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

  async function handleStructured(botId, msg, content, info, hdr, replyTo, chatKey, log, entered) {
    const key = msg.key;
    const details = await detailsOf(info.contentType, content, {
      botId,
      chatJid: String(key.remoteJid),
      key,
      meId: meIdOf(botId),
      polls,
      log,
      secrets,
      // Who may have sealed an edit: the author under each of their ids.
      // The owner's own edits are sealed under the account's ids.
      senderIds: [key.participant, key.participantAlt, key.participantPn, key.remoteJid, key.remoteJidAlt, key.senderPn, key.senderLid, hdr.sender,
        ...(key.fromMe ? [meIdOf(botId), meLidOf(botId)] : [])]
        .map(bareJid)
        .filter(Boolean),
    });
    if (details.case === "poll") await rememberPoll(botId, msg, content, log);
    if (details.case === "unsupported") log.info({ content_type: details.value.messageType }, "unsupported message type forwarded as a marker");
    return emit("structuredMessage", { header: hdr, details: { kind: details }, replyTo }, chatKey, entered);
  }

  async function handleMedia(botId, msg, info, hdr, replyTo, chatKey, log) {
    const base = {
      header: hdr,
      replyTo,
      message: clip(info.caption, MAX_TEXT),
      mimeType: clip(info.mimeType, 255),
      mediaKind: info.kind,
      originalFilename: info.fileName === undefined ? undefined : clip(info.fileName, 1024),
    };
    const quotaGb = quotaGbFor(botId);
    try {
      const staged = await stageMedia({
        message: msg,
        botId,
        stager,
        download,
        reupload: reupload ? (m) => reupload(botId, m) : undefined,
        fileSha256: info.media?.fileSha256,
        quotaBytes: quotaGb === undefined ? undefined : Math.floor(quotaGb * GIB),
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
      if (err instanceof QuotaExceededError) {
        log.warn({ used_bytes: err.usedBytes, quota_bytes: err.quotaBytes }, "staging quota exceeded; media not downloaded");
        return emit("quotaExceededMediaMessage", {
          ...base,
          usedBytes: BigInt(err.usedBytes),
          quotaBytes: BigInt(err.quotaBytes),
        }, chatKey);
      }
      if (!(err instanceof MediaError)) throw err;
      log.warn({ reason: err.reason, mime: baseMime(info.mimeType) }, "media unusable; sending corrupt-media frame");
      return emit("corruptMediaMessage", { ...base, reason: clip(err.reason, 1024) }, chatKey);
    }
  }

  /** Emits the one `undecryptable` marker of a stub (its window passed, or it never opens). */
  async function emitUndecryptable(botId, stub, reason, viewOnce = false, entered = undefined) {
    const log = logger.child({ bot_id: botId, provider_message_id: stub.key?.id });
    const hdr = await header(botId, stub, { fromOwner: Boolean(stub.key?.fromMe) }, log);
    if (viewOnce) hdr.context.viewOnce = true;
    log.warn({ reason }, "message could not be read; the bot is told so");
    return emit("structuredMessage", {
      header: hdr,
      details: { kind: { case: "undecryptable", value: { reason: clip(reason, 256) } } },
    }, `${botId}\u0000${hdr.correspondentId}`, entered);
  }

  /** Why a stub could not be decrypted, in words for the operator. */
  function stubReason(msg) {
    const param = Array.isArray(msg.messageStubParameters) ? msg.messageStubParameters[0] : undefined;
    return clip(typeof param === "string" && param ? param : "no content", 256);
  }

  /**
   * What to do with a message that has no readable content: a group event, a view-once
   * stub (never readable on a linked device), a stub waiting for its readable copy, or
   * a counted drop. Returns the frame when one is sent.
   */
  async function handleStub(botId, msg, settings, log, entered) {
    const key = msg.key;
    if (isGroupStub(msg)) {
      if (!settings.groupEvents) return drop("group_events_off", log, { stub: stubName(msg) });
      const seenKey = `${botId}\u0000${key.remoteJid}\u0000${key.id}`;
      if (seen.has(seenKey)) return drop("duplicate", log);
      remember(seenKey);
      const hdr = await header(botId, msg, { fromOwner: Boolean(key.fromMe) }, log);
      const value = await groupEvent(
        msg,
        (jid, ...alts) => identities.resolve(botId, jid, ...alts),
        (jid) => contexts.botIds(botId).has(bareJid(jid)),
      );
      return emit("structuredMessage", { header: hdr, details: { kind: { case: "groupEvent", value } } }, `${botId}\u0000${hdr.correspondentId}`, entered);
    }
    const name = stubName(msg);
    if (name !== undefined && name !== "CIPHERTEXT" && msg.message) return undefined;
    if (name !== undefined && name !== "CIPHERTEXT") return drop("system_stub", log, { stub: name });
    if (key.isViewOnce) {
      // WhatsApp shows view-once media only on the phone: the copy never comes.
      const seenKey = `${botId}\u0000${key.remoteJid}\u0000${key.id}`;
      if (seen.has(seenKey)) return drop("duplicate", log);
      remember(seenKey);
      return emitUndecryptable(botId, msg, "view-once message: its content is shown only on the phone", true, entered);
    }
    if (!pendingStubs) return drop("undecryptable", log, { params: msg.messageStubParameters });
    const state = pendingStubs.state(botId, String(key.id));
    if (state === "expired") return drop("undecryptable_repeat", log);
    // Not marked as seen: the readable copy may arrive later under the same id.
    await pendingStubs.add(botId, msg);
    log.warn({ stub: msg.messageStubType, params: msg.messageStubParameters }, "undecryptable message waits for its readable copy");
    return undefined;
  }

  /**
   * Handles one message; resolves once its frame (if any) is in the sink. Returns the
   * frame, or undefined when nothing is forwarded (every such case counted by reason).
   * `entered` (optional) is called once the frame has its place in the sink.
   */
  async function handleMessage(botId, msg, entered = undefined) {
    const key = msg?.key;
    const settings = botSettings(configOf(botId));
    const chatKind = key?.remoteJid ? chatKindOf(String(key.remoteJid)) : undefined;
    const log = logger.child({ bot_id: botId, correspondent_id: key?.remoteJid, provider_message_id: key?.id });
    // Status updates are dropped before anything else: most bots never want them.
    if (chatKind === ChatKind.STATUS && !settings.status) return drop("status_broadcast", log);
    if (!key?.remoteJid || !key.id) {
      drops.count("no_key");
      logger.warn({ bot_id: botId }, "message without key ignored");
      return undefined;
    }
    if (chatKind === ChatKind.NEWSLETTER && !settings.newsletters) return drop("newsletters_off", log);
    if (chatKind === ChatKind.GROUP && !settings.groups) return drop("groups_off", log);
    const stub = isDecryptionStub(msg) || isGroupStub(msg);
    let fromOwner = false;
    if (key.fromMe && chatKind !== ChatKind.NEWSLETTER) {
      // A poll sent from this account is kept either way: votes on it arrive later and
      // can only be decrypted with it.
      if (!stub) await rememberPoll(botId, msg, unwrap(msg.message) ?? {}, log);
      if (sentIds?.has(botId, key.id)) return drop("own_echo", log);
      if (!settings.ownerMessages) return drop("owner_messages_off", log);
      fromOwner = true;
    }
    if (stub) {
      const handled = await handleStub(botId, msg, settings, log, entered);
      if (handled !== undefined || !msg.message) return handled;
    }
    if (pendingStubs) {
      const state = pendingStubs.state(botId, String(key.id));
      if (state === "pending") await pendingStubs.resolve(botId, String(key.id));
      else if (state === "expired") return drop("late_copy_after_marker", log);
    }
    const seenKey = `${botId}\u0000${key.remoteJid}\u0000${key.id}`;
    if (seen.has(seenKey)) return drop("duplicate", log);
    const content = unwrap(msg.message);
    const contentType = getContentType(content);
    if (contentType === "albumMessage") {
      albums.set(`${botId}\u0000${key.id}`, content.albumMessage);
      if (albums.size > MAX_ALBUMS) albums.delete(albums.keys().next().value);
      return drop("album_header", log);
    }
    const info = classify(content ?? {});
    if (info.type === "ignored") {
      const reason = contentType === "protocolMessage" ? "protocol_message" : "housekeeping";
      return drop(reason, log, { content_type: info.contentType, protocol: contentType === "protocolMessage" ? protocolTypeName(content.protocolMessage) : undefined });
    }
    if (info.type === "text" && info.text === "") return drop("empty_text", log);
    remember(seenKey);
    const secret = content?.messageContextInfo?.messageSecret ?? msg.message?.messageContextInfo?.messageSecret;
    if (secret) secrets.put(botId, String(key.id), secret);
    const chatKeyOf = (hdr) => `${botId}\u0000${hdr.correspondentId}`;
    try {
      const hdr = await header(botId, msg, { content, contentType, fromOwner }, log);
      const chatKey = chatKeyOf(hdr);
      const replyTo = contentType ? await replyOf(botId, content[contentType]?.contextInfo) : undefined;
      const wrapped = editedWrapper(msg.message);
      if (wrapped && contentType !== "protocolMessage") {
        // An edit sent as a bare editedMessage wrapper: an edit of the original, never a
        // new message. The original's id is the protocol key's when present, else the
        // wrapper's own (WhatsApp reuses the original's id for it).
        const target = clip(wrapped.message?.protocolMessage?.key?.id || key.id, 256);
        const text = info.type === "text" ? info.text : info.caption ?? "";
        const value = { targetMessageId: target, text: clip(text, MAX_TEXT), decrypted: true };
        return await emit("structuredMessage", { header: hdr, details: { kind: { case: "edit", value } }, replyTo }, chatKey, entered);
      }
      if (info.type === "text") {
        let text = clip(info.text, MAX_TEXT);
        if (hdr.context.adReply) text = clip(`${text}\n${adReplyLine(hdr.context.adReply)}`, MAX_TEXT);
        return await emit("textMessage", { header: hdr, message: text, replyTo }, chatKey, entered);
      }
      if (info.type === "structured") return await handleStructured(botId, msg, content, info, hdr, replyTo, chatKey, log, entered);
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
    try {
      return await handleEach(botId, event);
    } finally {
      await reportMappings(botId).catch((err) => logger.error({ err, bot_id: botId }, "identity mappings not queued"));
    }
  }

  // `messages.reaction` events take turns per bot (they are few; upserts are ordered per
  // chat above, which lets one bot's chats go through in parallel).
  const takeTurn = createTurns();

  async function handleEach(botId, event) {
    const pending = [];
    for (const msg of event.messages ?? []) {
      const content = msg?.message && !isDecryptionStub(msg) ? unwrap(msg.message) : undefined;
      // Text and structured messages enter the sink in arrival order per chat, across
      // upserts too (Baileys emits each as its own event, and handling one can wait on
      // the poll store or a group lookup): a vote must find the poll stored before it.
      // Only media waits, for its download.
      const isText = content !== undefined && classify(content).type !== "media";
      const handle = (entered) => handleMessage(botId, msg, entered).catch((err) => {
        logger.error({ err, bot_id: botId, provider_message_id: msg?.key?.id }, "message handling failed");
        return undefined;
      });
      if (isText) {
        // The chat's next message waits until this one's frame has its place in the
        // sink, not until it is durable: the outbox keeps that order and commits the
        // chat's frames together (waiting for each fsync capped one chat at ~300 msg/s).
        const chat = `${botId}\u0000${msg?.key?.remoteJid}`;
        let entered;
        const placed = new Promise((resolve) => {
          entered = resolve;
        });
        const done = (chatTails.get(chat) ?? Promise.resolve()).then(() => handle(entered));
        const turn = Promise.race([placed, done]);
        chatTails.set(chat, turn);
        turn.finally(() => {
          if (chatTails.get(chat) === turn) chatTails.delete(chat);
        });
        await turn;
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
    const release = await takeTurn(botId);
    try {
      return await reactionFrames(botId, reactions);
    } finally {
      release();
      await reportMappings(botId).catch((err) => logger.error({ err, bot_id: botId }, "identity mappings not queued"));
    }
  }

  async function reactionFrames(botId, reactions) {
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

  return { handleUpsert, handleMessage, handleReactions, idle, learnMappings, emitUndecryptable, drops };
}
