// Acks in the gateway's exact shape skip the general parser: they must come out as the
// general parser reads them, and every other text must get the general parser's verdict.
import { test } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { equals } from "@bufbuild/protobuf";
import { GatewayFrameSchema, FrameError, parseFrame, parseGatewayFrame } from "../src/wire.js";

function verdict(parse, input) {
  try {
    return { frame: parse(input) };
  } catch (err) {
    assert.ok(err instanceof FrameError, String(err));
    return { reason: err.reason, frameId: err.frameId };
  }
}

function assertSameVerdict(input) {
  const fast = verdict(parseGatewayFrame, input);
  const full = verdict((text) => parseFrame(text, GatewayFrameSchema), input);
  if (full.frame) {
    assert.ok(fast.frame, `accepted by the full parser only: ${input}`);
    assert.ok(equals(GatewayFrameSchema, fast.frame, full.frame), `read differently: ${input}`);
    assert.deepEqual(fast.frame, full.frame, `built differently: ${input}`);
  } else {
    assert.deepEqual(fast, full, String(input));
  }
  return full;
}

test("the gateway's plain acks read as the full parser reads them, as text and as bytes", () => {
  for (const status of ["ACK_STATUS_ACCEPTED", "ACK_STATUS_DUPLICATE", "ACK_STATUS_REJECTED", "ACK_STATUS_RETRY"]) {
    const text = `{"ack": {"frameId": "${randomUUID()}", "status": "${status}"}}`;
    assert.ok(assertSameVerdict(text).frame, text);
    assert.ok(assertSameVerdict(Buffer.from(text)).frame, text);
  }
});

test("texts near the plain ack's shape get the full parser's verdict", () => {
  const id = randomUUID();
  const inputs = [
    `{"ack": {"frameId": "${id}", "status": "ACK_STATUS_ACCEPTED", "reason": "fine"}}`,
    `{"ack": {"frameId": "${id.toUpperCase()}", "status": "ACK_STATUS_ACCEPTED"}}`,
    `{"ack": {"frameId": "${id}", "status": "ACK_STATUS_UNSPECIFIED"}}`,
    `{"ack": {"frameId": "${id}", "status": "ACK_STATUS_BOGUS"}}`,
    `{"ack": {"frameId": "${id}", "status": "ACK_STATUS_ACCEPTED"}}\n`,
    `{"ack": {"frameId": "${id}", "status": "ACK_STATUS_ACCEPTED"}, "ack": {}}`,
    `{"ack":{"frameId":"${id}","status":"ACK_STATUS_RETRY"}}`,
    `{"ack": {"frameId": "not-a-uuid", "status": "ACK_STATUS_ACCEPTED"}}`,
  ];
  for (const input of inputs) assertSameVerdict(input);
  // Bytes that are not ASCII (nor UTF-8) in an otherwise plain ack.
  const bytes = Buffer.from(`{"ack": {"frameId": "${id}", "status": "ACK_STATUS_ACCEPT\u00c9D"}}`, "latin1");
  assert.match(assertSameVerdict(bytes).reason, /not UTF-8/);
});
