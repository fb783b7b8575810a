// The real message handler, driven with Baileys-shaped `messages.upsert` events, an
// injected downloader and a real temporary staging directory.
import { test, beforeEach, afterEach } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { createMessageHandler, baseMime, untrustedCount } from "../src/handler.js";
import { createMemoryLogger } from "../src/logger.js";
import { isUuid4 } from "../src/wire.js";
import { CHAT, GROUP, MEMBER, TS, fakeDownloader, mediaFields, nextId, waMessage } from "./helpers/baileys_shapes.js";
import { assertMatchesGolden } from "./helpers/golden.js";
import { isoFromSeconds } from "./helpers/clock.js";
import { waitUntil } from "./helpers/wait.js";

const BOT = "4915000000000@s.whatsapp.net";

let staging;
let sink;
let logs;

beforeEach(async () => {
  staging = await mkdtemp(join(tmpdir(), "staging-"));
  sink = [];
  logs = createMemoryLogger();
});

afterEach(async () => {
  await rm(staging, { recursive: true, force: true });
});

function handlerWith(behaviour, overrides = {}) {
  const downloader = fakeDownloader(behaviour);
  const reuploads = [];
  const handler = createMessageHandler({
    stagingDir: staging,
    download: downloader.download,
    reupload: async (botId, msg) => {
      reuploads.push({ botId, id: msg.key.id });
      return { ...msg, reuploaded: true };
    },
    quotaGbFor: () => 1,
    frameSink: async (frame, chatKey) => {
      sink.push({ frame, chatKey });
    },
    logger: logs.logger,
    groupNameOf: async () => "Team",
    ...overrides,
  });
  return { handler, downloader, reuploads };
}

async function stagedFiles() {
  return (await readdir(staging)).sort();
}

/** Runs one upsert with one message and returns the canonical JSON of its only frame. */
async function single(handler, msg, golden, type = "notify") {
  const frames = await handler.handleUpsert(BOT, { type, messages: [msg] });
  assert.equal(frames.length, 1, "expected exactly one frame");
  assert.equal(sink.length, 1, "expected exactly one frame in the sink");
  return assertMatchesGolden(frames[0], golden);
}

async function assertStaged(json, bytes) {
  const media = json.mediaMessage;
  assert.ok(isUuid4(media.mediaProcessingId));
  assert.deepEqual(await stagedFiles(), [media.mediaProcessingId], "exactly the staged file, no .part left");
  assert.deepEqual(await readFile(join(staging, media.mediaProcessingId)), bytes);
  assert.equal(media.fileSize, String(bytes.length));
}

test("text and extended text become text frames at once", async () => {
  const { handler } = handlerWith({});
  const a = waMessage({ conversation: "Hello, bot!" });
  const b = waMessage({ extendedTextMessage: { text: "see https://example.org", matchedText: "https://example.org" } });
  const frames = await handler.handleUpsert(BOT, { type: "notify", messages: [a, b] });
  assert.equal(frames.length, 2);
  const ja = assertMatchesGolden(frames[0], "text_message");
  const jb = assertMatchesGolden(frames[1], "text_message");
  assert.deepEqual(ja.textMessage, {
    header: {
      botId: BOT,
      correspondentId: CHAT,
      sender: CHAT,
      providerMessageId: a.key.id,
      originatingTime: isoFromSeconds(TS),
      context: {
        chatKind: "CHAT_KIND_DIRECT",
        correspondentIdKind: "ID_KIND_PHONE",
        correspondentPhone: "4915112345678",
        senderIdKind: "ID_KIND_PHONE",
        senderPhone: "4915112345678",
        senderName: "Alice",
      },
    },
    message: "Hello, bot!",
  });
  assert.equal(jb.textMessage.message, "see https://example.org");
  assert.deepEqual(await stagedFiles(), []);
});

test("a group text carries the participant as sender and the group info", async () => {
  const { handler } = handlerWith({});
  const json = await single(handler, waMessage({ conversation: "hi all" }, { group: GROUP }), "text_message_group");
  assert.equal(json.textMessage.header.sender, MEMBER);
  assert.deepEqual(json.textMessage.header.group, { groupId: GROUP, groupName: "Team" });
});

