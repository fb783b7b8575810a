// Every WhatsApp message type that is neither text nor media, built with Baileys' own
// `proto` classes and driven through the real handler: each yields exactly the frame of
// its golden fixture (tests/fixtures/wire/valid/structured_*.json, read by the Python
// pipeline test too), including a poll vote encrypted the way WhatsApp does it and
// decrypted against the poll creation message stored on disk.
import { test, beforeEach, afterEach } from "node:test";
import assert from "node:assert/strict";
import { mkdir, mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { proto } from "baileys";
import { createMessageHandler } from "../src/handler.js";
import { createMemoryLogger } from "../src/logger.js";
import { encryptPollVote as encryptVote } from "../src/poll_crypto.js";
import { PollStore } from "../src/poll_store.js";
import { LIMITS, parseVcard } from "../src/structured.js";
import { encodeNodeFrame, parseNodeFrame, toJson, NodeFrameSchema } from "../src/wire.js";
import { CHAT, MEMBER, fakeDownloader, mediaFields, waMessage } from "./helpers/baileys_shapes.js";
import { golden } from "./helpers/golden.js";

const BOT = "4915000000000@s.whatsapp.net";
const Type = proto.Message.ProtocolMessage.Type;

let dir;
let sink;
let logs;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "structured-"));
  await mkdir(join(dir, "staging"));
  sink = [];
  logs = createMemoryLogger();
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

function handlerWith(polls, overrides = {}) {
  return createMessageHandler({
    stagingDir: join(dir, "staging"),
    download: async () => {
      throw new Error("no media in these tests");
    },
    quotaGbFor: () => 1,
    frameSink: async (frame) => {
      sink.push(frame);
    },
    logger: logs.logger,
    polls,
    meIdOf: () => BOT,
    ...overrides,
  });
}

async function pollStore(maxPolls = 100) {
  return new PollStore({ dir: join(dir, "polls"), maxPolls, logger: logs.logger }).open();
}

/** A Baileys WAMessage whose content is a real `proto.Message`. */
function baileys(content, id) {
  return waMessage(proto.Message.fromObject(content), { id });
}

/** The frame's canonical JSON, after the gateway's strict parser accepted it. */
function wireJson(frame) {
  return toJson(NodeFrameSchema, parseNodeFrame(encodeNodeFrame(frame)));
}

/** Asserts the frame equals its golden fixture (frame id and time are per run). */
function assertGolden(frame, name, { senderName = "Alice" } = {}) {
  const json = wireJson(frame);
  const expected = structuredClone(golden(name));
  const payload = Object.keys(expected).find((k) => k !== "frameId");
  expected.frameId = json.frameId;
  expected[payload].header.originatingTime = json[payload].header.originatingTime;
  // The goldens predate the context; it is checked here (and by its own fixtures).
  if (!expected[payload].header.context) {
    const phone = CHAT.split("@")[0];
    assert.deepEqual(json[payload].header.context, {
      chatKind: "CHAT_KIND_DIRECT",
      correspondentIdKind: "ID_KIND_PHONE",
      correspondentPhone: phone,
      senderIdKind: "ID_KIND_PHONE",
      senderPhone: phone,
      ...(senderName ? { senderName } : {}),
    });
    expected[payload].header.context = json[payload].header.context;
  }
  assert.deepEqual(json, expected);
  return json;
}

async function single(handler, msg, name) {
  const frames = await handler.handleUpsert(BOT, { type: "notify", messages: [msg] });
  assert.equal(frames.length, 1, "expected exactly one frame");
  return assertGolden(frames[0], name);
}

function pid(name) {
  return golden(name).structuredMessage?.header.providerMessageId ?? golden(name).textMessage.header.providerMessageId;
}

const vcard = (name, lines) => ["BEGIN:VCARD", "VERSION:3.0", `FN:${name}`, ...lines, "END:VCARD"].join("\n");

