// Baileys-shaped WAMessage objects (as `messages.upsert` delivers them) and an injected
// downloader that serves their bytes the way downloadMediaMessage does: as a stream.
import { createHash } from "node:crypto";
import { Readable } from "node:stream";
import { nowSeconds } from "./clock.js";

export const CHAT = "4915112345678@s.whatsapp.net";
export const GROUP = "120363025246125888@g.us";
export const MEMBER = "4917600000001@s.whatsapp.net";
// Message timestamps a minute ago, so windowed paths see a recent message on any day.
export const TS = nowSeconds(-60);

let counter = 0;
export function nextId() {
  counter += 1;
  return `3EB0${String(counter).padStart(16, "0")}`;
}

export function sha256(bytes) {
  return new Uint8Array(createHash("sha256").update(bytes).digest());
}

/** A WAMessage from a 1:1 chat (or a group when `group` is given). */
export function waMessage(message, { id = nextId(), group, fromMe = false, timestamp = TS } = {}) {
  return {
    key: group
      ? { remoteJid: group, fromMe, id, participant: MEMBER }
      : { remoteJid: CHAT, fromMe, id },
    messageTimestamp: timestamp,
    pushName: "Alice",
    message,
  };
}

/** Media content fields as WhatsApp sends them; fileLength is a Long-like object. */
export function mediaFields(bytes, extra = {}) {
  return {
    url: "https://mmg.whatsapp.net/v/t62.7118-24/fake.enc",
    directPath: "/v/t62.7118-24/fake.enc",
    mediaKey: new Uint8Array(32).fill(7),
    fileSha256: sha256(bytes),
    fileEncSha256: new Uint8Array(32).fill(9),
    fileLength: { low: bytes.length, high: 0, unsigned: true },
    ...extra,
  };
}

/**
 * A downloader keyed by message id. `behaviour[id]` may be:
 *  - a Buffer: streamed in chunks;
 *  - { fail: Error } : rejected before any byte;
 *  - { expiredUntilReupload: Buffer }: 410 until the message has been re-uploaded.
 */
export function fakeDownloader(behaviour) {
  const calls = [];
  const download = async (msg) => {
    calls.push(msg.key.id);
    const b = behaviour[msg.key.id];
    if (b === undefined) throw Object.assign(new Error("no such media"), { output: { statusCode: 404 } });
    if (b.fail) throw b.fail;
    if (b.expiredUntilReupload) {
      if (!msg.reuploaded) {
        throw Object.assign(new Error("Failed to fetch stream"), { isBoom: true, output: { statusCode: 410 } });
      }
      return chunks(b.expiredUntilReupload);
    }
    if (b.failMidStream) {
      return Readable.from((async function* () {
        yield b.failMidStream.subarray(0, 10);
        throw new Error("bad decrypt");
      })());
    }
    return chunks(b);
  };
  return { download, calls };
}

function chunks(buf) {
  const parts = [];
  for (let i = 0; i < buf.length; i += 1000) parts.push(buf.subarray(i, i + 1000));
  return Readable.from(parts);
}
