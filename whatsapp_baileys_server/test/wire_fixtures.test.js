// The golden wire fixtures shared with the Python tests parse (or fail) exactly as
// documented, with the same reasons, and round-trip through JSON and binary.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { equals, fromBinary, toBinary, toJson, toJsonString } from "@bufbuild/protobuf";
import { file_chatbot_wire_v1_frames, NodeFrameSchema } from "../src/gen/chatbot/wire/v1/frames_pb.js";
import { FrameError, MAX_FRAME_BYTES, parseFrame, parseNodeFrame } from "../src/wire.js";
import { isoFromSeconds, nowSeconds } from "./helpers/clock.js";

const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "tests", "fixtures", "wire");

function load(kind) {
  const dir = join(FIXTURES, kind);
  return readdirSync(dir)
    .filter((name) => name.endsWith(".json"))
    .sort()
    .map((name) => [name.replace(/\.json$/, ""), JSON.parse(readFileSync(join(dir, name), "utf8"))]);
}

function schemaOf(fixture) {
  const schema = file_chatbot_wire_v1_frames.messages.find((m) => m.typeName === fixture.message_type);
  assert.ok(schema, `unknown message_type ${fixture.message_type}`);
  return schema;
}

function frameText(fixture) {
  return "raw" in fixture ? String(fixture.raw) : JSON.stringify(fixture.frame);
}

const VALID = load("valid");
const INVALID = load("invalid");

test("fixture sets are not empty", () => {
  assert.ok(VALID.length >= 10);
  assert.ok(INVALID.length >= 10);
});

for (const [name, fixture] of VALID) {
  test(`valid fixture ${name} parses into the expected message and round-trips`, () => {
    const schema = schemaOf(fixture);
    const parsed = parseFrame(frameText(fixture), schema);
    assert.deepEqual(toJson(schema, parsed), fixture.expected);
    const again = parseFrame(toJsonString(schema, parsed), schema);
    assert.ok(equals(schema, again, parsed), "JSON round trip changed the message");
    const fromBin = fromBinary(schema, toBinary(schema, parsed));
    assert.ok(equals(schema, fromBin, parsed), "binary round trip changed the message");
  });
}

for (const [name, fixture] of INVALID) {
  test(`invalid fixture ${name} is rejected with its reason`, () => {
    const schema = schemaOf(fixture);
    let caught;
    try {
      parseFrame(frameText(fixture), schema);
    } catch (err) {
      caught = err;
    }
    assert.ok(caught instanceof FrameError, `expected a FrameError, got ${caught}`);
    const { error } = fixture;
    if (error.kind === "parse") {
      assert.ok(caught.reason.startsWith("malformed frame:"), caught.reason);
      assert.ok(caught.reason.includes(error.mentions), `${caught.reason} lacks ${error.mentions}`);
    } else {
      assert.equal(caught.reason, "invalid frame: " + error.problems.join("; "));
    }
  });
}

test("a rejected frame keeps its id when readable", () => {
  const fixture = Object.fromEntries(INVALID).missing_sender;
  assert.throws(() => parseNodeFrame(frameText(fixture)), (err) => err.frameId === "f-0100");
});

test("an oversized frame is rejected before parsing", () => {
  assert.throws(
    () => parseNodeFrame("{" + " ".repeat(300 * 1024) + "}"),
    (err) => err instanceof FrameError && err.reason.includes(`more than the ${MAX_FRAME_BYTES} allowed`),
  );
});

test("an unknown enum number is a constraint problem, as in Python", () => {
  const text = JSON.stringify({ frameId: "a", ack: { frameId: "b", status: 99 } });
  assert.throws(
    () => parseNodeFrame(text),
    (err) => err.reason === "invalid frame: ack.status: unknown enum value 99",
  );
});

test("lengths are counted in code points, as Python counts them", () => {
  const header = {
    botId: "😀".repeat(128), // 256 UTF-16 units, 128 code points: within the bound
    correspondentId: "c",
    sender: "s",
    providerMessageId: "p",
    originatingTime: isoFromSeconds(nowSeconds()),
  };
  const ok = parseNodeFrame(JSON.stringify({ frameId: "a", textMessage: { header, message: "x" } }));
  assert.equal(ok.payload.case, "textMessage");
  header.botId += "😀";
  assert.throws(
    () => parseNodeFrame(JSON.stringify({ frameId: "a", textMessage: { header, message: "x" } })),
    (err) => err.reason === "invalid frame: text_message.header.bot_id: longer than 128 characters",
  );
});

test("binary input that is not UTF-8 is malformed", () => {
  assert.throws(
    () => parseFrame(new Uint8Array([0x7b, 0xff, 0x7d]), NodeFrameSchema),
    (err) => err.reason.startsWith("malformed frame:"),
  );
});
