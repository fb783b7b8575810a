// Envelopes the real-payload corpus has no public sample of yet (newsletters, group
// stubs, buttons and list messages, orders, bare editedMessage wrappers, albums, sealed
// edits the owner made), built here from Baileys' own protobuf shapes, and the rules every
// typed field obeys (control characters, bounds, recomputed validity).
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { randomBytes } from "node:crypto";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { proto } from "baileys";
import { createMessageHandler } from "../src/handler.js";
import { createMemoryLogger } from "../src/logger.js";
import { encryptSecretEdit } from "../src/edits.js";
import { NodeFrameSchema, encodeNodeFrame, parseNodeFrame, toJson } from "../src/wire.js";
import { nowSeconds } from "./helpers/clock.js";

const BOT = "bot-envelopes";
const ME = "4915000000000@s.whatsapp.net";
const CHAT = "4915112345678@s.whatsapp.net";
const GROUP = "120363000000000888@g.us";
const CHANNEL = "120363402625696205@newsletter";

async function harness(t, { config, sentIds } = {}) {
  const dir = await mkdtemp(join(tmpdir(), "envelopes-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const sink = [];
  const { logger } = createMemoryLogger();
  const handler = createMessageHandler({
    stagingDir: dir,
    download: async () => {
      throw new Error("no media");
    },
    quotaGbFor: () => 1,
    frameSink: async (frame) => {
      sink.push(toJson(NodeFrameSchema, parseNodeFrame(encodeNodeFrame(frame))));
    },
    logger,
    meIdOf: () => ME,
    configOf: () => config,
    sentIds,
  });
  const run = async (...messages) => {
    const before = sink.length;
    await handler.handleUpsert(BOT, { type: "notify", messages });
    return sink.slice(before).filter((f) => !f.identityMappings);
  };
  return { handler, run };
}

let n = 0;
function msg(message, key = {}) {
  n += 1;
  return { key: { remoteJid: CHAT, fromMe: false, id: `ENV${String(n).padStart(5, "0")}`, ...key }, messageTimestamp: nowSeconds(-2), pushName: "Cy", message };
}

test("newsletter posts are dropped by default; when allowed they are channel posts, never a person", async (t) => {
  const off = await harness(t);
  assert.deepEqual(await off.run(msg({ conversation: "channel news" }, { remoteJid: CHANNEL })), []);
  assert.equal(off.handler.drops.get("newsletters_off"), 1);
  const on = await harness(t, { config: { newsletters: true } });
  const [frame] = await on.run(msg({ conversation: "channel news" }, { remoteJid: CHANNEL }));
  const h = frame.textMessage.header;
  assert.equal(h.correspondentId, CHANNEL);
  assert.equal(h.sender, CHANNEL);
  assert.equal(h.context.chatKind, "CHAT_KIND_NEWSLETTER");
  assert.equal(h.context.correspondentIdKind, "ID_KIND_NEWSLETTER");
});

test("group settings: groups can be turned off; status updates are on only when asked", async (t) => {
  const off = await harness(t, { config: { groups: false } });
  assert.deepEqual(await off.run(msg({ conversation: "hi all" }, { remoteJid: GROUP, participant: CHAT })), []);
  assert.equal(off.handler.drops.get("groups_off"), 1);
  const status = await harness(t, { config: { status: true } });
  const [frame] = await status.run(msg({ conversation: "my story" }, { remoteJid: "status@broadcast", participant: CHAT }));
  assert.equal(frame.textMessage.header.context.chatKind, "CHAT_KIND_STATUS");
  assert.equal(frame.textMessage.header.sender, CHAT);
});

// Baileys 7 writes group participants as JSON (messages-recv.js), older versions bare JIDs.
const ADDED = { key: { remoteJid: GROUP, fromMe: false, id: "STUBADD1", participant: "210000000000001@lid" }, messageTimestamp: nowSeconds(-2),
  messageStubType: 27, messageStubParameters: [JSON.stringify({ id: "210000000000002@lid", phoneNumber: "4917600000002@s.whatsapp.net", admin: null }), "4917600000003@s.whatsapp.net"] };

test("group system events reach the bot only when group_events is on, as events with their participants", async (t) => {
  const off = await harness(t);
  assert.deepEqual(await off.run(ADDED), []);
  assert.equal(off.handler.drops.get("group_events_off"), 1);
  const on = await harness(t, { config: { group_events: true } });
  const [frame] = await on.run(ADDED, ADDED);
  const ev = frame.structuredMessage;
  assert.equal(ev.header.correspondentId, GROUP);
  assert.equal(ev.header.sender, "210000000000001@lid");
  assert.deepEqual(ev.details.groupEvent, {
    action: "GROUP_ACTION_ADD",
    stubType: "GROUP_PARTICIPANT_ADD",
    participants: [{ jid: "210000000000002@lid", phone: "4917600000002" }, { jid: "4917600000003@s.whatsapp.net", phone: "4917600000003" }],
  });
  const [subject] = await on.run({ ...ADDED, key: { ...ADDED.key, id: "STUBSUBJ1" }, messageStubType: 21, messageStubParameters: ["New\u0007 name"] });
  assert.deepEqual(subject.structuredMessage.details.groupEvent, { action: "GROUP_ACTION_SUBJECT", stubType: "GROUP_CHANGE_SUBJECT", newValue: "New name" });
  // Other system stubs (e.g. "messages are end-to-end encrypted") are counted drops.
  assert.deepEqual(await on.run({ key: { remoteJid: CHAT, fromMe: false, id: "E2E1" }, messageStubType: 39 }), []);
  assert.equal(on.handler.drops.get("system_stub"), 1);
});

test("buttons, list and order messages carry the question, the choices and the amounts", async (t) => {
  const { run } = await harness(t);
  const [buttons, list, order, product] = await run(
    msg({ buttonsMessage: { contentText: "Pick a size", footerText: "Shop", text: "Sizes", headerType: 2,
      buttons: [{ buttonId: "s", buttonText: { displayText: "Small" }, type: 1 }, { buttonId: "l", buttonText: { displayText: "Large" }, type: 1 }] } }),
    msg({ listMessage: { title: "Menu", description: "What would you like?", buttonText: "Open", listType: 1,
      sections: Array.from({ length: 3 }, (_, s) => ({ title: `S${s}`, rows: Array.from({ length: 10 }, (_, r) => ({ rowId: `r${s}.${r}`, title: `Row ${s}.${r}`, description: "d" })) })) } }),
    msg({ orderMessage: { orderId: "ORD-9", itemCount: 3, status: 1, surface: 1, message: "Your order", orderTitle: "Cart", totalAmount1000: 12500, totalCurrencyCode: "EUR" } }),
    msg({ productMessage: { product: { productId: "P1", title: "Mug", description: "Blue", currencyCode: "USD", priceAmount1000: 9990 }, businessOwnerJid: CHAT } }),
  );
  assert.deepEqual(buttons.structuredMessage.details.businessMessage, {
    kind: "BUSINESS_MESSAGE_KIND_BUTTONS", header: "Sizes", body: "Pick a size", footer: "Shop",
    choices: [{ id: "s", title: "Small" }, { id: "l", title: "Large" }],
  });
  const l = list.structuredMessage.details.businessMessage;
  assert.equal(l.kind, "BUSINESS_MESSAGE_KIND_LIST");
  assert.equal(l.choices.length, 20);
  assert.equal(l.omittedChoiceCount, 10);
  assert.deepEqual(order.structuredMessage.details.commerce, {
    kind: "COMMERCE_KIND_ORDER", title: "Cart", text: "Your order", amount: "12.500", currency: "EUR", referenceId: "ORD-9", status: "INQUIRY", itemCount: 3,
  });
  assert.deepEqual(product.structuredMessage.details.commerce, { kind: "COMMERCE_KIND_PRODUCT", title: "Mug", text: "Blue", amount: "9.990", currency: "USD", referenceId: "P1" });
});

test("an editedMessage wrapper around plain content is an edit of the original, never a new message", async (t) => {
  const { run } = await harness(t);
  const [frame] = await run(msg({ editedMessage: { message: { conversation: "corrected" } } }, { id: "ORIGINAL7" }));
  assert.deepEqual(frame.structuredMessage.details, { edit: { targetMessageId: "ORIGINAL7", text: "corrected", decrypted: true } });
});

test("the owner's sealed edit of a message typed on the phone opens with the account's id, and is from_owner", async (t) => {
  const { run } = await harness(t, { sentIds: { has: () => false } });
  const secret = new Uint8Array(randomBytes(32));
  const original = msg(proto.Message.fromObject({ conversation: "teh typo", messageContextInfo: { messageSecret: secret } }), { fromMe: true, id: "OWN1" });
  const sealed = encryptSecretEdit({ editedMessage: { conversation: "the typo" }, targetKey: { remoteJid: CHAT, fromMe: true, id: "OWN1" }, secret, sender: ME });
  const [first, edit] = await run(original, msg({ secretEncryptedMessage: sealed }, { fromMe: true, id: "OWNEDIT1" }));
  assert.equal(first.textMessage.header.context.fromOwner, true);
  assert.deepEqual(edit.structuredMessage.details, { edit: { targetMessageId: "OWN1", text: "the typo", decrypted: true } });
  assert.equal(edit.structuredMessage.header.context.fromOwner, true);
  assert.equal(edit.structuredMessage.header.sender, ME);
});

test("an album's header is not a message; its items carry the album and the announced counts", async (t) => {
  const { run, handler } = await harness(t);
  const header = msg({ albumMessage: { expectedImageCount: 2, expectedVideoCount: 1 } }, { id: "ALBUM1" });
  const item = msg({ associatedChildMessage: { message: { imageMessage: { mimetype: "image/jpeg", caption: "one" },
    messageContextInfo: { messageAssociation: { associationType: 1, parentMessageKey: { remoteJid: CHAT, id: "ALBUM1" } } } } } });
  const frames = await run(header, item);
  assert.equal(handler.drops.get("album_header"), 1);
  assert.equal(frames.length, 1);
  assert.deepEqual(frames[0].corruptMediaMessage.header.context.album, { albumMessageId: "ALBUM1", expectedImageCount: 2, expectedVideoCount: 1 });
});

test("typed fields obey the text's rules: control characters stripped, bounds kept, validity recomputed", async (t) => {
  const { run } = await harness(t);
  const [far, nan, weird, long, loc] = await run(
    msg({ locationMessage: { degreesLatitude: 1000, degreesLongitude: 13.4 } }),
    msg({ locationMessage: { degreesLatitude: "NaN", degreesLongitude: 13.4 } }),
    msg({ "<b>future\u0000Type</b>Message": { x: 1 } }),
    msg({ protocolMessage: { type: 14, key: { id: "LONG1" }, editedMessage: { conversation: "x".repeat(200_000) } } }),
    msg({ locationMessage: { degreesLatitude: 52.5, degreesLongitude: 13.4, name: "Cafe\u0000\u001b[31m Berlin\u0085", address: "A\u0007B" } }),
  );
  // Out-of-range values are kept but marked (the golden structured_location_out_of_range).
  assert.deepEqual(far.structuredMessage.details.location, { latitude: 1000, longitude: 13.4 });
  assert.deepEqual(nan.structuredMessage.details.location, { longitude: 13.4 });
  assert.deepEqual(weird.structuredMessage.details.unsupported, { messageType: "bfutureTypebMessage" });
  assert.equal(long.structuredMessage.details.edit.text.length, 65536);
  assert.equal(loc.structuredMessage.details.location.name, "Cafe[31m Berlin");
  assert.equal(loc.structuredMessage.details.location.address, "AB");
  assert.equal(loc.structuredMessage.details.location.coordinatesValid, true);
});
