// A real WebSocket server on 127.0.0.1 that plays the gateway: it checks the bearer
// token, parses every NodeFrame with the strict parser and answers with acks chosen by
// the test. With `batches: true` it accepts frame batches as the gateway does
// (src/wire_batch.js): it answers the handshake header, splits each message into its
// frames and writes the acks of one turn as one message.
import { once } from "node:events";
import { WebSocketServer } from "ws";
import { AckStatus } from "../../src/gen/chatbot/wire/v1/frames_pb.js";
import { buildGatewayFrame, encodeGatewayFrame, parseNodeFrame } from "../../src/wire.js";
import { BATCH_HEADER, BATCH_VERSION, splitFrames } from "../../src/wire_batch.js";

export const TOKEN = "test-gateway-token";

/**
 * @param {{ port?: number, decide?: (frame: any, count: number) => number | null, batches?: boolean }} options
 *   decide returns the AckStatus for a frame, or null to stay silent
 */
export async function startGateway({ port = 0, decide = () => AckStatus.ACCEPTED, batches = false } = {}) {
  const received = []; // every NodeFrame, in arrival order
  const messages = []; // how many frames each WebSocket message from Node held
  const ackMessages = []; // how many acks each WebSocket message to Node held
  const authHeaders = [];
  const seenCount = new Map();
  const wss = new WebSocketServer({
    host: "127.0.0.1",
    port,
    verifyClient: (info) => {
      authHeaders.push(info.req.headers.authorization);
      return info.req.headers.authorization === `Bearer ${TOKEN}`;
    },
  });
  await once(wss, "listening");
  const offered = (req) => batches && req.headers[BATCH_HEADER.toLowerCase()] === BATCH_VERSION;
  wss.on("headers", (headers, req) => {
    if (offered(req)) headers.push(`${BATCH_HEADER}: ${BATCH_VERSION}`);
  });
  const gateway = {
    port: wss.address().port,
    url: `ws://127.0.0.1:${wss.address().port}/ws`,
    received,
    messages,
    ackMessages,
    authHeaders,
    decide,
    sockets: new Set(),
    /** Data frames (not acks), in arrival order. */
    data() {
      return received.filter((f) => f.payload.case !== "ack");
    },
    acks() {
      return received.filter((f) => f.payload.case === "ack").map((f) => f.payload.value);
    },
    send(frame) {
      for (const ws of gateway.sockets) ws.send(encodeGatewayFrame(buildGatewayFrame(frame)));
    },
    async waitFor(predicate, timeoutMs = 5000) {
      const started = Date.now();
      while (!predicate()) {
        if (Date.now() - started > timeoutMs) throw new Error("fake gateway: condition not met in time");
        await new Promise((r) => setTimeout(r, 10));
      }
    },
    async close() {
      for (const ws of gateway.sockets) ws.terminate();
      await new Promise((resolve) => wss.close(resolve));
    },
  };
  wss.on("connection", (ws, req) => {
    const batched = offered(req);
    let acks = [];
    const reply = (text) => {
      if (!batched) {
        ackMessages.push(1);
        ws.send(text);
        return;
      }
      acks.push(text);
      if (acks.length > 1) return;
      setImmediate(() => {
        ackMessages.push(acks.length);
        ws.send(acks.join("\n"));
        acks = [];
      });
    };
    gateway.sockets.add(ws);
    ws.on("close", () => gateway.sockets.delete(ws));
    ws.on("message", (data) => {
      const parts = batched ? splitFrames(data) : [data];
      messages.push(parts.length);
      for (const part of parts) {
        const frame = parseNodeFrame(part);
        received.push(frame);
        if (frame.payload.case === "ack") continue;
        const n = (seenCount.get(frame.frameId) ?? 0) + 1;
        seenCount.set(frame.frameId, n);
        const status = gateway.decide(frame, n);
        if (status === null) continue;
        reply(encodeGatewayFrame(buildGatewayFrame({
          payload: { case: "ack", value: { frameId: frame.frameId, status, reason: status === AckStatus.REJECTED ? "test says no" : undefined } },
        })));
      }
    });
  });
  return gateway;
}
