// Strict parsing, validation and encoding of WebSocket frames (proto3 JSON of
// chatbot.wire.v1), through the code generated from protos/ only.
//
// The validator mirrors services/common/validation.py and services/common/wire.py
// rule for rule and string for string, so a frame one side accepts the other side
// accepts too, and a rejection reads the same in the logs of both.

import { randomUUID } from "node:crypto";
import {
  ScalarType,
  create,
  fromBinary,
  fromJson,
  getOption,
  hasOption,
  toBinary,
  toJson,
  toJsonString,
} from "@bufbuild/protobuf";
import { field as fieldConstraints } from "./gen/chatbot/options/v1/field_options_pb.js";
import { AckStatusSchema, GatewayFrameSchema, NodeFrameSchema } from "./gen/chatbot/wire/v1/frames_pb.js";
import { OUTGOING_MESSAGE, outgoingProblems } from "./outgoing_rules.js";
import { UnplannedValue, planJsonEncoder } from "./frame_json.js";

/** Frames from Node are small: text and metadata only, never media bytes. */
export const MAX_FRAME_BYTES = 256 * 1024;
/**
 * Frames from the gateway may carry an outgoing media file (base64 in the JSON): room for
 * the 16 MiB default media cap (21.4 MiB as base64), as in services/common/wire.py.
 */
export const MAX_GATEWAY_FRAME_BYTES = 32 * 1024 * 1024;
/** Our frames nest five levels deep; anything much deeper is hostile. */
export const MAX_JSON_DEPTH = 32;
/** JSON numbers at or beyond 2**53 lose precision here; 64-bit integers travel as strings. */
const MAX_JSON_NUMBER = 2 ** 53;
/** The largest integer either store holds (SQLite INTEGER and BSON int64 are signed). */
export const MAX_STORED_INTEGER = 2n ** 63n - 1n;
const MAX_SALVAGED_ID = 128;