test("an image with caption is staged and sent as an image", async () => {
  const bytes = randomBytes(48_213);
  const msg = waMessage({ imageMessage: { ...mediaFields(bytes), mimetype: "image/jpeg", caption: "look at this" } });
  const { handler } = handlerWith({ [msg.key.id]: bytes });
  const json = await single(handler, msg, "media_message_image");
  assert.equal(json.mediaMessage.mediaKind, "MEDIA_KIND_IMAGE");
  assert.equal(json.mediaMessage.message, "look at this");
  assert.equal(json.mediaMessage.mimeType, "image/jpeg");
  await assertStaged(json, bytes);
});

for (const animated of [false, true]) {
  test(`a ${animated ? "animated" : "static"} sticker is a sticker, not an image`, async () => {
    const bytes = randomBytes(3000);
    const msg = waMessage(
      { stickerMessage: { ...mediaFields(bytes), mimetype: "image/webp", isAnimated: animated } },
      { group: GROUP },
    );
    const { handler } = handlerWith({ [msg.key.id]: bytes });
    const json = await single(handler, msg, "media_message_sticker");
    assert.equal(json.mediaMessage.mediaKind, "MEDIA_KIND_STICKER");
    assert.equal(json.mediaMessage.mimeType, "image/webp");
    await assertStaged(json, bytes);
  });
}

test("a voice note (ptt) keeps its full MIME type with parameters", async () => {
  const bytes = randomBytes(8842);
  const msg = waMessage({ audioMessage: { ...mediaFields(bytes), mimetype: "audio/ogg; codecs=opus", ptt: true, seconds: 4 } });
  const { handler } = handlerWith({ [msg.key.id]: bytes });
  const json = await single(handler, msg, "media_message_voice_note");
  assert.equal(json.mediaMessage.mediaKind, "MEDIA_KIND_VOICE_NOTE");
  assert.equal(json.mediaMessage.mimeType, "audio/ogg; codecs=opus");
  assert.equal(baseMime(json.mediaMessage.mimeType), "audio/ogg");
  await assertStaged(json, bytes);
});

test("an audio file without ptt is audio", async () => {
  const bytes = randomBytes(5000);
  const msg = waMessage({ audioMessage: { ...mediaFields(bytes), mimetype: "audio/mpeg", ptt: false } });
  const { handler } = handlerWith({ [msg.key.id]: bytes });
  const json = await single(handler, msg, "media_message_voice_note");
  assert.equal(json.mediaMessage.mediaKind, "MEDIA_KIND_AUDIO");
  await assertStaged(json, bytes);
});

for (const [name, content, kind] of [
  ["a video", (f) => ({ videoMessage: { ...f, mimetype: "video/mp4", caption: "party!" } }), "MEDIA_KIND_VIDEO"],
  ["a GIF (gifPlayback)", (f) => ({ videoMessage: { ...f, mimetype: "video/mp4", gifPlayback: true } }), "MEDIA_KIND_GIF"],
  ["a round video note (ptv)", (f) => ({ ptvMessage: { ...f, mimetype: "video/mp4" } }), "MEDIA_KIND_VIDEO_NOTE"],
]) {
  test(`${name} is classified from its message type`, async () => {
    const bytes = randomBytes(7000);
    const msg = waMessage(content(mediaFields(bytes)));
    const { handler } = handlerWith({ [msg.key.id]: bytes });
    const json = await single(handler, msg, "media_message_image");
    assert.equal(json.mediaMessage.mediaKind, kind);
    assert.equal(json.mediaMessage.mimeType, "video/mp4");
    await assertStaged(json, bytes);
  });
}

test("a document with caption is unwrapped and keeps its file name", async () => {
  const bytes = randomBytes(12_000);
  const msg = waMessage({
    documentWithCaptionMessage: {
      message: {
        documentMessage: {
          ...mediaFields(bytes, { fileLength: String(bytes.length) }),
          mimetype: "application/pdf",
          fileName: "contract.pdf",
          caption: "the contract",
        },
      },
    },
  });
  const { handler } = handlerWith({ [msg.key.id]: bytes });
  const json = await single(handler, msg, "media_message_document_snake_case");
  assert.equal(json.mediaMessage.mediaKind, "MEDIA_KIND_DOCUMENT");
  assert.equal(json.mediaMessage.originalFilename, "contract.pdf");
  assert.equal(json.mediaMessage.message, "the contract");
  await assertStaged(json, bytes);
});

