// The planned encoder (src/frame_json.js) writes exactly what protobuf-es' toJsonString
// writes: on every golden fixture, on edge values, and on seeded random frames that set
// every field reachable from the frames; what it does not plan for falls back.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { ScalarType, create, toJsonString } from "@bufbuild/protobuf";
import { file_chatbot_wire_v1_frames, GatewayFrameSchema, NodeFrameSchema } from "../src/gen/chatbot/wire/v1/frames_pb.js";
import { UnplannedValue, isoSeconds, planJsonEncoder } from "../src/frame_json.js";
import { encodeGatewayFrame, encodeNodeFrame, fromJson } from "../src/wire.js";

const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "tests", "fixtures", "wire", "valid");
const encode = planJsonEncoder([NodeFrameSchema, GatewayFrameSchema]);

function assertSame(schema, message, what) {
  assert.equal(encode(schema, message), toJsonString(schema, message), what);
}

test("every valid golden fixture encodes as toJsonString encodes it", () => {
  let count = 0;
  for (const name of readdirSync(FIXTURES).filter((n) => n.endsWith(".json"))) {
    const fixture = JSON.parse(readFileSync(join(FIXTURES, name), "utf8"));
    const schema = file_chatbot_wire_v1_frames.messages.find((m) => m.typeName === fixture.message_type);
    if (!("frame" in fixture) || (schema !== NodeFrameSchema && schema !== GatewayFrameSchema)) continue;
    assertSame(schema, fromJson(schema, fixture.frame), name);
    count += 1;
  }
  assert.ok(count >= 40, `only ${count} fixtures`);
});

/** A deterministic generator (mulberry32), so a failure repeats. */
function seeded(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const STRINGS = ["", "a", "ünïcødé ✓ 🎉", "line\nbreak \"quoted\" \\ back", "\u0000\u001f", "\ud800 lone", "0", "x".repeat(300)];
const DOUBLES = [0, -0, 1.5, -2.25e-7, 1e21, Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, 52.52];

function randomScalar(scalar, random) {
  const pick = (values) => values[Math.floor(random() * values.length)];
  switch (scalar) {
    case ScalarType.STRING:
      return pick(STRINGS);
    case ScalarType.BOOL:
      return random() < 0.5;
    case ScalarType.BYTES:
      return pick([new Uint8Array(0), new Uint8Array([0, 255, 62, 63]), new Uint8Array([1, 2, 3, 4, 5])]);
    case ScalarType.DOUBLE:
    case ScalarType.FLOAT:
      return pick(DOUBLES);
    case ScalarType.INT64:
    case ScalarType.SINT64:
    case ScalarType.SFIXED64:
      return pick([0n, 1n, -5n, 2n ** 62n]);
    case ScalarType.UINT64:
    case ScalarType.FIXED64:
      return pick([0n, 7n, 2n ** 63n - 1n]);
    default:
      return pick([0, 1, -3, 2 ** 31 - 1]);
  }
}

/** A message with a random subset of its fields set, nested up to `depth`. */
function randomMessage(schema, random, depth) {
  if (schema.typeName === "google.protobuf.Timestamp") {
    const nanos = [0, 5_000_000, 123_456_000, 1, 999_999_999][Math.floor(random() * 5)];
    return create(schema, { seconds: BigInt(Math.floor(random() * 4e9)), nanos });
  }
  const init = {};
  for (const oneof of schema.oneofs) {
    if (random() < 0.2) continue;
    const field = oneof.fields[Math.floor(random() * oneof.fields.length)];
    const value = randomValue(field, random, depth);
    if (value !== undefined) init[oneof.localName] = { case: field.localName, value };
  }
  for (const field of schema.fields) {
    if (field.oneof || random() < 0.3) continue;
    if (field.fieldKind === "list") {
      const n = Math.floor(random() * 3);
      const items = [];
      for (let i = 0; i < n; i++) {
        const item = field.listKind === "message" ? (depth > 0 ? randomMessage(field.message, random, depth - 1) : undefined)
          : field.listKind === "enum" ? field.enum.values[Math.floor(random() * field.enum.values.length)].number
            : randomScalar(field.scalar, random);
        if (item !== undefined) items.push(item);
      }
      init[field.localName] = items;
      continue;
    }
    const value = randomValue(field, random, depth);
    if (value !== undefined) init[field.localName] = value;
  }
  return create(schema, init);
}

function randomValue(field, random, depth) {
  if (field.fieldKind === "message") return depth > 0 ? randomMessage(field.message, random, depth - 1) : undefined;
  if (field.fieldKind === "enum") {
    // Now and then a number the enum does not name (written as the number).
    if (random() < 0.1) return 99;
    return field.enum.values[Math.floor(random() * field.enum.values.length)].number;
  }
  return randomScalar(field.scalar, random);
}

test("seeded random frames setting any reachable field encode as toJsonString encodes them", () => {
  const random = seeded(27);
  for (let i = 0; i < 3000; i++) {
    const schema = i % 4 === 0 ? GatewayFrameSchema : NodeFrameSchema;
    const message = randomMessage(schema, random, 6);
    let expected;
    try {
      expected = toJsonString(schema, message);
    } catch (err) {
      // What protobuf-es refuses the plan hands back to it.
      assert.throws(() => encode(schema, message), UnplannedValue, `frame ${i}: ${err.message}`);
      continue;
    }
    assert.equal(encode(schema, message), expected, `frame ${i}`);
  }
});

test("values the plan does not expect fall back to toJsonString and its verdict", () => {
  const frame = create(NodeFrameSchema, { frameId: "f", payload: { case: "ack", value: { frameId: "g", status: 1, reason: "" } } });
  assert.equal(encodeNodeFrame(frame), toJsonString(NodeFrameSchema, frame));
  assert.match(encodeNodeFrame(frame), /"reason":""/, "an explicitly present empty reason is written");
  const late = create(NodeFrameSchema, {
    frameId: "f",
    payload: { case: "textMessage", value: { header: { botId: "b", originatingTime: { seconds: 10n ** 12n, nanos: 0 } }, message: "m" } },
  });
  assert.throws(() => encode(NodeFrameSchema, late), UnplannedValue);
  assert.throws(() => encodeNodeFrame(late), /must be from 0001-01-01/);
  const wrongType = create(GatewayFrameSchema, { frameId: "g" });
  wrongType.frameId = 5;
  assert.throws(() => encode(GatewayFrameSchema, wrongType), UnplannedValue);
  assert.throws(() => encodeGatewayFrame(wrongType), /cannot encode/);
});

test("isoSeconds writes what Date.toISOString writes, from year 1 to 9999", () => {
  const random = seeded(4);
  const first = Date.parse("0001-01-01T00:00:00Z") / 1000;
  const last = Date.parse("9999-12-31T23:59:59Z") / 1000;
  const edges = [first, last, 0, -1, 86_399, 86_400, 951_782_400, 4_107_542_400, -62_135_596_801 + 1];
  for (let i = 0; i < 20_000; i++) edges.push(first + Math.floor(random() * (last - first + 1)));
  for (const seconds of edges) {
    assert.equal(isoSeconds(seconds), new Date(seconds * 1000).toISOString().slice(0, 19), String(seconds));
  }
});