// fixture name → the WhatsApp content that must produce it
const CASES = {
  structured_location: {
    locationMessage: { degreesLatitude: 52.516275, degreesLongitude: 13.377704, name: "Brandenburger Tor", address: "Pariser Platz, 10117 Berlin" },
  },
  structured_live_location: {
    liveLocationMessage: { degreesLatitude: 48.137154, degreesLongitude: 11.576124, caption: "on my way", sequenceNumber: 3 },
  },
  structured_location_out_of_range: { locationMessage: { degreesLatitude: 123.5, degreesLongitude: -200.25, name: "Nowhere" } },
  structured_contact: {
    contactMessage: {
      displayName: "Anna Schmidt",
      vcard: vcard("Anna Schmidt", ["item1.TEL;type=CELL;waid=4915112345678:+49 151 12345678", "item1.X-ABLabel:Mobile"]),
    },
  },
  structured_contacts_array: {
    contactsArrayMessage: {
      displayName: "2 contacts",
      contacts: [
        { displayName: "Ben Weber", vcard: vcard("Ben Weber", ["TEL;type=WORK:+49 30 1234567", "TEL;type=CELL:+49 160 7654321"]) },
        // No displayName: the vCard's FN is used.
        { vcard: vcard("Cleo", ["item1.TEL;waid=33612345678:+33 6 12 34 56 78"]) },
      ],
    },
  },
  structured_contact_huge_vcard: {
    contactMessage: {
      displayName: "Spam Card",
      vcard: vcard("Spam Card", [...Array.from({ length: 8 }, (_, i) => `TEL:+1 555 010${i}`), `NOTE:${"x".repeat(1024 * 1024)}`]),
    },
  },
  structured_poll: {
    pollCreationMessageV3: { name: "Lunch?", options: [{ optionName: "Pizza" }, { optionName: "Sushi" }, { optionName: "Salad" }], selectableOptionsCount: 1 },
    messageContextInfo: { messageSecret: randomBytes(32) },
  },
  structured_poll_huge: {
    pollCreationMessage: { name: "Pick one", options: Array.from({ length: 10_000 }, (_, i) => ({ optionName: `Option ${i + 1}` })) },
    messageContextInfo: { messageSecret: randomBytes(32) },
  },
  structured_reaction: { reactionMessage: { key: { remoteJid: CHAT, fromMe: true, id: "3EB0TARGET0000000001" }, text: "👍" } },
  structured_reaction_removed: { reactionMessage: { key: { remoteJid: CHAT, fromMe: true, id: "3EB0TARGET0000000001" }, text: "" } },
  structured_reaction_unknown_target: { reactionMessage: { text: "❤️" } },
  structured_event: {
    eventMessage: {
      name: "Team dinner",
      description: "Bring friends",
      startTime: Date.parse(golden("structured_event").structuredMessage.details.event.startTime) / 1000,
      endTime: Date.parse(golden("structured_event").structuredMessage.details.event.endTime) / 1000,
      location: { degreesLatitude: 52.5, degreesLongitude: 13.4, name: "Trattoria Roma" },
    },
  },
  structured_button_reply: { buttonsResponseMessage: { selectedButtonId: "opt-yes", selectedDisplayText: "Yes, please", type: 1 } },
  structured_list_reply: { listResponseMessage: { title: "Medium size", listType: 1, singleSelectReply: { selectedRowId: "row-2" } } },
  structured_template_reply: { templateButtonReplyMessage: { selectedId: "track", selectedDisplayText: "Track my order", selectedIndex: 0 } },
  structured_interactive_reply: {
    interactiveResponseMessage: {
      body: { text: "Pro plan" },
      nativeFlowResponseMessage: { name: "menu_options", paramsJson: JSON.stringify({ id: "plan-pro" }), version: 1 },
    },
  },
  structured_group_invite: {
    groupInviteMessage: { groupJid: "120363025246125888@g.us", inviteCode: "AbCdEf123456", groupName: "Book club", caption: "Join us!" },
  },
  structured_edit: {
    // As WhatsApp sends it: the edit wrapped in editedMessage around a protocol message.
    editedMessage: {
      message: {
        protocolMessage: {
          type: Type.MESSAGE_EDIT,
          key: { remoteJid: CHAT, fromMe: false, id: "3EB0ORIGINAL00000001" },
          editedMessage: { conversation: "fixed typo" },
        },
      },
    },
  },
  structured_deletion: { protocolMessage: { type: Type.REVOKE, key: { remoteJid: CHAT, fromMe: false, id: "3EB0ORIGINAL00000001" } } },
  structured_unsupported: { pinInChatMessage: { key: { remoteJid: CHAT, id: "3EB0ORIGINAL00000001" }, type: 1 } },
  structured_location_reply: {
    locationMessage: {
      degreesLatitude: 52.52,
      degreesLongitude: 13.405,
      contextInfo: { stanzaId: "3EB0QUOTED0000000001", quotedMessage: { conversation: "Where are you?" } },
    },
  },
  text_message_reply: {
    extendedTextMessage: {
      text: "Yes!",
      contextInfo: {
        stanzaId: "3EB0QUOTED0000000002",
        quotedMessage: { extendedTextMessage: { text: `Are you coming tonight? ${"x".repeat(5000)}` } },
      },
    },
  },
};

