// The one rule of an outgoing message that depends on its kind (the proto options can
// only say "required" for every kind): which of text, media, emoji and target it needs.
// services/common/outgoing_rules.py applies the same rule with the same wording.

import { OutgoingKind } from "./gen/chatbot/wire/v1/frames_pb.js";

export const OUTGOING_MESSAGE = "chatbot.wire.v1.OutgoingMessage";

export const MEDIA_KINDS = new Set([
  OutgoingKind.IMAGE,
  OutgoingKind.DOCUMENT,
  OutgoingKind.AUDIO,
  OutgoingKind.VOICE_NOTE,
  OutgoingKind.VIDEO,
]);
const TEXT_KINDS = new Set([OutgoingKind.UNSPECIFIED, OutgoingKind.TEXT]);

/** What the message's kind requires and it lacks, as `path: problem`. */
export function outgoingProblems(message, path) {
  const kind = message.kind ?? OutgoingKind.UNSPECIFIED;
  if (OutgoingKind[kind] === undefined) return []; // already reported as an unknown enum value
  const name = `OUTGOING_KIND_${OutgoingKind[kind]}`;
  const problems = [];
  if (TEXT_KINDS.has(kind) && !message.text) problems.push(`${path}text: required`);
  const hasMedia = message.media !== undefined;
  if (MEDIA_KINDS.has(kind) && !hasMedia) problems.push(`${path}media: required for ${name}`);
  if (!MEDIA_KINDS.has(kind) && hasMedia) problems.push(`${path}media: not allowed for ${name}`);
  if (kind === OutgoingKind.REACTION && message.reactionEmoji === undefined) {
    problems.push(`${path}reaction_emoji: required for ${name}`);
  }
  if ((kind === OutgoingKind.REACTION || kind === OutgoingKind.READ) && !message.targetMessageId) {
    problems.push(`${path}target_message_id: required for ${name}`);
  }
  return problems;
}