test("view-once and ephemeral wrapped media are unwrapped before classifying", async () => {
  const img = randomBytes(2000);
  const vid = randomBytes(4000);
  const viewOnce = waMessage({
    viewOnceMessageV2: { message: { imageMessage: { ...mediaFields(img), mimetype: "image/jpeg", caption: "once", viewOnce: true } } },
  });
  const ephemeral = waMessage({
    ephemeralMessage: { message: { videoMessage: { ...mediaFields(vid), mimetype: "video/mp4", caption: "brief" } } },
  });
  const nested = waMessage({
    ephemeralMessage: { message: { viewOnceMessage: { message: { audioMessage: { ...mediaFields(vid), mimetype: "audio/ogg; codecs=opus", ptt: true } } } } },
  });
  const { handler } = handlerWith({ [viewOnce.key.id]: img, [ephemeral.key.id]: vid, [nested.key.id]: vid });
  const frames = await handler.handleUpsert(BOT, { type: "notify", messages: [viewOnce, ephemeral, nested] });
  assert.equal(frames.length, 3);
  const byId = Object.fromEntries(frames.map((f) => {
    const json = assertMatchesGolden(f, "media_message_image");
    return [json.mediaMessage.header.providerMessageId, json.mediaMessage];
  }));
  assert.equal(byId[viewOnce.key.id].mediaKind, "MEDIA_KIND_IMAGE");
  assert.equal(byId[viewOnce.key.id].message, "once");
  assert.equal(byId[ephemeral.key.id].mediaKind, "MEDIA_KIND_VIDEO");
  assert.equal(byId[ephemeral.key.id].message, "brief");
  assert.equal(byId[nested.key.id].mediaKind, "MEDIA_KIND_VOICE_NOTE");
  assert.equal((await stagedFiles()).length, 3);
});

test("a decryption stub is not forwarded and does not mark the id as seen", async () => {
  const id = nextId();
  const stub = { ...waMessage(undefined, { id }), messageStubType: 2, messageStubParameters: ["Bad MAC"] };
  delete stub.message;
  const { handler } = handlerWith({});
  assert.deepEqual(await handler.handleUpsert(BOT, { type: "notify", messages: [stub] }), []);
  assert.equal(sink.length, 0);
  // Without a pending-stub store (see undecryptable.test.js) the stub is counted.
  assert.equal(handler.drops.get("undecryptable"), 1);
  // The real content arrives later under the same id and goes through.
  const real = waMessage({ conversation: "decrypted at last" }, { id });
  const json = await single(handler, real, "text_message", "append");
  assert.equal(json.textMessage.message, "decrypted at last");
});

test("a message seen once is not handled twice (notify then append)", async () => {
  const bytes = randomBytes(1000);
  const msg = waMessage({ imageMessage: { ...mediaFields(bytes), mimetype: "image/png" } });
  const { handler, downloader } = handlerWith({ [msg.key.id]: bytes });
  await handler.handleUpsert(BOT, { type: "notify", messages: [msg] });
  await handler.handleUpsert(BOT, { type: "append", messages: [msg] });
  assert.equal(sink.length, 1);
  assert.equal(downloader.calls.length, 1);
});

test("upserts of other types, own echoes and status broadcasts are not forwarded, and counted", async () => {
  const sent = new Set();
  const sentIds = { has: (botId, id) => sent.has(`${botId}/${id}`) };
  const { handler } = handlerWith({}, { sentIds });
  await handler.handleUpsert(BOT, { type: "history", messages: [waMessage({ conversation: "old" })] });
  const echo = waMessage({ conversation: "me" }, { fromMe: true });
  sent.add(`${BOT}/${echo.key.id}`);
  await handler.handleUpsert(BOT, { type: "notify", messages: [echo] });
  const status = waMessage({ conversation: "story" });
  status.key.remoteJid = "status@broadcast";
  const ownReaction = waMessage({ reactionMessage: { text: "👍" } }, { fromMe: true });
  sent.add(`${BOT}/${ownReaction.key.id}`);
  await handler.handleUpsert(BOT, { type: "notify", messages: [status, ownReaction] });
  assert.equal(sink.length, 0);
  assert.equal(handler.drops.get("own_echo"), 2);
  assert.equal(handler.drops.get("status_broadcast"), 1);
  assert.match(handler.drops.render(), /^node_messages_dropped_total\{reason="own_echo"\} 2$/m);
});

test("a message the owner typed on the phone reaches the bot marked from_owner", async () => {
  const { handler } = handlerWith({}, { sentIds: { has: () => false }, meIdOf: () => BOT });
  const typed = waMessage({ conversation: "I'll take it from here" }, { fromMe: true });
  const json = await single(handler, typed, "text_message");
  assert.equal(json.textMessage.header.correspondentId, CHAT);
  assert.equal(json.textMessage.header.sender, BOT);
  assert.equal(json.textMessage.header.context.fromOwner, true);
  assert.equal(json.textMessage.header.context.senderName, undefined);
});

