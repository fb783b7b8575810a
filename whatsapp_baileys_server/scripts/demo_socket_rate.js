// The demo socket alone: how fast it injects `messages.upsert` events with no server
// behind it (a listener that only counts), so the Node path benchmark can tell whether
// its own message source bounds what it measures.
//
//   node scripts/demo_socket_rate.js [messages] [chats]
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createDemoWhatsApp, loadDemoScript } from "../src/demo_socket.js";
import { createLogger } from "../src/logger.js";

const messages = Number(process.argv[2] ?? 20_000);
const chats = Number(process.argv[3] ?? 200);
const root = await mkdtemp(join(tmpdir(), "demo-rate-"));
try {
  const path = join(root, "script.json");
  const entries = Array.from({ length: messages }, (_, n) => ({
    type: "text",
    from: `4917${String(n % chats).padStart(8, "0")}@s.whatsapp.net`,
    id: `DR${String(n).padStart(8, "0")}`,
    text: `message ${n} of the demo socket rate`,
    delay_ms: 0,
  }));
  await writeFile(path, JSON.stringify({ injected_events: false, bots: { b: entries } }));
  const script = await loadDemoScript(path);
  const logger = createLogger({ level: "warn" });
  const done = new Promise((resolve) => {
    const whatsapp = createDemoWhatsApp(script, { logger, print: (line) => JSON.parse(line).event === "script_done" && resolve() });
    const sock = whatsapp.makeSocket({}, { userId: "b" });
    let seen = 0;
    let started;
    sock.ev.on("messages.upsert", () => {
      seen += 1;
      if (seen === 1) started = process.hrtime.bigint();
      if (seen === messages) {
        const seconds = Number(process.hrtime.bigint() - started) / 1e9;
        const cpu = process.cpuUsage();
        console.log(`${messages} messages in ${seconds.toFixed(2)} s: ${Math.round((messages - 1) / seconds)} msg/s; process CPU ${((cpu.user + cpu.system) / 1000).toFixed(0)} ms`);
      }
    });
  });
  await done;
} finally {
  await rm(root, { recursive: true, force: true });
}