// Anchored at both ends without a multiline flag: no trailing newline slips through
// (Python uses re.fullmatch for the same reason).
const UUID4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
// One JSON token: a string, a structural character, or a bare literal/number. The same
// expression as services/common/wire.py, so both sides see the same structure.
const TOKEN = /"[^"\\]*(?:\\.[^"\\]*)*"|[{}[\]:,]|[^ \t\r\n{}[\]:,"]+/gs;
const ID_KEYS = new Set(["frameId", "frame_id"]);
const UNSIGNED_64 = new Set([ScalarType.UINT64, ScalarType.FIXED64]);
// ignoreBOM keeps a byte-order mark in the text, where JSON.parse refuses it, as Python does.
const STRICT_UTF8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** A frame that is not valid JSON of the expected message, or breaks a constraint. */
export class FrameError extends Error {
  /**
   * @param {string} reason
   * @param {string} [frameId] set when the id could still be read, so the sender can be
   *   told which of its frames was refused
   */
  constructor(reason, frameId = "") {
    super(reason);
    this.name = "FrameError";
    this.reason = reason;
    this.frameId = frameId;
  }
}

/** True for a canonical lower-case UUID version 4 (the only form used as a file name). */
export function isUuid4(value) {
  return typeof value === "string" && UUID4.test(value);
}

// Python measures strings in code points; JavaScript's .length counts UTF-16 units.
function codePoints(value) {
  let n = 0;
  for (const _ of value) n += 1;
  return n;
}

function constraintsOf(field) {
  return hasOption(field, fieldConstraints) ? getOption(field, fieldConstraints) : undefined;
}

/**
 * field → its constraints (or undefined) for every field reachable from the frames,
 * read once at load: reading a custom option decodes it again on each call, which
 * was a seventh of the Node server's CPU per message. Never changed after this.
 */
function collectRules(schemas) {
  const rules = new Map();
  const visited = new Set();
  const visit = (schema) => {
    if (visited.has(schema)) return;
    visited.add(schema);
    for (const field of schema.fields) {
      rules.set(field, constraintsOf(field));
      if (field.message) visit(field.message);
    }
  };
  schemas.forEach(visit);
  return rules;
}

const FRAME_RULES = collectRules([NodeFrameSchema, GatewayFrameSchema]);

function rulesOf(field) {
  const rules = FRAME_RULES.get(field);
  return rules !== undefined || FRAME_RULES.has(field) ? rules : constraintsOf(field);
}

function scalarDefault(field) {
  switch (field.scalar) {
    case ScalarType.STRING:
      return "";
    case ScalarType.BOOL:
      return false;
    case ScalarType.BYTES:
      return new Uint8Array(0);
    case ScalarType.INT64:
    case ScalarType.UINT64:
    case ScalarType.FIXED64:
    case ScalarType.SFIXED64:
    case ScalarType.SINT64:
      return 0n;
    default:
      return 0;
  }
}

function isEmpty(value) {
  if (value instanceof Uint8Array) return value.length === 0;
  return !value;
}

/** [present, value] of a field, with proto3 defaults for unset scalars and enums. */
function read(message, field) {
  let present;
  let value;
  if (field.oneof) {
    const slot = message[field.oneof.localName];
    present = slot.case === field.localName;
    value = present ? slot.value : undefined;
  } else {
    value = message[field.localName];
    present = value !== undefined;
  }
  if (value === undefined) {
    if (field.fieldKind === "scalar") value = scalarDefault(field);
    else if (field.fieldKind === "enum") value = field.enum.values[0]?.number ?? 0;
  }
  return [present, value];
}

/**
 * Every constraint violation of a parsed message as `path: problem`; empty when valid.
 * @param {import("@bufbuild/protobuf").DescMessage} schema
 * @param {any} message
 * @param {string} [path]
 * @returns {string[]}
 */
export function validateMessage(schema, message, path = "") {
  const problems = [];
  for (const oneof of schema.oneofs) {
    // Real oneofs in our contracts always mean "exactly one is required"; proto3
    // `optional` (a synthetic oneof) carries no such rule and is not listed here.
    if (oneof.name.startsWith("_")) continue;
    if (message[oneof.localName].case === undefined) {
      const names = oneof.fields.map((f) => f.name).join(", ");
      problems.push(`${path}${oneof.name}: exactly one of [${names}] is required`);
    }
  }
  for (const field of schema.fields) {
    const rules = rulesOf(field);
    const [present, value] = read(message, field);
    if (field.fieldKind === "list" || field.fieldKind === "map") {
      const size = field.fieldKind === "list" ? value.length : Object.keys(value).length;
      if (rules?.required && size === 0) problems.push(`${path}${field.name}: required`);
      if (rules?.maxItems && size > rules.maxItems) problems.push(`${path}${field.name}: more than ${rules.maxItems} items`);
      if (field.fieldKind === "list" && field.listKind === "message") {
        value.forEach((item, i) => {
          problems.push(...validateMessage(field.message, item, `${path}${field.name}[${i}].`));
        });
      }
      continue;
    }
    if (field.fieldKind === "message") {
      if (present) problems.push(...validateMessage(field.message, value, `${path}${field.name}.`));
      else if (rules?.required) problems.push(`${path}${field.name}: required`);
      continue;
    }
    if (field.fieldKind === "enum" && !field.enum.values.some((v) => v.number === value)) {
      problems.push(`${path}${field.name}: unknown enum value ${value}`);
      continue;
    }
    if (field.fieldKind === "scalar" && UNSIGNED_64.has(field.scalar) && value > MAX_STORED_INTEGER) {
      // A valid uint64 that no store can hold: refused here, as in Python.
      problems.push(`${path}${field.name}: larger than ${MAX_STORED_INTEGER}`);
      continue;
    }
    if (rules === undefined) continue;
    if (rules.required && isEmpty(value)) {
      problems.push(`${path}${field.name}: required`);
      continue;
    }
    if (typeof value === "string") {
      // A string has no more code points than UTF-16 units: most need no count.
      if (rules.maxLength && value.length > rules.maxLength && codePoints(value) > rules.maxLength) {
        problems.push(`${path}${field.name}: longer than ${rules.maxLength} characters`);
      }
      if (rules.uuid4 && value && !isUuid4(value)) {
        problems.push(`${path}${field.name}: not a lower-case UUID4`);
      }
    }
  }
  if (schema.typeName === OUTGOING_MESSAGE) problems.push(...outgoingProblems(message, path));
  return problems;
}

function isPlainObject(value) {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * The JSON path (as the sender spelled it) of the first key protobuf-es refuses, so a
 * parse error names the offending field the way Python's json_format does. Each key is
 * decoded alone through the generated schema; null when no single key is to blame.
 */
function locateJsonDefect(schema, json, path) {
  if (!isPlainObject(json)) return null;
  for (const [key, value] of Object.entries(json)) {
    const field = schema.fields.find((f) => f.jsonName === key || f.name === key);
    if (field === undefined) return `${path}${key}`;
    try {
      fromJson(schema, { [key]: value }, { ignoreUnknownFields: false });
    } catch {
      if (field.fieldKind === "message" && isPlainObject(value)) {
        return locateJsonDefect(field.message, value, `${path}${key}.`) ?? `${path}${key}`;
      }
      return `${path}${key}`;
    }
  }
  return null;
}

function tokens(text) {
  return Array.from(text.matchAll(TOKEN), (m) => m[0]);
}

function tooDeep(text) {
  let opened = 0;
  for (const ch of text) if (ch === "{" || ch === "[") opened += 1;
  if (opened <= MAX_JSON_DEPTH) return false;
  let depth = 0;
  for (const token of text.matchAll(TOKEN)) {
    const t = token[0];
    if (t === "{" || t === "[") {
      depth += 1;
      if (depth > MAX_JSON_DEPTH) return true;
    } else if (t === "}" || t === "]") depth -= 1;
  }
  return false;
}

/**
 * What JSON.parse lets through but both sides refuse: a key given twice, or one field
 * in two spellings (frameId / frame_id), and numbers of 2^53 or more. Python finds the
 * same with json.loads hooks (object_pairs_hook, parse_int, parse_float). Only called
 * on text JSON.parse accepted, so every token is well formed.
 */
function jsonDefect(text) {
  const objects = [];
  let previous = "";
  for (const match of text.matchAll(TOKEN)) {
    const t = match[0];
    if (t === "{") objects.push(new Map());
    else if (t === "[") objects.push(null);
    else if (t === "}" || t === "]") objects.pop();
    else if (t === ":") {
      const keys = objects[objects.length - 1];
      const key = JSON.parse(previous);
      // Compared without case and underscores; a collision that is not one field
      // includes an unknown key, which is refused anyway.
      const folded = key.replaceAll("_", "").toLowerCase();
      if (keys.has(folded)) return `field '${key}' given twice (also as '${keys.get(folded)}')`;
      keys.set(folded, key);
    } else if (t !== "," && t[0] !== '"' && t !== "true" && t !== "false" && t !== "null") {
      if (!(Math.abs(Number(t)) < MAX_JSON_NUMBER)) {
        return `number ${t.slice(0, 40)} is 2^53 or more; send 64-bit integers as strings`;
      }
    }
    previous = t;
  }
  return null;
}

/**
 * The top-level frame id when the frame names exactly one, without decoding the rest:
 * works on frames too deep or too broken to decode, and never echoes an ambiguous id.
 */
function salvageFrameId(text) {
  const all = tokens(text);
  const found = [];
  let depth = 0;
  all.forEach((t, i) => {
    if (t === "{" || t === "[") depth += 1;
    else if (t === "}" || t === "]") depth -= 1;
    else if (depth === 1 && t[0] === '"' && all[i + 1] === ":") {
      let key;
      try {
        key = JSON.parse(t);
      } catch {
        return;
      }
      if (ID_KEYS.has(key)) found.push(all[i + 2] ?? "");
    }
  });
  if (found.length !== 1 || found[0][0] !== '"') return "";
  let frameId;
  try {
    frameId = JSON.parse(found[0]);
  } catch {
    return "";
  }
  if (typeof frameId !== "string" || !frameId.isWellFormed()) return "";
  return Array.from(frameId).slice(0, MAX_SALVAGED_ID).join("");
}

/**
 * Parses and validates one frame; throws FrameError with a reason on any defect.
 * @template {import("@bufbuild/protobuf").DescMessage} S
 * @param {string | Uint8Array} input
 * @param {S} schema
 * @returns {import("@bufbuild/protobuf").MessageShape<S>}
 */
export function parseFrame(input, schema) {
  const size = typeof input === "string" ? Buffer.byteLength(input, "utf8") : input.byteLength;
  const limit = schema.typeName === GatewayFrameSchema.typeName ? MAX_GATEWAY_FRAME_BYTES : MAX_FRAME_BYTES;
  if (size > limit) {
    throw new FrameError(`frame is ${size} bytes, more than the ${limit} allowed`);
  }
  let text;
  try {
    text = typeof input === "string" ? input : STRICT_UTF8.decode(input);
  } catch (err) {
    throw new FrameError(`malformed frame: not UTF-8: ${err.message}`);
  }
  if (tooDeep(text)) {
    throw new FrameError(
      `malformed frame: JSON nested deeper than ${MAX_JSON_DEPTH} levels`,
      salvageFrameId(text),
    );
  }
  let raw;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new FrameError(`malformed frame: not JSON: ${err.message}`, salvageFrameId(text));
  }
  const defect = jsonDefect(text);
  if (defect !== null) throw new FrameError(`malformed frame: ${defect}`, salvageFrameId(text));
  let message;
  try {
    message = fromJson(schema, raw, { ignoreUnknownFields: false });
  } catch (err) {
    const where = locateJsonDefect(schema, raw, "");
    const detail = where ? `${where}: ${err.message}` : err.message;
    throw new FrameError(`malformed frame: ${detail}`, salvageFrameId(text));
  }
  const problems = validateMessage(schema, message);
  if (problems.length > 0) {
    throw new FrameError(`invalid frame: ${problems.join("; ")}`, salvageFrameId(text));
  }
  return message;
}

// The ack the gateway sends for nearly every frame, exactly as its encoder writes it
// (services/gateway/ack_encoding.py): a UUID4 frame id and a named status, no reason.
// Text of this shape is valid by construction, so it skips the general parser (a tenth
// of the Node server's CPU went to parsing acks); anything else takes the full path.
const PLAIN_ACK = /^\{"ack": \{"frameId": "([0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12})", "status": "(ACK_STATUS_[A-Z]+)"\}\}$/;
const PLAIN_ACK_MAX_BYTES = 128;
const ACK_TYPE_NAME = GatewayFrameSchema.field.ack.message.typeName;
const ACK_STATUS_NUMBERS = new Map(AckStatusSchema.values.filter((v) => v.number !== 0).map((v) => [v.name, v.number]));

function plainAck(input) {
  const size = typeof input === "string" ? input.length : input.byteLength;
  if (size > PLAIN_ACK_MAX_BYTES) return undefined;
  // Latin-1 reads ASCII bytes as UTF-8 does; any other byte fails the pattern.
  const match = PLAIN_ACK.exec(typeof input === "string" ? input : Buffer.from(input.buffer, input.byteOffset, input.byteLength).toString("latin1"));
  const status = match && ACK_STATUS_NUMBERS.get(match[2]);
  if (!status) return undefined;
  // The message as fromJson builds it (protobuf-es messages are plain objects), written
  // out: create() costs several times the parse it replaces.
  return {
    $typeName: GatewayFrameSchema.typeName,
    frameId: "",
    payload: { case: "ack", value: { $typeName: ACK_TYPE_NAME, frameId: match[1], status } },
  };
}

/** A frame received from the gateway. */
export function parseGatewayFrame(input) {
  return plainAck(input) ?? parseFrame(input, GatewayFrameSchema);
}

/** A frame received from the Node server (used by tests and tools acting as gateway). */
export function parseNodeFrame(input) {
  return parseFrame(input, NodeFrameSchema);
}

const planned = planJsonEncoder([NodeFrameSchema, GatewayFrameSchema]);

/** Canonical proto3 JSON, the only encoding that crosses the WebSocket. */
export function encodeFrame(schema, message) {
  try {
    return planned(schema, message);
  } catch (err) {
    // What the plan does not expect, toJsonString writes (or refuses with its reason).
    if (!(err instanceof UnplannedValue)) throw err;
    return toJsonString(schema, message);
  }
}

/**
 * Builds a NodeFrame from a plain init object, refusing to build one that the gateway
 * would reject (a bug here must surface in Node's logs, not as a REJECTED ack).
 * @param {any} init e.g. `{ frameId, payload: { case: "textMessage", value: {...} } }`
 */
export function buildNodeFrame(init) {
  const frame = create(NodeFrameSchema, { frameId: newFrameId(), ...init });
  const problems = validateMessage(NodeFrameSchema, frame);
  if (problems.length > 0) throw new FrameError(`invalid frame: ${problems.join("; ")}`);
  return frame;
}

/** Builds a GatewayFrame (used by tests and tools acting as gateway). */
export function buildGatewayFrame(init) {
  return create(GatewayFrameSchema, init);
}

export function encodeNodeFrame(frame) {
  return encodeFrame(NodeFrameSchema, frame);
}

export function encodeGatewayFrame(frame) {
  return encodeFrame(GatewayFrameSchema, frame);
}

/** A fresh frame id; frames are keyed by it in the outbox and in acks. */
export function newFrameId() {
  return randomUUID();
}

export { fromJson, toJson, toBinary, fromBinary, NodeFrameSchema, GatewayFrameSchema };