for (const [name, content] of Object.entries(CASES)) {
  test(`${name}: Baileys message → the golden frame`, async () => {
    const handler = handlerWith(await pollStore());
    await single(handler, baileys(content, pid(name)), name);
    assert.equal(sink.length, 1);
  });
}

function voteMessage(pollId, vote, id) {
  return baileys(
    {
      pollUpdateMessage: {
        pollCreationMessageKey: { remoteJid: CHAT, fromMe: false, id: pollId },
        vote,
        senderTimestampMs: Date.now(),
      },
    },
    id,
  );
}

test("a poll vote is decrypted end to end against the poll stored on disk, across a restart", async () => {
  const pollId = pid("structured_poll");
  const poll = baileys(CASES.structured_poll, pollId);
  await single(handlerWith(await pollStore()), poll, "structured_poll");
  assert.equal((await readdir(join(dir, "polls"))).length, 1, "the creation message is on disk");

  // A new process: a fresh store and handler read the poll back from the directory.
  sink = [];
  const handler = handlerWith(await pollStore());
  const vote = encryptVote({
    optionNames: ["Sushi"],
    pollMsgId: pollId,
    pollCreatorJid: CHAT,
    voterJid: CHAT,
    encKey: CASES.structured_poll.messageContextInfo.messageSecret,
  });
  await single(handler, voteMessage(pollId, vote, pid("structured_poll_vote")), "structured_poll_vote");
});

test("a vote on an unknown poll, or one that does not decrypt, is marked, not dropped", async () => {
  const handler = handlerWith(await pollStore());
  const vote = { encPayload: randomBytes(40), encIv: randomBytes(12) };
  const unknownPoll = golden("structured_poll_vote_unknown_poll").structuredMessage.details.pollVote.pollMessageId;
  await single(handler, voteMessage(unknownPoll, vote, pid("structured_poll_vote_unknown_poll")), "structured_poll_vote_unknown_poll");

  // The poll is known but the vote was encrypted with another key: decrypted is false.
  sink = [];
  const pollId = pid("structured_poll");
  await handler.handleUpsert(BOT, { type: "notify", messages: [baileys(CASES.structured_poll, pollId)] });
  const forged = encryptVote({ optionNames: ["Pizza"], pollMsgId: pollId, pollCreatorJid: CHAT, voterJid: CHAT, encKey: randomBytes(32) });
  const [frame] = await handler.handleUpsert(BOT, { type: "notify", messages: [voteMessage(pollId, forged, "3EB0VOTFORGED0000001")] });
  const json = wireJson(frame);
  assert.deepEqual(json.structuredMessage.details, { pollVote: { pollMessageId: pollId } });
  assert.ok(logs.records.some((r) => r.msg === "poll vote could not be decrypted"));
});

