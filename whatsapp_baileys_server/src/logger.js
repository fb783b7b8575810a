// A small structured (JSON lines) logger with the pino-shaped interface Baileys expects
// (level, child, trace … fatal), so one logger serves our code and the library.

const LEVELS = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60, silent: Infinity };

function ignore() {}

function errorFields(value) {
  if (value instanceof Error) {
    return { message: value.message, name: value.name, stack: value.stack };
  }
  return value;
}

/**
 * @param {{ level?: string, bindings?: object, write?: (line: string) => void }} [options]
 */
export function createLogger({ level = "info", bindings = {}, write = (line) => process.stderr.write(line + "\n") } = {}) {
  if (!(level in LEVELS)) throw new Error(`unknown log level "${level}"; use one of ${Object.keys(LEVELS).join(", ")}`);
  const threshold = LEVELS[level];
  const logger = {
    level,
    child(extra) {
      return createLogger({ level: logger.level, bindings: { ...bindings, ...extra }, write });
    },
  };
  for (const name of Object.keys(LEVELS)) {
    if (name === "silent") continue;
    // A child logger is made per message: levels below the threshold share one no-op.
    if (LEVELS[name] < threshold) {
      logger[name] = ignore;
      continue;
    }
    logger[name] = (objOrMsg, msg) => {
      let fields = {};
      let text = msg;
      if (typeof objOrMsg === "string") text = objOrMsg;
      else if (objOrMsg instanceof Error) fields = { err: errorFields(objOrMsg) };
      else if (objOrMsg && typeof objOrMsg === "object") {
        fields = Object.fromEntries(Object.entries(objOrMsg).map(([k, v]) => [k, errorFields(v)]));
      }
      const record = { time: new Date().toISOString(), level: name, ...bindings, ...fields };
      if (text !== undefined) record.msg = String(text);
      let line;
      try {
        line = JSON.stringify(record, (_k, v) => (typeof v === "bigint" ? v.toString() : v));
      } catch {
        line = JSON.stringify({ time: record.time, level: name, msg: record.msg, note: "unserialisable fields" });
      }
      write(line);
    };
  }
  return logger;
}

/** A logger that keeps records in memory; for tests that assert on what was logged. */
export function createMemoryLogger(level = "trace") {
  const records = [];
  const logger = createLogger({ level, write: (line) => records.push(JSON.parse(line)) });
  return { logger, records };
}
