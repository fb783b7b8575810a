// Frames built by Node are accepted by the Python gateway's parser, and frames both
// sides reject are rejected with the same reason: one contract, two implementations.
// Runs the real Python validator (services/common/wire.py) in a subprocess.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { MediaKind } from "../src/gen/chatbot/common/v1/message_pb.js";
import { AckStatus, SessionState, file_chatbot_wire_v1_frames } from "../src/gen/chatbot/wire/v1/frames_pb.js";
import { FrameError, buildNodeFrame, encodeNodeFrame, parseFrame, parseNodeFrame } from "../src/wire.js";
import { isoFromSeconds, nowSeconds } from "./helpers/clock.js";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const PYTHON = join(ROOT, ".venv", "bin", "python");
const SCRIPT = `
import json, sys
from services.common.wire import FrameError, parse_node_frame
for line in sys.stdin:
    try:
        parse_node_frame(json.loads(line))
        print(json.dumps({"ok": True}))
    except FrameError as exc:
        print(json.dumps({"ok": False, "reason": exc.reason}))
`;

function pythonVerdicts(texts) {
  assert.ok(existsSync(PYTHON), `${PYTHON} is missing: run 'make venv' first`);
  const out = spawnSync(PYTHON, ["-c", SCRIPT], {
    cwd: ROOT,
    input: texts.map((t) => JSON.stringify(t)).join("\n") + "\n",
    encoding: "utf8",
    env: { ...process.env, PYTHONPATH: [ROOT, join(ROOT, "gen", "python")].join(":") },
  });
  assert.equal(out.status, 0, out.stderr);
  return out.stdout.trim().split("\n").map((l) => JSON.parse(l));
}

function nodeVerdict(text) {
  try {
    parseNodeFrame(text);
    return { ok: true };
  } catch (err) {
    if (!(err instanceof FrameError)) throw err;
    return { ok: false, reason: err.reason };
  }
}

const header = {
  botId: "4915000000000@s.whatsapp.net",
  correspondentId: "120363025246125888@g.us",
  sender: "4917600000001@s.whatsapp.net",
  providerMessageId: "3EB0ABCDEF",
  originatingTime: timestampFromDate(new Date(Math.floor(Date.now() / 1000) * 1000 + 123)),
  group: { groupId: "120363025246125888@g.us", groupName: "Team ✓" },
};

test("frames Node builds pass the Python parser; rejections read the same", () => {
  const built = [
    { case: "textMessage", value: { header, message: "héllo 😀" } },
    { case: "mediaMessage", value: { header, message: "", mediaProcessingId: "0f8fad5b-d9cb-469f-a165-70867728950e", mimeType: "audio/ogg; codecs=opus", mediaKind: MediaKind.VOICE_NOTE, fileSize: 8842n } },
    { case: "mediaMessage", value: { header, message: "doc", mediaProcessingId: "9b2e0c1e-5f4a-4c3b-8d7e-6a5b4c3d2e1f", mimeType: "application/pdf", mediaKind: MediaKind.DOCUMENT, originalFilename: "c.pdf", fileSize: 1n } },
    { case: "corruptMediaMessage", value: { header, mimeType: "video/mp4", mediaKind: MediaKind.GIF, reason: "hash mismatch" } },
    { case: "quotaExceededMediaMessage", value: { header, mediaKind: MediaKind.STICKER, usedBytes: 5n, quotaBytes: 4n } },
    { case: "ack", value: { frameId: "g-1", status: AckStatus.REJECTED, reason: "no open session" } },
    { case: "sessionEvent", value: { botId: "b", state: SessionState.QR_REQUIRED, time: header.originatingTime, detail: "scan" } },
  ].map((payload) => encodeNodeFrame(buildNodeFrame({ payload })));
  const edgy = [
    JSON.stringify({ frameId: "a", ack: { frameId: "b", status: 99 } }),
    JSON.stringify({ frameId: "a", textMessage: { header: { botId: "😀".repeat(129), correspondentId: "c", sender: "s", providerMessageId: "p", originatingTime: isoFromSeconds(nowSeconds()) }, message: "x" } }),
    JSON.stringify({ frameId: "", mediaMessage: { header: {}, mediaProcessingId: "0F8FAD5B-D9CB-469F-A165-70867728950E" } }),
    JSON.stringify({ frameId: "a", sessionEvent: { botId: "b", state: "SESSION_STATE_UNSPECIFIED", detail: "d".repeat(1025) } }),
    JSON.stringify({ frameId: "a", ack: { frameId: "x".repeat(129), status: "ACK_STATUS_RETRY" } }),
  ];
  const texts = [...built, ...edgy];
  const python = pythonVerdicts(texts);
  texts.forEach((text, i) => {
    const node = nodeVerdict(text);
    if (i < built.length) assert.deepEqual(python[i], { ok: true }, `Python refused ${text}: ${python[i].reason}`);
    assert.deepEqual(node, python[i], `verdicts differ for ${text}`);
  });
});