test("owner messages are dropped and counted when the bot's setting turns them off", async () => {
  const { handler } = handlerWith({}, { configOf: () => ({ owner_messages: false }) });
  await handler.handleUpsert(BOT, { type: "notify", messages: [waMessage({ conversation: "typed" }, { fromMe: true })] });
  assert.equal(sink.length, 0);
  assert.equal(handler.drops.get("owner_messages_off"), 1);
});

test("an edit references the original message instead of arriving as a new text", async () => {
  const { handler } = handlerWith({});
  const msg = waMessage({
    editedMessage: { message: { protocolMessage: { type: 14, key: { id: "ORIG" }, editedMessage: { conversation: "fixed typo" } } } },
  });
  const json = await single(handler, msg, "structured_edit");
  assert.deepEqual(json.structuredMessage.details, { edit: { targetMessageId: "ORIG", text: "fixed typo", decrypted: true } });
  assert.equal(json.structuredMessage.header.providerMessageId, msg.key.id);
});

test("a download failure gives a corrupt-media frame and leaves no file", async () => {
  const bytes = randomBytes(3000);
  const msg = waMessage({ videoMessage: { ...mediaFields(bytes), mimetype: "video/mp4", caption: "party!" } });
  const { handler } = handlerWith({ [msg.key.id]: { failMidStream: bytes } });
  const json = await single(handler, msg, "corrupt_media_message");
  assert.equal(json.corruptMediaMessage.mediaKind, "MEDIA_KIND_VIDEO");
  assert.equal(json.corruptMediaMessage.message, "party!");
  assert.match(json.corruptMediaMessage.reason, /^download failed: bad decrypt/);
  assert.deepEqual(await stagedFiles(), []);
});

test("an expired URL is re-uploaded once and then succeeds", async () => {
  const bytes = randomBytes(6000);
  const msg = waMessage({ imageMessage: { ...mediaFields(bytes), mimetype: "image/jpeg" } });
  const { handler, downloader, reuploads } = handlerWith({ [msg.key.id]: { expiredUntilReupload: bytes } });
  const json = await single(handler, msg, "media_message_image");
  assert.deepEqual(reuploads, [{ botId: BOT, id: msg.key.id }]);
  assert.equal(downloader.calls.length, 2);
  await assertStaged(json, bytes);
});

test("an expired URL whose re-upload request hangs gives up after its own timeout", async () => {
  const bytes = randomBytes(600);
  const msg = waMessage({ imageMessage: { ...mediaFields(bytes), mimetype: "image/jpeg" } });
  const { handler } = handlerWith({ [msg.key.id]: { expiredUntilReupload: bytes } }, {
    reupload: () => new Promise(() => {}),
    reuploadTimeoutMs: 50,
  });
  const json = await single(handler, msg, "corrupt_media_message");
  assert.equal(json.corruptMediaMessage.reason, "download failed: HTTP 410; re-upload failed: re-upload request timed out after 50 ms");
  assert.deepEqual(await stagedFiles(), []);
});

test("an over-quota bot gets a quota-exceeded frame and nothing is written", async () => {
  await writeFile(join(staging, "0f8fad5b-d9cb-469f-a165-70867728950e"), randomBytes(2048));
  const bytes = randomBytes(1000);
  const msg = waMessage({
    documentMessage: { ...mediaFields(bytes), mimetype: "application/zip", fileName: "backup.zip" },
  });
  const quotaGb = 1024 / 1024 ** 3; // 1 KiB
  const { handler, downloader } = handlerWith({ [msg.key.id]: bytes }, { quotaGbFor: () => quotaGb });
  const json = await single(handler, msg, "quota_exceeded_media_message");
  assert.equal(json.quotaExceededMediaMessage.usedBytes, "2048");
  assert.equal(json.quotaExceededMediaMessage.quotaBytes, "1024");
  assert.equal(json.quotaExceededMediaMessage.originalFilename, "backup.zip");
  assert.equal(downloader.calls.length, 0);
  assert.deepEqual(await stagedFiles(), ["0f8fad5b-d9cb-469f-a165-70867728950e"]);
});

