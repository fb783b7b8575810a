// Poll vote encryption as a WhatsApp client performs it: the inverse of Baileys'
// decryptPollVote. The server itself only decrypts; this is used by the demo socket
// (to script votes the real handler must decrypt) and by the tests.
import { randomBytes } from "node:crypto";
import { aesEncryptGCM, hmacSign, proto, sha256 } from "baileys";

/**
 * Encrypts a vote for the named options of one poll.
 *
 * @param {{ optionNames: string[], pollMsgId: string, pollCreatorJid: string,
 *   voterJid: string, encKey: Uint8Array }} vote encKey is the poll's messageSecret
 * @returns {{ encPayload: Uint8Array, encIv: Uint8Array }} the pollUpdateMessage's `vote`
 */
export function encryptPollVote({ optionNames, pollMsgId, pollCreatorJid, voterJid, encKey }) {
  // WhatsApp sends the SHA-256 of each chosen option's name, not the name.
  const plaintext = proto.Message.PollVoteMessage.encode({
    selectedOptions: optionNames.map((n) => sha256(Buffer.from(n))),
  }).finish();
  const sign = Buffer.concat([
    Buffer.from(pollMsgId),
    Buffer.from(pollCreatorJid),
    Buffer.from(voterJid),
    Buffer.from("Poll Vote"),
    new Uint8Array([1]),
  ]);
  const key0 = hmacSign(encKey, new Uint8Array(32), "sha256");
  const encKeyForVote = hmacSign(sign, key0, "sha256");
  const encIv = new Uint8Array(randomBytes(12));
  const encPayload = aesEncryptGCM(plaintext, encKeyForVote, encIv, Buffer.from(`${pollMsgId}\u0000${voterJid}`));
  return { encPayload: new Uint8Array(encPayload), encIv };
}
