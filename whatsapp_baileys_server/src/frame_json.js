// Canonical proto3 JSON of a frame, byte for byte what protobuf-es' toJsonString writes,
// from a plan of each message's fields made once at load. toJsonString reflects over the
// descriptors for every message it writes; encoding each frame that way was a tenth of
// the Node server's CPU. The plan takes the same decisions in the same order (fields by
// number, proto3 presence, enum names, 64-bit integers as strings, standard base64) and
// writes the text directly, each string and number as JSON.stringify writes it (building
// an object for JSON.stringify cost as much again); any value the plan does not expect
// makes the caller fall back to toJsonString (test/frame_json.test.js compares both on
// every fixture and on seeded random frames).

import { ScalarType, toJson } from "@bufbuild/protobuf";
import { base64Encode } from "@bufbuild/protobuf/wire";

// google.protobuf.FeatureSet.FieldPresence.IMPLICIT, as protobuf-es names it.
const IMPLICIT = 2;
const TIMESTAMP = "google.protobuf.Timestamp";
const MIN_TIMESTAMP_MS = Date.parse("0001-01-01T00:00:00Z");
const MAX_TIMESTAMP_MS = Date.parse("9999-12-31T23:59:59Z");
const INT32_KINDS = new Set([ScalarType.INT32, ScalarType.SFIXED32, ScalarType.SINT32, ScalarType.FIXED32, ScalarType.UINT32]);
const INT64_KINDS = new Set([ScalarType.UINT64, ScalarType.FIXED64, ScalarType.INT64, ScalarType.SFIXED64, ScalarType.SINT64]);

/** A value the plan does not encode as toJsonString would (the caller falls back). */
export class UnplannedValue extends Error {}

function unplanned(what) {
  throw new UnplannedValue(what);
}

/** protobuf-es' isScalarZeroValue: an implicit-presence scalar with it is not written. */
function isZero(scalar, value) {
  switch (scalar) {
    case ScalarType.BOOL:
      return value === false;
    case ScalarType.STRING:
      return value === "";
    case ScalarType.BYTES:
      return value instanceof Uint8Array && !value.byteLength;
    case ScalarType.DOUBLE:
    case ScalarType.FLOAT:
      return Object.is(value, 0);
    default:
      return value == 0; // eslint-disable-line eqeqeq -- 0n, 0 and "0", as protobuf-es
  }
}

function scalarJson(scalar, value) {
  if (INT32_KINDS.has(scalar)) return typeof value === "number" ? value : unplanned("int32");
  if (INT64_KINDS.has(scalar)) {
    if (typeof value === "bigint" || typeof value === "string" || (typeof value === "number" && Number.isInteger(value))) return value.toString();
    return unplanned("int64");
  }
  switch (scalar) {
    case ScalarType.STRING:
      return typeof value === "string" ? value : unplanned("string");
    case ScalarType.BOOL:
      return typeof value === "boolean" ? value : unplanned("bool");
    case ScalarType.BYTES:
      return value instanceof Uint8Array ? base64Encode(value) : unplanned("bytes");
    case ScalarType.FLOAT:
    case ScalarType.DOUBLE:
      if (typeof value !== "number") return unplanned("double");
      if (Number.isNaN(value)) return "NaN";
      if (value === Number.POSITIVE_INFINITY) return "Infinity";
      if (value === Number.NEGATIVE_INFINITY) return "-Infinity";
      return value;
    default:
      return unplanned(`scalar ${scalar}`);
  }
}

function pad2(n) {
  return n < 10 ? `0${n}` : String(n);
}

/**
 * `YYYY-MM-DDTHH:MM:SS` of whole seconds since the epoch (years 1 to 9999), as
 * Date.toISOString writes it, by arithmetic (Hinnant's civil-from-days): building a Date
 * to format it cost as much as writing the rest of the frame.
 */
export function isoSeconds(seconds) {
  const days = Math.floor(seconds / 86_400);
  const inDay = seconds - days * 86_400;
  const z = days + 719_468;
  const era = Math.floor(z / 146_097);
  const doe = z - era * 146_097;
  const yoe = Math.floor((doe - Math.floor(doe / 1460) + Math.floor(doe / 36_524) - Math.floor(doe / 146_096)) / 365);
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100));
  const mp = Math.floor((5 * doy + 2) / 153);
  const day = doy - Math.floor((153 * mp + 2) / 5) + 1;
  const month = mp < 10 ? mp + 3 : mp - 9;
  const year = yoe + era * 400 + (month <= 2 ? 1 : 0);
  const hour = Math.floor(inDay / 3600);
  const minute = Math.floor((inDay % 3600) / 60);
  return `${String(year).padStart(4, "0")}-${pad2(month)}-${pad2(day)}T${pad2(hour)}:${pad2(minute)}:${pad2(inDay % 60)}`;
}

