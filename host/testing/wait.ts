/**
 * Bounded waiting for tests: every wait has a deadline and fails loudly,
 * naming what it waited for. Used by the contract suites under host/ and by
 * every test (tests/_util/wait.ts re-exports it).
 *
 * @module
 */

/**
 * Resolve with `promise`, or reject once `ms` milliseconds pass first.
 * The timer is cleared either way, so no timer outlives the call.
 */
export function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`Timed out after ${ms} ms waiting for ${what}`)),
      ms,
    );
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * A sink for callback-delivered items (watch event batches, say) that a test
 * can await: `next()` / `until()` wait with a deadline.
 */
export class Collector<T> {
  /** Every item received so far, in order. */
  readonly items: T[] = [];
  #waiters: { check: () => boolean; resolve: () => void }[] = [];

  /** The callback to hand to the code under test. */
  readonly push = (item: T): void => {
    this.items.push(item);
    this.#waiters = this.#waiters.filter((w) => {
      if (!w.check()) return true;
      w.resolve();
      return false;
    });
  };

  /**
   * Wait until `predicate(items)` holds, at most `ms` milliseconds.
   * Resolves with the items seen so far.
   */
  until(predicate: (items: T[]) => boolean, ms: number, what: string): Promise<T[]> {
    if (predicate(this.items)) return Promise.resolve(this.items);
    const { promise, resolve } = Promise.withResolvers<void>();
    const waiter = { check: () => predicate(this.items), resolve };
    this.#waiters.push(waiter);
    return withTimeout(promise, ms, what)
      .then(() => this.items)
      .finally(() => {
        this.#waiters = this.#waiters.filter((w) => w !== waiter);
      });
  }

  /** Wait until at least `count` items have arrived, at most `ms` milliseconds. */
  count(count: number, ms: number, what: string): Promise<T[]> {
    return this.until((items) => items.length >= count, ms, what);
  }
}

/**
 * Resolve after `ms` milliseconds. Only for proving that something does
 * *not* happen within a window; never to wait for a condition.
 */
export function quietPeriod(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