test("a poll this system sent is stored (not forwarded) so votes on it decrypt", async () => {
  const handler = handlerWith(await pollStore(), { sentIds: { has: (botId, id) => id === "3EB0OWNPOLL000000001" } });
  const secret = randomBytes(32);
  const own = waMessage(
    proto.Message.fromObject({
      pollCreationMessage: { name: "Lunch?", options: [{ optionName: "Pizza" }, { optionName: "Sushi" }] },
      messageContextInfo: { messageSecret: secret },
    }),
    { id: "3EB0OWNPOLL000000001", fromMe: true },
  );
  assert.deepEqual(await handler.handleUpsert(BOT, { type: "notify", messages: [own] }), []);
  const vote = encryptVote({ optionNames: ["Pizza", "Sushi"], pollMsgId: own.key.id, pollCreatorJid: BOT, voterJid: CHAT, encKey: secret });
  const [frame] = await handler.handleUpsert(BOT, { type: "notify", messages: [voteMessage(own.key.id, vote, "3EB0VOTOWN0000000001")] });
  const vote2 = wireJson(frame).structuredMessage.details.pollVote;
  assert.deepEqual(vote2.selectedOptions, [{ name: "Pizza" }, { name: "Sushi" }]);
  assert.equal(vote2.decrypted, true);
});

test("the poll store keeps at most maxPolls creation messages, least recently used out first", async () => {
  const store = await pollStore(2);
  const poll = { creatorJid: CHAT, encKey: randomBytes(32), question: "Q", options: ["a"], selectableCount: 0 };
  await store.put(BOT, CHAT, "P1", poll);
  await store.put(BOT, CHAT, "P2", poll);
  assert.ok(await store.get(BOT, CHAT, "P1")); // P1 is now the most recently used
  await store.put(BOT, CHAT, "P3", poll);
  assert.equal(await store.get(BOT, CHAT, "P2"), undefined);
  assert.ok(await store.get(BOT, CHAT, "P1"));
  assert.ok(await store.get(BOT, CHAT, "P3"));
  assert.equal((await readdir(join(dir, "polls"))).length, 2);
  // Another process sees the same bound from disk.
  const reopened = await new PollStore({ dir: join(dir, "polls"), maxPolls: 1, logger: logs.logger }).open();
  assert.equal(reopened.size, 1);
});

test("messages.reaction and the upsert carrying the same reaction give one frame", async () => {
  const handler = handlerWith(await pollStore());
  const key = { remoteJid: CHAT, fromMe: false, id: pid("structured_reaction") };
  const target = { remoteJid: CHAT, fromMe: true, id: "3EB0TARGET0000000001" };
  const frames = await handler.handleReactions(BOT, [{ key: target, reaction: { key, text: "👍", senderTimestampMs: Date.now() } }]);
  assert.equal(frames.length, 1);
  // messages.reaction carries no push name.
  assertGolden(frames[0], "structured_reaction", { senderName: "" });
  const again = await handler.handleUpsert(BOT, { type: "notify", messages: [baileys(CASES.structured_reaction, key.id)] });
  assert.deepEqual(again, []);
  assert.equal(sink.length, 1);
});

test("hostile contact cards are bounded: count, numbers, size and lines", () => {
  const many = Array.from({ length: 2000 }, (_, i) => `TEL:+1 555 ${String(i).padStart(4, "0")}`);
  const card = parseVcard(vcard("Many", many), "");
  assert.equal(card.displayName, "Many");
  assert.equal(card.phoneNumbers.length, LIMITS.maxPhones);
  assert.equal(card.vcardTruncated, true);
  const garbage = parseVcard("\u0000:::;;;\n".repeat(100_000), "x".repeat(10_000));
  assert.equal(Array.from(garbage.displayName).length, 256);
  assert.equal(garbage.vcardTruncated, true);
  assert.deepEqual(parseVcard(undefined, undefined), { displayName: "", phoneNumbers: [], omittedPhoneCount: 0, vcardTruncated: false });
});

