/**
 * Small assertion helpers over `node:assert/strict` (jsr:@std/assert cannot
 * be fetched on our machines), for the tests under host/ and tests/
 * (tests/_util/assert.ts re-exports them).
 *
 * @module
 */

import nodeAssert from "node:assert/strict";

/** Assert that `cond` is truthy. */
export function assert(cond: unknown, message?: string): asserts cond {
  if (message === undefined) nodeAssert.ok(cond);
  else nodeAssert.ok(cond, message);
}

/** Deep strict equality. */
export function assertEquals<T>(actual: T, expected: T, message?: string): void {
  if (message === undefined) nodeAssert.deepStrictEqual(actual, expected);
  else nodeAssert.deepStrictEqual(actual, expected, message);
}

/** Assert `text` contains `part`. */
export function assertIncludes(text: string, part: string, message?: string): void {
  nodeAssert.ok(
    text.includes(part),
    message ?? `expected ${JSON.stringify(text)} to include ${JSON.stringify(part)}`,
  );
}

/** Run `fn`, assert it throws, and return what it threw. */
export function assertThrows(fn: () => unknown): Error {
  try {
    fn();
  } catch (e) {
    if (e instanceof Error) return e;
    throw new Error(`threw a non-Error: ${String(e)}`);
  }
  throw new Error("expected the function to throw");
}

/** Await `p`, assert it rejects, and return the reason. */
export async function assertRejects(
  p: Promise<unknown> | (() => Promise<unknown>),
): Promise<Error> {
  try {
    await (typeof p === "function" ? p() : p);
  } catch (e) {
    if (e instanceof Error) return e;
    throw new Error(`rejected with a non-Error: ${String(e)}`);
  }
  throw new Error("expected the promise to reject");
}
