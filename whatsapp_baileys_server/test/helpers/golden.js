// Checks produced frames against the golden wire fixtures shared with the Python tests:
// the frame must pass the strict parser (same rules as the gateway) and carry the same
// fields as the fixture of its payload kind.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { encodeNodeFrame, parseNodeFrame, toJson, NodeFrameSchema } from "../../src/wire.js";

const VALID = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..", "tests", "fixtures", "wire", "valid");

export function golden(name) {
  return JSON.parse(readFileSync(join(VALID, `${name}.json`), "utf8")).expected;
}

// Fields a frame carries only when they have a value (proto3 JSON omits empty ones).
const OPTIONAL = new Set(["context", "detail", "group", "groupName", "originalFilename", "message", "fileSize", "usedBytes", "quotaBytes", "mimeType"]);

function sameShape(actual, expected, path) {
  for (const key of Object.keys(expected)) {
    if (OPTIONAL.has(key)) continue;
    assert.ok(key in actual, `${path}${key} is in the golden fixture but not in the frame`);
  }
  for (const key of Object.keys(actual)) {
    assert.ok(key in expected || OPTIONAL.has(key), `${path}${key} is in the frame but not in the golden fixture`);
    const a = actual[key];
    const e = expected[key];
    if (a && typeof a === "object" && e && typeof e === "object") sameShape(a, e, `${path}${key}.`);
    else if (e !== undefined) assert.equal(typeof a, typeof e, `${path}${key} has another JSON type than in the fixture`);
  }
}

/** Returns the frame's canonical JSON after checking it against fixture `name`. */
export function assertMatchesGolden(frame, name) {
  const text = encodeNodeFrame(frame);
  const reparsed = parseNodeFrame(text); // throws with the gateway's reason if invalid
  const json = toJson(NodeFrameSchema, reparsed);
  const expected = golden(name);
  const payloadKey = Object.keys(expected).find((k) => k !== "frameId");
  assert.ok(payloadKey in json, `frame has no ${payloadKey}: ${text}`);
  assert.equal(typeof json.frameId, "string");
  sameShape(json[payloadKey], expected[payloadKey], `${payloadKey}.`);
  return json;
}