// Every golden fixture, both directions of the socket: the two parsers give the same
// verdict, and a broken constraint reads the same.
const FIXTURE_SCRIPT = `
import json, sys
from chatbot.wire.v1 import frames_pb2
from services.common.wire import FrameError, parse_frame
for line in sys.stdin:
    kind, text = json.loads(line)
    try:
        parse_frame(text, getattr(frames_pb2, kind))
        print(json.dumps({"ok": True}))
    except FrameError as exc:
        print(json.dumps({"ok": False, "reason": exc.reason}))
`;

test("every golden fixture gets the same verdict from Python and Node", () => {
  const dir = join(ROOT, "tests", "fixtures", "wire");
  const cases = ["valid", "invalid"].flatMap((kind) =>
    readdirSync(join(dir, kind))
      .filter((name) => name.endsWith(".json"))
      .map((name) => JSON.parse(readFileSync(join(dir, kind, name), "utf8"))),
  );
  const inputs = cases.map((f) => [f.message_type.split(".").pop(), "raw" in f ? String(f.raw) : JSON.stringify(f.frame)]);
  assert.ok(existsSync(PYTHON), `${PYTHON} is missing: run 'make venv' first`);
  const out = spawnSync(PYTHON, ["-c", FIXTURE_SCRIPT], {
    cwd: ROOT,
    input: inputs.map((i) => JSON.stringify(i)).join("\n") + "\n",
    encoding: "utf8",
    env: { ...process.env, PYTHONPATH: [ROOT, join(ROOT, "gen", "python")].join(":") },
  });
  assert.equal(out.status, 0, out.stderr);
  const python = out.stdout.trim().split("\n").map((l) => JSON.parse(l));
  assert.equal(python.length, inputs.length);
  inputs.forEach(([kind, text], i) => {
    const schema = file_chatbot_wire_v1_frames.messages.find((m) => m.name === kind);
    let node = { ok: true };
    try {
      parseFrame(text, schema);
    } catch (err) {
      if (!(err instanceof FrameError)) throw err;
      node = { ok: false, reason: err.reason };
    }
    assert.equal(node.ok, python[i].ok, `verdicts differ for ${text.slice(0, 200)}`);
    if (!node.ok && node.reason.startsWith("invalid frame:")) {
      assert.equal(node.reason, python[i].reason, `reasons differ for ${text.slice(0, 200)}`);
    }
  });
});