test("a list of 500 contact cards is cut to ten and counted", async () => {
  const handler = handlerWith(await pollStore());
  const contacts = Array.from({ length: 500 }, (_, i) => ({ displayName: `C${i}`, vcard: vcard(`C${i}`, [`TEL:+${i}`]) }));
  const [frame] = await handler.handleUpsert(BOT, { type: "notify", messages: [baileys({ contactsArrayMessage: { contacts } }, "3EB0CONMANY000000001")] });
  const json = wireJson(frame).structuredMessage.details.contacts;
  assert.equal(json.contacts.length, LIMITS.maxContacts);
  assert.equal(json.omittedContactCount, 490);
});

test("housekeeping is not forwarded; an unknown type's name is sanitized", async () => {
  const handler = handlerWith(await pollStore());
  const housekeeping = [
    baileys({ protocolMessage: { type: Type.HISTORY_SYNC_NOTIFICATION } }, "3EB0HK00000000000001"),
    baileys({ senderKeyDistributionMessage: { groupId: "g" } }, "3EB0HK00000000000002"),
  ];
  assert.deepEqual(await handler.handleUpsert(BOT, { type: "notify", messages: housekeeping }), []);
  assert.equal(handler.drops.get("protocol_message"), 1);
  assert.equal(handler.drops.get("housekeeping"), 1);
  // The disappearing-message timer is the chat's setting the bot is told about.
  const timer = baileys({ protocolMessage: { type: Type.EPHEMERAL_SETTING, ephemeralExpiration: 86400 } }, "3EB0HK00000000000004");
  const [timerFrame] = await handler.handleUpsert(BOT, { type: "notify", messages: [timer] });
  assert.deepEqual(wireJson(timerFrame).structuredMessage.details, { disappearingTimer: { expirationSeconds: 86400 } });
  // A future type Baileys does not know yet arrives as a plain object key.
  const weird = waMessage({ "future<script>Message": { x: 1 } }, { id: "3EB0HK00000000000003" });
  const [frame] = await handler.handleUpsert(BOT, { type: "notify", messages: [weird] });
  assert.deepEqual(wireJson(frame).structuredMessage.details, { unsupported: { messageType: "futurescriptMessage" } });
});

test("media that replies to a message carries the reply context too", async () => {
  const expected = golden("media_message_image_reply").mediaMessage;
  const bytes = randomBytes(Number(expected.fileSize));
  const id = expected.header.providerMessageId;
  const handler = handlerWith(await pollStore(), { download: fakeDownloader({ [id]: bytes }).download });
  const msg = baileys(
    {
      imageMessage: {
        ...mediaFields(bytes),
        mimetype: "image/jpeg",
        caption: "this one?",
        contextInfo: { stanzaId: "3EB0QUOTED0000000003", participant: MEMBER, quotedMessage: { imageMessage: { caption: "Which photo do you mean?" } } },
      },
    },
    id,
  );
  const [frame] = await handler.handleUpsert(BOT, { type: "notify", messages: [msg] });
  const json = wireJson(frame).mediaMessage;
  assert.deepEqual({ ...json, mediaProcessingId: undefined, header: undefined }, { ...expected, mediaProcessingId: undefined, header: undefined });
  // A quote of a failed download is kept on the corrupt-media frame as well.
  const broken = baileys({ imageMessage: { ...mediaFields(bytes), mimetype: "image/jpeg", contextInfo: msg.message.imageMessage.contextInfo } }, "3EB0IMGBROKEN0000001");
  const [corrupt] = await handler.handleUpsert(BOT, { type: "notify", messages: [broken] });
  assert.deepEqual(wireJson(corrupt).corruptMediaMessage.replyTo, expected.replyTo);
});
