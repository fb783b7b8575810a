// Group system events. Baileys delivers "X added Y", "Y left", "the subject changed" …
// as messages with no content and a `messageStubType`; they are events of the group,
// never something a person wrote, and reach the bot only when its settings ask for them.

import { WAMessageStubType } from "baileys";
import { GroupAction } from "./gen/chatbot/common/v1/details_pb.js";
import { clip, sanitizeTypeName } from "./text.js";

const MAX_PARTICIPANTS = 32;

const ACTIONS = new Map([
  ["GROUP_PARTICIPANT_ADD", GroupAction.ADD],
  ["GROUP_PARTICIPANT_INVITE", GroupAction.ADD],
  ["GROUP_PARTICIPANT_ADD_REQUEST_JOIN", GroupAction.JOIN],
  ["GROUP_PARTICIPANT_ACCEPT", GroupAction.JOIN],
  ["GROUP_PARTICIPANT_LINKED_GROUP_JOIN", GroupAction.JOIN],
  ["GROUP_PARTICIPANT_REMOVE", GroupAction.REMOVE],
  ["GROUP_PARTICIPANT_LEAVE", GroupAction.LEAVE],
  ["GROUP_PARTICIPANT_PROMOTE", GroupAction.PROMOTE],
  ["GROUP_PARTICIPANT_DEMOTE", GroupAction.DEMOTE],
  ["GROUP_CHANGE_SUBJECT", GroupAction.SUBJECT],
  ["GROUP_CHANGE_DESCRIPTION", GroupAction.DESCRIPTION],
  ["GROUP_CHANGE_ICON", GroupAction.ICON],
  ["GROUP_CHANGE_RESTRICT", GroupAction.SETTINGS],
  ["GROUP_CHANGE_ANNOUNCE", GroupAction.SETTINGS],
  ["GROUP_MEMBER_ADD_MODE", GroupAction.SETTINGS],
  ["GROUP_MEMBERSHIP_JOIN_APPROVAL_MODE", GroupAction.SETTINGS],
  ["GROUP_CREATE", GroupAction.CREATE],
]);

/** Actions whose parameters are participants (the others carry a new value). */
const PARTICIPANT_ACTIONS = new Set([GroupAction.ADD, GroupAction.JOIN, GroupAction.REMOVE, GroupAction.LEAVE, GroupAction.PROMOTE, GroupAction.DEMOTE]);
const VALUE_ACTIONS = new Set([GroupAction.SUBJECT, GroupAction.DESCRIPTION, GroupAction.SETTINGS, GroupAction.CREATE]);

/** The stub type's name (`GROUP_PARTICIPANT_ADD`), or undefined for a non-stub. */
export function stubName(msg) {
  const type = msg?.messageStubType;
  if (typeof type === "string") return WAMessageStubType[type] === undefined ? undefined : type;
  return typeof type === "number" && type > 0 ? WAMessageStubType[type] : undefined;
}

/** True for a stub that is an event of a group (or community) rather than a message. */
export function isGroupStub(msg) {
  const name = stubName(msg);
  return name !== undefined && (name.startsWith("GROUP_") || name.startsWith("COMMUNITY_"));
}

/**
 * One participant of a stub: Baileys 7 writes JSON (`{"id", "phoneNumber", "lid"}`),
 * older versions the bare JID.
 */
function participantOf(param) {
  const text = typeof param === "string" ? param : "";
  if (text.startsWith("{") && text.length < 4096) {
    try {
      const p = JSON.parse(text);
      return { id: String(p?.id ?? ""), alternatives: [p?.lid, p?.phoneNumber].filter((x) => typeof x === "string") };
    } catch {
      return { id: "", alternatives: [] };
    }
  }
  return { id: text, alternatives: [] };
}

/**
 * The GroupEvent of a group stub. `resolve` names each participant as the frame names
 * people (LID when known, phone number beside it); `isBot` tells the bot's own ids.
 * @param {any} msg
 * @param {(jid: string, ...alts: string[]) => Promise<{ id: string, phone?: string }>} resolve
 * @param {(jid: string) => boolean} isBot
 */
export async function groupEvent(msg, resolve, isBot) {
  const name = stubName(msg) ?? "unknown";
  const action = ACTIONS.get(name) ?? GroupAction.OTHER;
  const params = Array.isArray(msg.messageStubParameters) ? msg.messageStubParameters : [];
  const participants = [];
  let omitted = 0;
  if (PARTICIPANT_ACTIONS.has(action)) {
    for (const param of params) {
      const p = participantOf(param);
      if (!p.id) continue;
      if (participants.length >= MAX_PARTICIPANTS) {
        omitted += 1;
        continue;
      }
      const who = await resolve(p.id, ...p.alternatives);
      if (!who.id) continue;
      participants.push({ jid: clip(who.id, 256), phone: who.phone, isBot: isBot(who.id) || (who.phone !== undefined && isBot(`${who.phone}@s.whatsapp.net`)) });
    }
  }
  return {
    action,
    stubType: sanitizeTypeName(name),
    participants,
    omittedParticipantCount: omitted,
    newValue: VALUE_ACTIONS.has(action) ? clip(params[0], 2048) : "",
  };
}
