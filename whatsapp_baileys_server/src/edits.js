// Edits in every envelope Baileys 7 delivers. Newer clients seal an edit in a
// `secretEncryptedMessage` (secretEncType MESSAGE_EDIT) under the original message's
// `messageSecret`, the way poll votes are sealed: HMAC-SHA256 key derivation over
// `id ‖ original sender ‖ editor ‖ "Message Edit"`, then AES-256-GCM, but with no AAD
// (whatsmeow msgsecret.go; Baileys PR #2690). The sender may have derived the key with
// its LID or its phone JID, so both are tried; GCM refuses the wrong one.

import { aesDecryptGCM, aesEncryptGCM, hmacSign, proto } from "baileys";
import { randomBytes } from "node:crypto";

const SECRET_ENC = proto.Message.SecretEncryptedMessage.SecretEncType;
const USE_CASE = "Message Edit";

function editKey({ secret, messageId, originalSender, editor }) {
  const sign = Buffer.concat([
    Buffer.from(messageId),
    Buffer.from(originalSender),
    Buffer.from(editor),
    Buffer.from(USE_CASE),
    new Uint8Array([1]),
  ]);
  const key0 = hmacSign(secret, new Uint8Array(32), "sha256");
  return hmacSign(sign, key0, "sha256");
}

/** True for a secret-encrypted envelope that carries an edit. */
export function isSecretEdit(m) {
  const type = m?.secretEncType;
  return type === SECRET_ENC.MESSAGE_EDIT || type === "MESSAGE_EDIT";
}

/**
 * Bytes as Baileys decodes them (Uint8Array), or as JSON prints them (base64, or a
 * Node Buffer's {type, data}); undefined for anything else.
 */
export function bytes(value) {
  if (value instanceof Uint8Array) return value;
  if (typeof value === "string" && /^[A-Za-z0-9+/=]+$/.test(value)) return Buffer.from(value, "base64");
  if (value && typeof value === "object" && value.type === "Buffer" && Array.isArray(value.data)) return Buffer.from(value.data);
  // JSON.stringify of a Uint8Array: {"0": 115, "1": 147, …} (Evolution API stores them so).
  if (value && typeof value === "object" && "0" in value) {
    const list = Object.keys(value).length <= 65536 ? Array.from({ length: Object.keys(value).length }, (_, i) => value[i]) : [];
    if (list.length > 0 && list.every((b) => Number.isInteger(b) && b >= 0 && b <= 255)) return Buffer.from(list);
  }
  return undefined;
}

/**
 * The decrypted edit (`proto.Message`, normally a protocolMessage MESSAGE_EDIT with the
 * new content) or undefined when no candidate identity opens it.
 * @param {any} envelope the secretEncryptedMessage
 * @param {Uint8Array} secret the original message's messageSecret
 * @param {string[]} senders the editor's ids (LID, phone JID) as far as known
 */
export function decryptSecretEdit(envelope, secret, senders) {
  const payload = bytes(envelope?.encPayload);
  const iv = bytes(envelope?.encIv);
  const messageId = String(envelope?.targetMessageKey?.id ?? "");
  if (!payload || !iv || iv.length !== 12 || !messageId || !secret) return undefined;
  const candidates = [...new Set(senders.filter(Boolean))];
  for (const originalSender of candidates) {
    for (const editor of candidates) {
      try {
        const key = editKey({ secret, messageId, originalSender, editor });
        return proto.Message.decode(aesDecryptGCM(payload, key, iv, Buffer.alloc(0)));
      } catch {
        // Wrong identity (authentication failed): try the next pair.
      }
    }
  }
  return undefined;
}

/**
 * Seals an edit the way a WhatsApp client does (the inverse of decryptSecretEdit); used
 * by tests and the demo socket to script edits the real handler must open.
 */
export function encryptSecretEdit({ editedMessage, targetKey, secret, sender }) {
  const plaintext = proto.Message.encode({
    protocolMessage: { key: targetKey, type: proto.Message.ProtocolMessage.Type.MESSAGE_EDIT, editedMessage },
  }).finish();
  const key = editKey({ secret, messageId: targetKey.id, originalSender: sender, editor: sender });
  const encIv = new Uint8Array(randomBytes(12));
  const encPayload = new Uint8Array(aesEncryptGCM(plaintext, key, encIv, Buffer.alloc(0)));
  return { targetMessageKey: targetKey, encPayload, encIv, secretEncType: SECRET_ENC.MESSAGE_EDIT };
}

/**
 * The `messageSecret` of recent messages, by bot and message id, so a later sealed edit
 * can be opened. Bounded (least recently stored go first) and in memory: after a
 * restart, an edit of an older message arrives as an edit marker with `decrypted: false`.
 */
export class MessageSecrets {
  constructor({ max = 20_000 } = {}) {
    this.max = max;
    this.secrets = new Map();
  }

  put(botId, messageId, secret) {
    const value = bytes(secret);
    if (!value || value.length === 0 || !messageId) return;
    const key = `${botId}\u0000${messageId}`;
    this.secrets.delete(key);
    this.secrets.set(key, value);
    if (this.secrets.size > this.max) this.secrets.delete(this.secrets.keys().next().value);
  }

  get(botId, messageId) {
    return this.secrets.get(`${botId}\u0000${messageId}`);
  }
}