/** protobuf-es' timestampToJson, which refuses the same values (here: fall back). */
function timestampJson(value) {
  const ms = Number(value.seconds) * 1000;
  if (!(ms >= MIN_TIMESTAMP_MS && ms <= MAX_TIMESTAMP_MS)) return unplanned("timestamp range");
  if (!(value.nanos >= 0 && value.nanos <= 999_999_999)) return unplanned("timestamp nanos");
  let z = "Z";
  if (value.nanos > 0) {
    const nanos = (value.nanos + 1_000_000_000).toString().substring(1);
    if (nanos.substring(3) === "000000") z = `.${nanos.substring(0, 3)}Z`;
    else if (nanos.substring(6) === "000") z = `.${nanos.substring(0, 6)}Z`;
    else z = `.${nanos}Z`;
  }
  return `${isoSeconds(Number(value.seconds))}${z}`;
}

/**
 * The plan of every message reachable from the schemas: schema → its fields in number
 * order, each with what writing it takes. Built once; never changed after.
 */
function planAll(schemas) {
  const plans = new Map();
  const visit = (schema) => {
    if (plans.has(schema)) return;
    const fields = [];
    plans.set(schema, fields);
    for (const field of [...schema.fields].sort((a, b) => a.number - b.number)) {
      if (field.fieldKind === "map") throw new Error(`frame_json: ${field} is a map; add maps to the plan first`);
      const message = field.fieldKind === "message" || (field.fieldKind === "list" && field.listKind === "message") ? field.message : undefined;
      const enumeration = field.fieldKind === "enum" || (field.fieldKind === "list" && field.listKind === "enum") ? field.enum : undefined;
      fields.push({
        field,
        local: field.localName,
        oneof: field.oneof?.localName,
        key: `${JSON.stringify(field.jsonName)}:`,
        kind: field.fieldKind === "list" ? field.listKind : field.fieldKind,
        list: field.fieldKind === "list",
        implicit: field.presence === IMPLICIT,
        scalar: field.scalar,
        message,
        // A well-known type other than Timestamp is written by protobuf-es itself.
        wellKnown: message?.typeName.startsWith("google.protobuf.") ? message.typeName : undefined,
        enumNames: enumeration ? new Map(enumeration.values.map((v) => [v.number, JSON.stringify(v.name)])) : undefined,
        enumZero: enumeration?.values[0]?.number,
      });
      if (message && !message.typeName.startsWith("google.protobuf.")) visit(message);
    }
  };
  schemas.forEach(visit);
  return plans;
}

/** The JSON text of one value of the field. */
function itemJson(plans, step, value) {
  switch (step.kind) {
    case "scalar":
      return JSON.stringify(scalarJson(step.scalar, value));
    case "enum":
      if (typeof value !== "number") return unplanned("enum");
      return step.enumNames.get(value) ?? String(value);
    case "message":
      if (step.wellKnown === TIMESTAMP) return `"${timestampJson(value)}"`;
      if (step.wellKnown) return JSON.stringify(toJson(step.message, value));
      return messageJson(plans, step.message, value);
    default:
      return unplanned(step.kind);
  }
}

/** The JSON text of a message. */
function messageJson(plans, schema, message) {
  if (message?.$typeName !== schema.typeName) return unplanned(`not a ${schema.typeName}`);
  let json = "";
  for (const step of plans.get(schema)) {
    let value;
    if (step.oneof) {
      const slot = message[step.oneof];
      if (slot?.case !== step.local) continue;
      value = slot.value;
    } else {
      value = message[step.local];
      if (step.list) {
        if (!Array.isArray(value)) return unplanned("list");
        if (value.length === 0) continue;
        let items = "";
        for (const item of value) items += `${items ? "," : ""}${itemJson(plans, step, item)}`;
        json += `${json ? "," : ""}${step.key}[${items}]`;
        continue;
      }
      if (!step.implicit) {
        if (value === undefined || !Object.prototype.hasOwnProperty.call(message, step.local)) continue;
      } else if (step.kind === "scalar" ? isZero(step.scalar, value) : value === step.enumZero) {
        continue;
      }
    }
    json += `${json ? "," : ""}${step.key}${itemJson(plans, step, value)}`;
  }
  return `{${json}}`;
}

/**
 * An encoder of the given schemas' messages: `encode(schema, message)` returns the JSON
 * text, or throws UnplannedValue when toJsonString must do it.
 */
export function planJsonEncoder(schemas) {
  const plans = planAll(schemas);
  return (schema, message) => {
    if (!plans.has(schema)) return unplanned(`no plan for ${schema.typeName}`);
    return messageJson(plans, schema, message);
  };
}
