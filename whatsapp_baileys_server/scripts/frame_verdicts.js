// Reads frames from stdin, one per line as a JSON string of the frame's text, and prints
// one verdict per line: {"ok":true} or {"ok":false,"reason":"..."}. One process judges a
// whole corpus, for the differential test against the Python parser
// (tests/unit/test_wire_differential.py) and for checking frames by hand. With
// `--gateway` the frames are judged as GatewayFrames (gateway → Node).
import { createInterface } from "node:readline";
import { FrameError, parseGatewayFrame, parseNodeFrame } from "../src/wire.js";

const parse = process.argv.includes("--gateway") ? parseGatewayFrame : parseNodeFrame;

const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
const out = [];
for await (const line of lines) {
  if (line === "") continue;
  const text = JSON.parse(line);
  try {
    parse(text);
    out.push(JSON.stringify({ ok: true }));
  } catch (err) {
    if (!(err instanceof FrameError)) {
      out.push(JSON.stringify({ ok: false, crash: `${err.name}: ${err.message}` }));
    } else {
      out.push(JSON.stringify({ ok: false, reason: err.reason, frameId: err.frameId }));
    }
  }
}
process.stdout.write(out.join("\n") + "\n");
