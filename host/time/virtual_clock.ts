/**
 * A `Clock` whose time moves only when a test says so, so that a wait for
 * "the last Friday of the month, 07:30" finishes in milliseconds.
 *
 * @module
 */

import { setImmediate } from "node:timers";
import type { Clock } from "./clock.ts";

interface Sleeper {
  atMs: number;
  seq: number;
  resolve: () => void;
  cleanup: () => void;
}

/** Options of {@link VirtualClock.runUntilIdle}. */
export interface RunUntilIdleOptions {
  /**
   * Stop before a sleep due more than this many ms after the current time.
   * @default Infinity
   */
  maxMs?: number;
  /**
   * Stop after this many wake-ups, to catch a sleeper that keeps re-arming.
   * @default 100_000
   */
  maxWakeups?: number;
}

/**
 * Let every queued microtask, and the promise chains they start, run. A
 * `setImmediate` callback runs only after the microtask queue is empty.
 */
function settle(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/**
 * A clock for tests: `now()` stays put until `advance`, `set`,
 * `advanceToNext` or `runUntilIdle` moves it. Due sleepers wake in time
 * order (ties in the order they slept), and the promise chains each wake-up
 * starts run before the next sleeper wakes.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { VirtualClock } from "./virtual_clock.ts";
 * const clock = new VirtualClock(0);
 * let woke = false;
 * clock.sleepUntil(60_000).then(() => (woke = true));
 * await clock.advance(60_000);
 * assert.ok(woke && clock.now() === 60_000);
 * ```
 */
export class VirtualClock implements Clock {
  #now: number;
  #seq = 0;
  #sleepers: Sleeper[] = [];

  /**
   * A clock standing still at `startMs` until advanced.
   *
   * @param startMs the initial time, ms since the Unix epoch.
   */
  constructor(startMs: number) {
    if (!Number.isFinite(startMs)) {
      throw new RangeError(`Cannot start a VirtualClock at "${startMs}": not a finite number`);
    }
    this.#now = startMs;
  }

  /** The current virtual time, ms since the Unix epoch. */
  now(): number {
    return this.#now;
  }

  /** How many sleeps are pending. */
  get pendingSleeps(): number {
    return this.#sleepers.length;
  }

  /** When the earliest pending sleep is due, or undefined when none is. */
  get nextDue(): number | undefined {
    return this.#sleepers[0]?.atMs;
  }

  /** Resolve once the virtual time reaches `atMs`; reject with `signal.reason` on abort. */
  sleepUntil(atMs: number, signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (atMs <= this.#now) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const onAbort = () => {
        this.#remove(sleeper);
        reject(signal?.reason);
      };
      const sleeper: Sleeper = {
        atMs,
        seq: this.#seq++,
        resolve,
        cleanup: () => signal?.removeEventListener("abort", onAbort),
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      // Keep the list sorted by (atMs, seq).
      let i = this.#sleepers.length;
      while (i > 0 && this.#sleepers[i - 1]!.atMs > atMs) i--;
      this.#sleepers.splice(i, 0, sleeper);
    });
  }

  #remove(s: Sleeper): void {
    const i = this.#sleepers.indexOf(s);
    if (i >= 0) this.#sleepers.splice(i, 1);
  }

  /** Wake the earliest sleeper if it is due; false if none is. */
  #wakeOne(): boolean {
    const first = this.#sleepers[0];
    if (first === undefined || first.atMs > this.#now) return false;
    this.#sleepers.shift();
    first.cleanup();
    first.resolve();
    return true;
  }

  /** Wake every due sleeper in time order, letting each one's continuations run. */
  async #wakeDue(): Promise<void> {
    await settle();
    while (this.#wakeOne()) await settle();
  }

  /**
   * Let `ms` of time pass: the clock stops at each sleeper's due time on the
   * way, wakes it and lets its continuations run (they may sleep again).
   * `advance(0)` only wakes what is due already.
   */
  async advance(ms: number): Promise<void> {
    if (!(ms >= 0)) throw new RangeError(`Cannot advance a VirtualClock by "${ms}" ms`);
    const target = this.#now + ms;
    await this.#wakeDue();
    for (;;) {
      const next = this.#sleepers[0];
      if (next === undefined || next.atMs > target) break;
      this.#now = Math.max(this.#now, next.atMs);
      await this.#wakeDue();
    }
    this.#now = target;
    await this.#wakeDue();
  }

  /**
   * Jump to `ms` at once, as a wall clock that is set does: forwards, every
   * sleeper now due wakes (in time order) and sees the new time; backwards,
   * nothing wakes.
   */
  async set(ms: number): Promise<void> {
    if (!Number.isFinite(ms)) throw new RangeError(`Cannot set a VirtualClock to "${ms}"`);
    this.#now = ms;
    await this.#wakeDue();
  }

  /**
   * Advance to the earliest pending sleep and wake it (with any others due
   * then). Returns the new time, or undefined when nothing sleeps.
   */
  async advanceToNext(): Promise<number | undefined> {
    await settle();
    const next = this.#sleepers[0];
    if (next === undefined) return undefined;
    await this.advance(Math.max(0, next.atMs - this.#now));
    return this.#now;
  }

  /**
   * Keep advancing to the next pending sleep until none is left (or the
   * next is more than `maxMs` away). Returns the time reached.
   */
  async runUntilIdle(options: RunUntilIdleOptions = {}): Promise<number> {
    const limit = this.#now + (options.maxMs ?? Infinity);
    const maxWakeups = options.maxWakeups ?? 100_000;
    await settle();
    for (let n = 0;; n++) {
      const next = this.#sleepers[0];
      if (next === undefined || next.atMs > limit) break;
      if (n >= maxWakeups) {
        throw new Error(`VirtualClock.runUntilIdle: still busy after ${maxWakeups} wake-ups`);
      }
      await this.advance(Math.max(0, next.atMs - this.#now));
    }
    return this.#now;
  }
}
