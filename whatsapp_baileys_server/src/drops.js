// Every message that does not reach the bot is counted by reason, so nothing is dropped
// in silence: exposed as the Prometheus counter `node_messages_dropped_total{reason}` on
// GET /metrics (text exposition format) and logged at debug where it happens.

const NAME = "node_messages_dropped_total";

/** Reasons are code-defined labels; anything else is folded so the series stay few. */
const REASON = /^[a-z][a-z0-9_]{0,63}$/;

export class DropCounter {
  constructor() {
    /** @type {Map<string, number>} */
    this.counts = new Map();
  }

  /** Counts one dropped message. */
  count(reason) {
    const label = REASON.test(reason) ? reason : "other";
    this.counts.set(label, (this.counts.get(label) ?? 0) + 1);
  }

  get(reason) {
    return this.counts.get(reason) ?? 0;
  }

  /** The counter in Prometheus text format. */
  render() {
    const lines = [
      `# HELP ${NAME} Messages received from WhatsApp that were not forwarded to the gateway, by reason.`,
      `# TYPE ${NAME} counter`,
    ];
    for (const [reason, n] of [...this.counts].sort(([a], [b]) => a.localeCompare(b))) {
      lines.push(`${NAME}{reason="${reason}"} ${n}`);
    }
    return `${lines.join("\n")}\n`;
  }
}
