// One person, one correspondent: the handler names a person by the LID whenever it is
// known (from the key, from Baileys' lid-mapping store, or from an earlier message),
// carries the phone number beside it, reports the pairs it learns, and never crashes on a
// missing or broken store.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createMessageHandler } from "../src/handler.js";
import { createMemoryLogger } from "../src/logger.js";
import { NodeFrameSchema, encodeNodeFrame, parseNodeFrame, toJson } from "../src/wire.js";
import { nowSeconds } from "./helpers/clock.js";

const BOT = "bot-identity";
const LID = "210000000000001@lid";
const PN = "4915112345678@s.whatsapp.net";
const PHONE = "4915112345678";
const GROUP = "120363000000000777@g.us";

async function harness(t, overrides = {}) {
  const dir = await mkdtemp(join(tmpdir(), "identity-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const sink = [];
  const { logger, records } = createMemoryLogger();
  const handler = createMessageHandler({
    stagingDir: dir,
    download: async () => {
      throw new Error("no media here");
    },
    quotaGbFor: () => 1,
    frameSink: async (frame, chatKey) => {
      sink.push({ json: toJson(NodeFrameSchema, parseNodeFrame(encodeNodeFrame(frame))), chatKey });
    },
    logger,
    ...overrides,
  });
  const data = () => sink.filter((f) => !f.json.identityMappings);
  const mappings = () => sink.filter((f) => f.json.identityMappings).flatMap((f) => f.json.identityMappings.mappings);
  return { handler, sink, data, mappings, records };
}

let n = 0;
function text(key, body, pushName = "Ana") {
  n += 1;
  return { key: { fromMe: false, id: `ID${String(n).padStart(6, "0")}`, ...key }, messageTimestamp: nowSeconds(-5), pushName, message: { conversation: body } };
}

test("messages arriving alternately by phone JID and by LID reach the bot as one correspondent, in order, with the phone number", async (t) => {
  const { handler, data, mappings } = await harness(t);
  const upserts = [
    text({ remoteJid: PN }, "1 phone only, before anything is known"),
    text({ remoteJid: LID, remoteJidAlt: PN, addressingMode: "lid" }, "2 LID first"),
    text({ remoteJid: PN, remoteJidAlt: LID, addressingMode: "pn" }, "3 phone first"),
    text({ remoteJid: PN }, "4 phone only, after the pair is known"),
    text({ remoteJid: `${PHONE}:12@s.whatsapp.net` }, "5 phone with a device suffix"),
    text({ remoteJid: LID }, "6 LID only"),
  ];
  for (const msg of upserts) await handler.handleUpsert(BOT, { type: "notify", messages: [msg] });
  const frames = data();
  assert.deepEqual(frames.map((f) => f.json.textMessage.message), upserts.map((m) => m.message.conversation));
  // Before the pair is known the only id is the phone JID; from then on it is the LID.
  assert.deepEqual(frames.map((f) => f.json.textMessage.header.correspondentId), [PN, LID, LID, LID, LID, LID]);
  for (const f of frames) assert.equal(f.json.textMessage.header.context.correspondentPhone, PHONE);
  assert.deepEqual(frames.slice(1).map((f) => f.chatKey), Array(5).fill(`${BOT}\u0000${LID}`), "one queue key once the LID is known");
  assert.deepEqual(mappings(), [{ lid: LID, phoneJid: PN }], "the pair is reported once");
});

test("a phone-only key is named by the LID Baileys' lid-mapping store knows; a broken store costs nothing", async (t) => {
  const store = { getLIDForPN: async (pn) => (pn === PN ? LID : null), getPNForLID: async () => null };
  const { handler, data, mappings } = await harness(t, { lidMappingOf: () => store });
  await handler.handleUpsert(BOT, { type: "notify", messages: [text({ remoteJid: PN }, "hi")] });
  assert.equal(data()[0].json.textMessage.header.correspondentId, LID);
  assert.equal(data()[0].json.textMessage.header.context.correspondentIdKind, "ID_KIND_LID");
  assert.deepEqual(mappings(), [{ lid: LID, phoneJid: PN }]);

  const broken = { getLIDForPN: async () => { throw new Error("store closed"); }, getPNForLID: () => { throw new Error("sync throw"); } };
  const second = await harness(t, { lidMappingOf: () => broken });
  await second.handler.handleUpsert(BOT, { type: "notify", messages: [text({ remoteJid: PN }, "a"), text({ remoteJid: LID }, "b")] });
  assert.deepEqual(second.data().map((f) => f.json.textMessage.header.correspondentId), [PN, LID]);
  const missing = await harness(t, { lidMappingOf: () => undefined });
  await missing.handler.handleUpsert(BOT, { type: "notify", messages: [text({ remoteJid: PN }, "c")] });
  assert.equal(missing.data()[0].json.textMessage.header.correspondentId, PN);
});

test("in groups the sender is the participant's LID with the phone number beside it; the group is the correspondent", async (t) => {
  const { handler, data } = await harness(t);
  await handler.handleUpsert(BOT, {
    type: "notify",
    messages: [
      text({ remoteJid: GROUP, participant: PN, participantAlt: LID, addressingMode: "pn" }, "phone-first participant"),
      text({ remoteJid: GROUP, participant: LID }, "LID participant"),
    ],
  });
  for (const f of data()) {
    const h = f.json.textMessage.header;
    assert.equal(h.correspondentId, GROUP);
    assert.equal(h.sender, LID);
    assert.equal(h.context.senderPhone, PHONE);
    assert.equal(h.context.chatKind, "CHAT_KIND_GROUP");
    assert.equal(h.context.correspondentPhone, undefined, "no phone for a group");
  }
});

test("lid-mapping.update pairs are reported in batches of at most 1000", async (t) => {
  const { handler, mappings, sink } = await harness(t);
  const pairs = Array.from({ length: 1500 }, (_, i) => ({ lid: `${300000000000000 + i}@lid`, pn: `4917${String(i).padStart(8, "0")}@s.whatsapp.net` }));
  await handler.learnMappings(BOT, pairs);
  await handler.learnMappings(BOT, { lid: "junk", pn: "also junk" });
  const frames = sink.filter((f) => f.json.identityMappings);
  assert.deepEqual(frames.map((f) => f.json.identityMappings.mappings.length), [1000, 500]);
  assert.equal(mappings()[1499].phoneJid, "491700001499@s.whatsapp.net");
  await handler.learnMappings(BOT, pairs.slice(0, 10));
  assert.equal(sink.filter((f) => f.json.identityMappings).length, 2, "known pairs are not reported again");
});

test("mentions carry phone numbers where known and say when they name the bot; a quote of the bot's message is a reply to the bot", async (t) => {
  const BOT_PN = "4915000000000@s.whatsapp.net";
  const BOT_LID = "299999999999999@lid";
  const { handler, data } = await harness(t, { meIdOf: () => BOT_PN, meLidOf: () => BOT_LID });
  // A first message teaches the pair of the mentioned person.
  await handler.handleUpsert(BOT, { type: "notify", messages: [text({ remoteJid: LID, remoteJidAlt: PN }, "hello")] });
  const msg = {
    key: { remoteJid: GROUP, participant: "4917600000001@s.whatsapp.net", fromMe: false, id: "MENTION1" },
    messageTimestamp: nowSeconds(-1),
    message: {
      extendedTextMessage: {
        text: "@bot @ana look",
        contextInfo: { mentionedJid: [BOT_LID, PN, PN], stanzaId: "BOTMSG", participant: BOT_PN, quotedMessage: { conversation: "menu" } },
      },
    },
  };
  await handler.handleUpsert(BOT, { type: "notify", messages: [msg] });
  const ctx = data().at(-1).json.textMessage.header.context;
  assert.deepEqual(ctx.mentions, [{ jid: BOT_LID, isBot: true }, { jid: LID, phone: PHONE }], "deduplicated, LID first");
  assert.equal(ctx.mentionsBot, true);
  assert.equal(ctx.repliesToBot, true);
});
