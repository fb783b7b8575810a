// Waiting for a condition that no event announces (a file written, a frame forwarded),
// instead of sleeping a fixed time and hoping it happened.

export async function waitUntil(predicate, what, timeoutMs = 5000) {
  const started = Date.now();
  while (!(await predicate())) {
    if (Date.now() - started > timeoutMs) throw new Error(`not within ${timeoutMs} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
