// Read receipts for bots that opt in (`read_receipts: true` in the bot's config; off by
// default): a message is marked read once the gateway acknowledged its frame as ACCEPTED
// or DUPLICATE, i.e. once it reached the bot's queue, never earlier, so a blue tick
// means the bot has it.

import { AckStatus } from "./gen/chatbot/wire/v1/frames_pb.js";

const MESSAGE_PAYLOADS = new Set([
  "textMessage",
  "mediaMessage",
  "corruptMediaMessage",
  "quotaExceededMediaMessage",
  "structuredMessage",
]);

/** The WhatsApp key of the message a frame carries, as readMessages wants it. */
export function readKeyOf(frame) {
  if (!MESSAGE_PAYLOADS.has(frame.payload.case)) return undefined;
  const header = frame.payload.value.header;
  if (!header) return undefined;
  const groupId = header.group?.groupId;
  return groupId
    ? { remoteJid: groupId, id: header.providerMessageId, participant: header.sender, fromMe: false }
    : { remoteJid: header.correspondentId, id: header.providerMessageId, fromMe: false };
}

/**
 * The GatewayClient's `onAcknowledged` hook.
 * @param {{ sessions: import("./sessions.js").SessionManager, logger: any }} options
 */
export function readReceipts({ sessions, logger }) {
  return (frame, status) => {
    if (status !== AckStatus.ACCEPTED && status !== AckStatus.DUPLICATE) return;
    const key = readKeyOf(frame);
    if (!key) return;
    const botId = frame.payload.value.header.botId;
    if (sessions.sessions.get(botId)?.config?.read_receipts !== true) return;
    const sock = sessions.socketFor(botId);
    if (!sock) return; // best effort: a receipt is not worth holding anything for
    sock.readMessages([key]).catch((err) => logger.warn({ err, bot_id: botId }, "could not send a read receipt"));
  };
}
