// A small structured (JSON lines) logger with the pino-shaped interface Baileys expects
// (level, child, trace … fatal), so one logger serves our code and the library.

const LEVELS = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60, silent: Infinity };

function errorFields(value) {
  if (value instanceof Error) {
    return { message: value.message, name: value.name, stack: value.stack };
  }
  return value;
}

/**
 * One logger and its bindings. A child is made per message, so making one costs an object
 * and nothing more: its bindings are merged with its parent's on its first log line, and
 * the level methods live on the prototype (levels below the threshold return at once).
 */
class Logger {
  constructor(level, write, parent, extra) {
    this.level = level;
    this.threshold = LEVELS[level];
    this.write = write;
    this.parent = parent;
    this.extra = extra;
    this.merged = undefined;
  }

  get bindings() {
    if (this.merged === undefined) this.merged = this.parent ? { ...this.parent.bindings, ...this.extra } : this.extra;
    return this.merged;
  }

  child(extra) {
    return new Logger(this.level, this.write, this, extra);
  }

  log(name, objOrMsg, msg) {
    let fields = {};
    let text = msg;
    if (typeof objOrMsg === "string") text = objOrMsg;
    else if (objOrMsg instanceof Error) fields = { err: errorFields(objOrMsg) };
    else if (objOrMsg && typeof objOrMsg === "object") {
      fields = Object.fromEntries(Object.entries(objOrMsg).map(([k, v]) => [k, errorFields(v)]));
    }
    const record = { time: new Date().toISOString(), level: name, ...this.bindings, ...fields };
    if (text !== undefined) record.msg = String(text);
    let line;
    try {
      line = JSON.stringify(record, (_k, v) => (typeof v === "bigint" ? v.toString() : v));
    } catch {
      line = JSON.stringify({ time: record.time, level: name, msg: record.msg, note: "unserialisable fields" });
    }
    this.write(line);
  }
}

for (const name of Object.keys(LEVELS)) {
  if (name === "silent") continue;
  const value = LEVELS[name];
  Logger.prototype[name] = function logAt(objOrMsg, msg) {
    if (value >= this.threshold) this.log(name, objOrMsg, msg);
  };
}

/**
 * @param {{ level?: string, bindings?: object, write?: (line: string) => void }} [options]
 */
export function createLogger({ level = "info", bindings = {}, write = (line) => process.stderr.write(line + "\n") } = {}) {
  if (!(level in LEVELS)) throw new Error(`unknown log level "${level}"; use one of ${Object.keys(LEVELS).join(", ")}`);
  return new Logger(level, write, undefined, { ...bindings });
}

/** A logger that keeps records in memory; for tests that assert on what was logged. */
export function createMemoryLogger(level = "trace") {
  const records = [];
  const logger = createLogger({ level, write: (line) => records.push(JSON.parse(line)) });
  return { logger, records };
}
