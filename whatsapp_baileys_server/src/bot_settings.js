// Per-bot settings that decide which messages reach the bot, read from the config the
// gateway passes to POST /initialize. Every key is optional; the defaults are the
// README's: groups on, status updates off, channel posts off, the owner's own phone
// messages on (human takeover), group system events off.

export const SETTING_DEFAULTS = Object.freeze({
  groups: true,
  status: false,
  newsletters: false,
  owner_messages: true,
  group_events: false,
});

/** The problem with a config's settings keys, or undefined when they are valid. */
export function settingsProblem(config) {
  for (const name of Object.keys(SETTING_DEFAULTS)) {
    const value = config?.[name];
    if (value !== undefined && typeof value !== "boolean") return `config.${name} must be true or false`;
  }
  return undefined;
}

/**
 * The effective settings of a bot (defaults for keys not given).
 * @returns {{ groups: boolean, status: boolean, newsletters: boolean, ownerMessages: boolean, groupEvents: boolean }}
 */
export function botSettings(config) {
  const pick = (name) => (typeof config?.[name] === "boolean" ? config[name] : SETTING_DEFAULTS[name]);
  return {
    groups: pick("groups"),
    status: pick("status"),
    newsletters: pick("newsletters"),
    ownerMessages: pick("owner_messages"),
    groupEvents: pick("group_events"),
  };
}