test("a hash mismatch gives a corrupt-media frame and leaves no file", async () => {
  const bytes = randomBytes(4000);
  const msg = waMessage({ imageMessage: { ...mediaFields(bytes), mimetype: "image/jpeg" } });
  const tampered = Buffer.from(bytes);
  tampered[100] ^= 0xff;
  const { handler } = handlerWith({ [msg.key.id]: tampered });
  const json = await single(handler, msg, "corrupt_media_message");
  assert.equal(json.corruptMediaMessage.reason, "hash mismatch: downloaded bytes do not match fileSha256");
  assert.deepEqual(await stagedFiles(), []);
});

test("media over the byte cap is refused whatever fileLength claims", async () => {
  const bytes = randomBytes(5000);
  const msg = waMessage({ imageMessage: { ...mediaFields(bytes, { fileLength: 10 }), mimetype: "image/jpeg" } });
  const { handler } = handlerWith({ [msg.key.id]: bytes }, { maxMediaBytes: 4096 });
  const json = await single(handler, msg, "corrupt_media_message");
  assert.equal(json.corruptMediaMessage.reason, "download failed: media larger than the 4096 bytes allowed");
  assert.deepEqual(await stagedFiles(), []);
});

test("a download that stalls is cut off by the wall-clock timeout", async () => {
  const msg = waMessage({ imageMessage: { ...mediaFields(Buffer.from("x")), mimetype: "image/jpeg" } });
  const { handler } = handlerWith({}, { download: async () => new (await import("node:stream")).PassThrough(), downloadTimeoutMs: 50 });
  const json = await single(handler, msg, "corrupt_media_message");
  assert.equal(json.corruptMediaMessage.reason, "download failed: download timed out after 50 ms");
  assert.deepEqual(await stagedFiles(), []);
});

test("a text after a slow media message is not held back by the download", async () => {
  const bytes = randomBytes(1000);
  const media = waMessage({ audioMessage: { ...mediaFields(bytes), mimetype: "audio/ogg; codecs=opus", ptt: true } });
  const text = waMessage({ conversation: "and also" });
  let release;
  const gate = new Promise((resolve) => { release = resolve; });
  const { handler } = handlerWith({}, {
    download: async () => {
      await gate;
      return (await import("node:stream")).Readable.from([bytes]);
    },
  });
  const done = handler.handleUpsert(BOT, { type: "notify", messages: [media, text] });
  // The text goes out while the media's download is still held.
  await waitUntil(() => sink.length >= 1, "the text forwarded");
  assert.equal(sink.length, 1);
  assert.equal(sink[0].frame.payload.case, "textMessage");
  release();
  await done;
  assert.deepEqual(sink.map((s) => s.frame.payload.case), ["textMessage", "mediaMessage"]);
  assert.equal(sink[0].chatKey, sink[1].chatKey);
});

test("fileLength is read as an untrusted number, string or Long", () => {
  assert.equal(untrustedCount(12), 12);
  assert.equal(untrustedCount("12"), 12);
  assert.equal(untrustedCount({ low: 5, high: 1, unsigned: true }), 2 ** 32 + 5);
  assert.equal(untrustedCount({ low: 5, high: -1, unsigned: false }), undefined);
  assert.equal(untrustedCount("12; rm -rf"), undefined);
  assert.equal(untrustedCount(-3), undefined);
  assert.equal(untrustedCount(null), undefined);
});

test("one chat's texts enter the sink in order without waiting for each other's durability; each upsert resolves only once its frame is durable", async () => {
  // A sink that makes frames durable only when told, as the outbox's group commit does.
  const durable = [];
  const { handler } = handlerWith({}, {
    frameSink: (frame, chatKey) => {
      sink.push({ frame, chatKey });
      return new Promise((resolve) => durable.push(resolve));
    },
  });
  const texts = ["one", "two", "three"].map((text) => waMessage({ conversation: text }));
  let resolved = 0;
  const upserts = texts.map((msg) =>
    handler.handleUpsert(BOT, { type: "notify", messages: [msg] }).then((frames) => {
      resolved += 1;
      return frames;
    }),
  );
  await waitUntil(() => sink.length === 3, "all three frames in the sink before any is durable");
  assert.deepEqual(sink.map((s) => s.frame.payload.value.message), ["one", "two", "three"]);
  assert.equal(resolved, 0, "nothing reported handled before it is durable");
  durable[0]();
  await upserts[0];
  assert.equal(resolved, 1);
  for (const resolve of durable.slice(1)) resolve();
  const frames = await Promise.all(upserts);
  assert.deepEqual(frames.map((f) => f[0].payload.value.message), ["one", "two", "three"]);
});