test("the new fields (context, identity mappings, business, commerce, group events, undecryptable, edits) read the same on both sides", () => {
  const context = {
    correspondentIdKind: 1, correspondentPhone: "4915112345678", senderIdKind: 1, senderPhone: "4915112345678", chatKind: 1,
    fromOwner: true, viewOnce: true, forwarded: true, mentions: [{ jid: "210000000000001@lid", phone: "4915112345678", isBot: true }],
    omittedMentionCount: 2, mentionsBot: true, repliesToBot: true,
    adReply: { title: "Ad ✓", body: "b", sourceType: "ad", sourceId: "1202", sourceUrl: "https://fb.me/x", clickId: "Affc", mediaType: "VIDEO" },
    album: { albumMessageId: "ALB", expectedImageCount: 2, expectedVideoCount: 1 }, expirationSeconds: 7776000, senderName: "Ana 😀",
  };
  const withContext = { ...header, context };
  const details = [
    { case: "businessMessage", value: { kind: 1, header: "h", body: "Pick", footer: "f", choices: [{ id: "s", title: "Small", description: "d" }], omittedChoiceCount: 1 } },
    { case: "commerce", value: { kind: 3, title: "Cart", text: "t", amount: "12.500", currency: "EUR", referenceId: "ORD", status: "INQUIRY", itemCount: 3 } },
    { case: "groupEvent", value: { action: 1, stubType: "GROUP_PARTICIPANT_ADD", participants: [{ jid: "210000000000002@lid", phone: "4917600000002" }], omittedParticipantCount: 0, newValue: "" } },
    { case: "undecryptable", value: { reason: "Bad MAC" } },
    { case: "disappearingTimer", value: { expirationSeconds: 86400 } },
    { case: "edit", value: { targetMessageId: "ORIG", text: "x".repeat(65536), decrypted: true } },
  ];
  const built = [
    ...details.map((kind) => ({ case: "structuredMessage", value: { header: withContext, details: { kind } } })),
    { case: "textMessage", value: { header: withContext, message: "hi" } },
    { case: "identityMappings", value: { botId: "b", mappings: [{ lid: "210000000000001@lid", phoneJid: "4915112345678@s.whatsapp.net" }] } },
  ].map((payload) => encodeNodeFrame(buildNodeFrame({ payload })));
  const time = isoFromSeconds(nowSeconds());
  const hdr = (ctx) => ({ botId: "b", correspondentId: "c", sender: "s", providerMessageId: "p", originatingTime: time, context: ctx });
  const structured = (kind) => JSON.stringify({ frameId: "a", structuredMessage: { header: hdr(undefined), details: kind } });
  const edgy = [
    JSON.stringify({ frameId: "a", textMessage: { header: hdr({ mentions: [{ phone: "1" }] }), message: "x" } }),
    JSON.stringify({ frameId: "a", textMessage: { header: hdr({ mentions: Array.from({ length: 33 }, () => ({ jid: "j" })) }), message: "x" } }),
    JSON.stringify({ frameId: "a", textMessage: { header: hdr({ correspondentPhone: "1".repeat(21), adReply: { mediaType: "V".repeat(33) } }), message: "x" } }),
    JSON.stringify({ frameId: "a", textMessage: { header: hdr({ album: {} }), message: "x" } }),
    structured({ edit: { targetMessageId: "o", text: "x".repeat(65537) } }),
    structured({ groupEvent: { action: "GROUP_ACTION_ADD" } }),
    structured({ businessMessage: { kind: "BUSINESS_MESSAGE_KIND_UNSPECIFIED", choices: Array.from({ length: 21 }, () => ({})) } }),
    structured({ commerce: { kind: "COMMERCE_KIND_ORDER", currency: "EUROS-TOO-LONG" } }),
    JSON.stringify({ frameId: "a", identityMappings: { botId: "b", mappings: [{ lid: "", phoneJid: "p" }] } }),
  ];
  const texts = [...built, ...edgy];
  const python = pythonVerdicts(texts);
  texts.forEach((text, i) => {
    const node = nodeVerdict(text);
    if (i < built.length) assert.deepEqual(python[i], { ok: true }, `Python refused ${text.slice(0, 300)}: ${python[i].reason}`);
    else assert.equal(node.ok, false, `Node accepted the defective ${text.slice(0, 300)}`);
    assert.deepEqual(node, python[i], `verdicts differ for ${text.slice(0, 300)}`);
  });
});
