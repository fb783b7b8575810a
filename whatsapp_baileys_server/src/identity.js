// One person, one id. WhatsApp addresses a person by a LID (`<n>@lid`) or by a phone
// JID (`<digits>@s.whatsapp.net`), and Baileys 7 gives the other one beside it when it
// knows it (`remoteJidAlt`, `participantAlt`, `senderPn`, `participantPn`) or keeps it
// in `sock.signalRepository.lidMapping`. Every frame names the person by the LID when
// one is known, else by the phone JID (device suffix stripped), and carries the phone
// number as digits; the pairs learned are reported to the gateway (identity_mappings).

import { jidNormalizedUser } from "baileys";
import { IdKind } from "./gen/chatbot/common/v1/context_pb.js";

const LOOKUP_TIMEOUT_MS = 500;
/** E.164 numbers have at most 15 digits (the wire allows 20). */
const PHONE = /^\d{5,15}$/;

/** `4915…:12@s.whatsapp.net` → `4915…@s.whatsapp.net`, `c.us` → `s.whatsapp.net`; "" for junk. */
export function bareJid(jid) {
  if (typeof jid !== "string" || !jid.includes("@") || jid.length > 256) return "";
  try {
    return jidNormalizedUser(jid) || "";
  } catch {
    return "";
  }
}

export function serverOf(jid) {
  return typeof jid === "string" ? jid.slice(jid.lastIndexOf("@") + 1) : "";
}

/** What kind of id a JID is. */
export function jidKind(jid) {
  switch (serverOf(jid)) {
    case "lid":
    case "hosted.lid":
      return IdKind.LID;
    case "s.whatsapp.net":
    case "c.us":
    case "hosted":
      return IdKind.PHONE;
    case "g.us":
      return IdKind.GROUP;
    case "newsletter":
      return IdKind.NEWSLETTER;
    case "broadcast":
      return IdKind.BROADCAST;
    default:
      return IdKind.UNSPECIFIED;
  }
}

export const isLid = (jid) => jidKind(jid) === IdKind.LID;
export const isPhoneJid = (jid) => jidKind(jid) === IdKind.PHONE;

/** The E.164 digits (no plus) of a phone JID, or undefined. */
export function phoneOf(jid) {
  if (!isPhoneJid(jid)) return undefined;
  const user = jid.slice(0, jid.indexOf("@")).split(":")[0];
  return PHONE.test(user) ? user : undefined;
}

function withTimeout(promise, ms) {
  let timer;
  return Promise.race([
    promise,
    new Promise((resolve) => {
      timer = setTimeout(resolve, ms, undefined);
    }),
  ]).finally(() => clearTimeout(timer));
}

/**
 * Resolves JIDs to `{ id, kind, phone }` per bot, learning LID↔phone pairs from message
 * keys and from Baileys' lid-mapping store. Pairs are kept in a bounded map per bot.
 * @param {{ lidMappingOf?: (botId: string) => any, maxPairs?: number, logger: any }} options
 */
export function createIdentityResolver({ lidMappingOf = () => undefined, maxPairs = 50_000, logger }) {
  /** @type {Map<string, { lidToPn: Map<string, string>, pnToLid: Map<string, string> }>} */
  const byBot = new Map();
  /** @type {Map<string, Map<string, string>>} pairs learned and not yet reported */
  const unreported = new Map();

  function pairsOf(botId) {
    let pairs = byBot.get(botId);
    if (!pairs) {
      pairs = { lidToPn: new Map(), pnToLid: new Map() };
      byBot.set(botId, pairs);
    }
    return pairs;
  }

  /** Records that `lid` and `pn` are one person; true when the pair is new. */
  function learn(botId, lid, pn) {
    const l = bareJid(lid);
    const p = bareJid(pn);
    if (!isLid(l) || !phoneOf(p)) return false;
    const pairs = pairsOf(botId);
    if (pairs.lidToPn.get(l) === p && pairs.pnToLid.get(p) === l) return false;
    pairs.lidToPn.set(l, p);
    pairs.pnToLid.set(p, l);
    for (const map of [pairs.lidToPn, pairs.pnToLid]) {
      if (map.size > maxPairs) map.delete(map.keys().next().value);
    }
    let pending = unreported.get(botId);
    if (!pending) {
      pending = new Map();
      unreported.set(botId, pending);
    }
    pending.set(l, p);
    return true;
  }

  async function lookup(botId, method, jid) {
    let store;
    try {
      store = lidMappingOf(botId);
      if (typeof store?.[method] !== "function") return undefined;
      const found = await withTimeout(Promise.resolve(store[method](jid)), LOOKUP_TIMEOUT_MS);
      return typeof found === "string" ? bareJid(found) : undefined;
    } catch (err) {
      // An older or broken store must never cost the message.
      logger.debug({ err, bot_id: botId, method }, "lid-mapping lookup failed");
      return undefined;
    }
  }

  /**
   * The person behind `jid`, given the alternative id the key carried (if any).
   * @returns {Promise<{ id: string, kind: number, phone?: string }>}
   */
  async function resolve(botId, jid, ...alternatives) {
    const ids = [jid, ...alternatives].map(bareJid).filter(Boolean);
    const primary = ids[0] ?? "";
    const kind = jidKind(primary);
    if (kind !== IdKind.LID && kind !== IdKind.PHONE) {
      const alt = ids.find((j) => isLid(j) || isPhoneJid(j));
      if (!alt) return { id: primary, kind };
    }
    let lid = ids.find(isLid);
    let pn = ids.find((j) => phoneOf(j) !== undefined);
    if (lid && pn) learn(botId, lid, pn);
    const pairs = pairsOf(botId);
    if (lid && !pn) pn = pairs.lidToPn.get(lid) ?? (await lookup(botId, "getPNForLID", lid));
    if (pn && !lid) lid = pairs.pnToLid.get(pn) ?? (await lookup(botId, "getLIDForPN", pn));
    if (lid && pn && !isLid(lid)) lid = undefined;
    if (lid && pn) learn(botId, lid, pn);
    const id = lid ?? pn ?? primary;
    return { id, kind: jidKind(id), phone: phoneOf(pn ?? "") };
  }

  /** The pairs learned since the last call, for one identity_mappings frame each 1000. */
  function takeUnreported(botId) {
    const pending = unreported.get(botId);
    unreported.delete(botId);
    return pending ? [...pending].map(([lid, phoneJid]) => ({ lid, phoneJid })) : [];
  }

  return { resolve, learn, takeUnreported };
}
