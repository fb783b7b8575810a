// Hostile frames: each class of defect is refused with a FrameError, as in Python
// (tests/unit/test_wire_hostile.py); the differential test compares both on a corpus.
import { test } from "node:test";
import assert from "node:assert/strict";
import { FrameError, MAX_JSON_DEPTH, isUuid4, parseNodeFrame } from "../src/wire.js";
import { isoFromSeconds, nowSeconds } from "./helpers/clock.js";

const header = { botId: "b", correspondentId: "c", sender: "s", providerMessageId: "p", originatingTime: isoFromSeconds(nowSeconds()) };
const media = (fields) =>
  JSON.stringify({ frameId: "f-1", mediaMessage: { header, mediaProcessingId: "0f8fad5b-d9cb-469f-a165-70867728950e", mimeType: "image/jpeg", mediaKind: "MEDIA_KIND_IMAGE", ...fields } });

function refused(text) {
  try {
    parseNodeFrame(text);
  } catch (err) {
    assert.ok(err instanceof FrameError, `not a FrameError: ${err}`);
    return err;
  }
  assert.fail(`accepted: ${text.slice(0, 200)}`);
}

test("deep nesting is refused and keeps the frame id", () => {
  for (const depth of [MAX_JSON_DEPTH + 1, 5000, 100000]) {
    const err = refused(`{"frameId":"f-7","ack":${"[".repeat(depth)}${"]".repeat(depth)}}`);
    assert.match(err.reason, /nested deeper/);
    assert.equal(err.frameId, "f-7");
  }
});

test("integers the store cannot hold are refused; numbers beyond 2^53 must be strings", () => {
  assert.match(refused(media({ fileSize: (2n ** 63n).toString() })).reason, /file_size: larger than 9223372036854775807/);
  assert.equal(parseNodeFrame(media({ fileSize: (2n ** 63n - 1n).toString() })).payload.value.fileSize, 2n ** 63n - 1n);
  assert.match(refused(media({ fileSize: 2 ** 53 })).reason, /2\^53/);
});

test("a UUID with a trailing newline is not a UUID", () => {
  assert.equal(isUuid4("0f8fad5b-d9cb-469f-a165-70867728950e\n"), false);
  assert.match(refused(media({ mediaProcessingId: "0f8fad5b-d9cb-469f-a165-70867728950e\n" })).reason, /not a lower-case UUID4/);
});

test("a field given twice is refused and no ambiguous id is echoed", () => {
  for (const text of [
    '{"frameId":"f-1","frame_id":"f-2","ack":{"frameId":"x","status":1}}',
    '{"frameId":"f-1","frameId":"f-2","ack":{"frameId":"x","status":1}}',
    '{"frameId":"f-1","ack":{"frameId":"x","frame_id":"y","status":1}}',
  ]) {
    const err = refused(text);
    assert.match(err.reason, /given twice/);
    assert.notEqual(err.frameId, "f-2");
  }
});

test("a lone surrogate in the frame id is refused and not echoed", () => {
  assert.equal(refused('{"frameId":"f\\ud800","ack":{"frameId":"x","status":1}}').frameId, "");
});

test("a byte-order mark before the JSON is refused, as in Python", () => {
  const bytes = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('{"frameId":"f","ack":{"frameId":"x","status":1}}')]);
  assert.match(refused(new Uint8Array(bytes)).reason, /not JSON/);
});
