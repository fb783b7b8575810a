// Sender text as every field of a frame carries it. Shared by every module that builds
// typed fields, so one rule applies to all of them.

// C0 and C1 control characters except tab, newline and carriage return, which texts keep.
const CONTROL = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]/g;

function str(value) {
  return typeof value === "string" ? value : "";
}

/**
 * Control characters removed, lone surrogates replaced, cut to at most `max` code
 * points (what the wire's max_length counts).
 */
export function clip(value, max) {
  const raw = str(value);
  // Measured on a bounded prefix so a megabyte-long field costs no more than a short one.
  const s = (raw.length > max * 2 + 2 ? raw.slice(0, max * 2 + 2) : raw).replace(CONTROL, "").toWellFormed();
  const points = Array.from(s);
  return points.length <= max ? s : points.slice(0, max).join("");
}

/** A WhatsApp type name reduced to letters, digits and underscores (at most 64). */
export function sanitizeTypeName(value) {
  return clip(str(value).replace(/[^A-Za-z0-9_]/g, ""), 64) || "unknown";
}
