// Several frames in one WebSocket message, one per line, when both sides agreed to it
// (services/common/wire_batch.py is the gateway's half). Node sends the handshake header
// `Chatbot-Wire-Batch: 1`; a gateway that answers the upgrade with the same header writes
// the acks of one event-loop turn as one message, and Node then sends the frames it has
// ready in one turn as one message. Without the answer (an older gateway) every message
// holds one frame. A header, not a WebSocket subprotocol: `ws` drops a connection whose
// server selects none of the offered subprotocols, as an older gateway would.
// Canonical proto3 JSON holds no raw newline (one inside a string is escaped), so a
// newline can only separate frames.

export const BATCH_HEADER = "Chatbot-Wire-Batch";
export const BATCH_VERSION = "1";
/**
 * Characters of frames joined into one message at most (a longer frame goes alone): at
 * three UTF-8 bytes per character still below the 256 KiB frame limit, which the
 * gateway's largest WebSocket message must exceed (GATEWAY_WS_MAX_MESSAGE_BYTES).
 */
export const MAX_BATCH_CHARS = 64 * 1024;
const NEWLINE = 0x0a;

/**
 * The frames of one message of a batching connection, in order, as the same type they
 * came in (a Buffer is split without decoding it: UTF-8 never holds the newline byte
 * inside a character). Empty lines are skipped.
 * @param {string | Buffer} data
 * @returns {(string | Buffer)[]}
 */
export function splitFrames(data) {
  if (typeof data === "string") return data.includes("\n") ? data.split("\n").filter((part) => part.length > 0) : [data];
  let start = 0;
  let end = data.indexOf(NEWLINE);
  if (end === -1) return [data];
  const parts = [];
  while (end !== -1) {
    if (end > start) parts.push(data.subarray(start, end));
    start = end + 1;
    end = data.indexOf(NEWLINE, start);
  }
  if (start < data.length) parts.push(data.subarray(start));
  return parts;
}
