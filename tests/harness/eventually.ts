/**
 * Polls `fn` every `intervalMs` (100 ms) until it returns something other than undefined, and
 * returns that; errors count as "not yet". Fails after `timeoutMs` with the last error, if any.
 * Tests and benches wait on what they can observe through this, not on a sleep.
 */
export async function eventually<T>(
  what: string,
  fn: () => Promise<T | undefined> | T | undefined,
  timeoutMs = 15_000,
  intervalMs = 100,
): Promise<T> {
  const until = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > until) {
      throw new Error(
        `${what}: not within ${timeoutMs} ms${last ? ` (${last instanceof Error ? last.message : JSON.stringify(last)})` : ''}`,
      );
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** `true` when `condition` holds, else undefined: `eventually('x', async () => holds(await f() === 3))`. */
export const holds = (condition: boolean): true | undefined => (condition ? true : undefined);
