// Turn-taking per key: work started for one key runs after the work started before it for
// the same key has released its turn, while other keys go on in parallel.

/**
 * @returns {(key: string) => Promise<() => void>} waits for the key's turn and resolves with
 *   the function that releases it (call it exactly once, also on failure)
 */
export function createTurns() {
  /** @type {Map<string, Promise<void>>} the last turn handed out per key */
  const tails = new Map();
  return async function takeTurn(key) {
    const previous = tails.get(key) ?? Promise.resolve();
    let release;
    const mine = new Promise((resolve) => {
      release = resolve;
    });
    const tail = previous.then(() => mine);
    tails.set(key, tail);
    await previous;
    return () => {
      release();
      // Forget a key nobody waits behind, so the map stays as small as the busy keys.
      if (tails.get(key) === tail) tails.delete(key);
    };
  };
}
