// A real WebSocket server on 127.0.0.1 that plays the gateway: it checks the bearer
// token, parses every NodeFrame with the strict parser and answers with acks chosen by
// the test.
import { once } from "node:events";
import { WebSocketServer } from "ws";
import { AckStatus } from "../../src/gen/chatbot/wire/v1/frames_pb.js";
import { buildGatewayFrame, encodeGatewayFrame, parseNodeFrame } from "../../src/wire.js";

export const TOKEN = "test-gateway-token";

/**
 * @param {{ port?: number, decide?: (frame: any, count: number) => number | null }} options
 *   decide returns the AckStatus for a frame, or null to stay silent
 */
export async function startGateway({ port = 0, decide = () => AckStatus.ACCEPTED } = {}) {
  const received = []; // every NodeFrame, in arrival order
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
  const gateway = {
    port: wss.address().port,
    url: `ws://127.0.0.1:${wss.address().port}/ws`,
    received,
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
  wss.on("connection", (ws) => {
    gateway.sockets.add(ws);
    ws.on("close", () => gateway.sockets.delete(ws));
    ws.on("message", (data) => {
      const frame = parseNodeFrame(data);
      received.push(frame);
      if (frame.payload.case === "ack") return;
      const n = (seenCount.get(frame.frameId) ?? 0) + 1;
      seenCount.set(frame.frameId, n);
      const status = gateway.decide(frame, n);
      if (status === null) return;
      ws.send(encodeGatewayFrame(buildGatewayFrame({
        payload: { case: "ack", value: { frameId: frame.frameId, status, reason: status === AckStatus.REJECTED ? "test says no" : undefined } },
      })));
    });
  });
  return gateway;
}
