/**
 * The host side of `moat.wait` and `moat.run_at`: sleep on a `Clock` until
 * a time specification's moment (see `shared/spec/scripts.rst` and
 * `shared/times.md`).
 *
 * The target is computed once, as a Unix time, with the zone's rules; after
 * every wake-up the clock is read again, so a clock that jumped back sleeps
 * again until the target (never early), and one that jumped past the target
 * fires at once (never lost, never an hour late).
 *
 * @module
 */

import type { Clock } from "./clock.ts";
import { timeAt } from "./time_at.ts";
import { isEmptySpec, parseTimeSpec, type TimeSpecInput } from "./time_spec.ts";
import type { Location } from "./sun.ts";

/** Options of {@link waitUntilSpec} and {@link runAt}. */
export interface WaitOptions {
  /** The clock to read and sleep on. */
  clock: Clock;
  /** IANA time zone the spec is matched in. */
  zone: string;
  /**
   * Where sun events (`sunrise`, `sunset`, `dawn`, `dusk`) are computed for.
   * @default none: a spec with an event word is an error
   */
  location?: Location;
  /**
   * The base time, Unix seconds. With an empty spec, the time to wait for.
   * A Unix timestamp as the spec's first token takes precedence.
   * @default clock.now() / 1000
   */
  now?: number;
  /**
   * As for `timeAt`: `true` until it matches, `false` until it does not,
   * `null` until the next matching period starts.
   * @default null
   */
  current?: boolean | null;
  /** Aborting it rejects the wait with `signal.reason`. */
  signal?: AbortSignal;
}

/** How often one wait may wake up early before the clock is declared broken. */
const MAX_EARLY_WAKEUPS = 100_000;

/**
 * The Unix time a wait for `spec` ends at. An empty spec (also one that is
 * only a timestamp) means "until now", i.e. until the given `now`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { waitTarget } from "./wait.ts";
 * import { VirtualClock } from "./virtual_clock.ts";
 * const clock = new VirtualClock(0);
 * assert.ok(waitTarget("1700000000", { clock, zone: "UTC" }) === 1700000000);
 * ```
 */
export function waitTarget(spec: TimeSpecInput, options: WaitOptions): number {
  const parsed = parseTimeSpec(spec);
  const now = parsed.now ?? options.now ?? options.clock.now() / 1000;
  if (isEmptySpec(parsed)) return now;
  return timeAt(spec, {
    now,
    current: options.current ?? null,
    zone: options.zone,
    ...(options.location !== undefined ? { location: options.location } : {}),
  });
}

/** Sleep on `clock` until Unix time `target`, re-reading the clock after each wake-up. */
async function sleepTo(target: number, clock: Clock, signal?: AbortSignal): Promise<void> {
  const atMs = target * 1000;
  for (let i = 0; i < MAX_EARLY_WAKEUPS; i++) {
    signal?.throwIfAborted();
    if (clock.now() >= atMs) return;
    await clock.sleepUntil(atMs, signal);
    // Re-read: the clock may have been set back since the sleep ended.
    if (clock.now() >= atMs) return;
  }
  throw new Error(`The clock woke ${MAX_EARLY_WAKEUPS} times before ${target}: it is broken`);
}

/**
 * Wait until the moment `spec` describes (see `timeAt`), and resolve with
 * that moment as Unix seconds, also when the clock jumped past it.
 *
 * @throws {TimeSpecError} (as a rejection) for a bad or never-matching spec.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { waitUntilSpec } from "./wait.ts";
 * import { VirtualClock } from "./virtual_clock.ts";
 * const clock = new VirtualClock(Date.UTC(2026, 0, 1));
 * const done = waitUntilSpec("12 hr", { clock, zone: "UTC" });
 * await clock.runUntilIdle();
 * assert.ok((await done) === Date.UTC(2026, 0, 1, 12) / 1000);
 * ```
 */
export async function waitUntilSpec(spec: TimeSpecInput, options: WaitOptions): Promise<number> {
  options.signal?.throwIfAborted();
  const target = waitTarget(spec, options);
  await sleepTo(target, options.clock, options.signal);
  return target;
}

/** Options of {@link runAt}. */
export interface RunAtOptions extends WaitOptions {
  /**
   * Called with what `fn` threw or rejected with.
   * @default globalThis.reportError
   */
  onError?: (error: unknown) => void;
}

/** The timer {@link runAt} returns. */
export interface RunAtTimer {
  /** Do not call the function (a no-op once it was called). Can be called twice. */
  cancel(): void;
  /** The Unix time the function is due at; undefined once called or cancelled. */
  readonly next: number | undefined;
}

/**
 * Call `fn` once, when the moment `spec` describes arrives (as
 * {@link waitUntilSpec} would resolve). `fn` gets that moment, Unix seconds.
 * A bad or never-matching spec throws here, synchronously.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { runAt } from "./wait.ts";
 * import { VirtualClock } from "./virtual_clock.ts";
 * const clock = new VirtualClock(Date.UTC(2026, 0, 1));
 * const calls: number[] = [];
 * const timer = runAt("12 hr", (at) => calls.push(at), { clock, zone: "UTC" });
 * assert.ok(timer.next === Date.UTC(2026, 0, 1, 12) / 1000);
 * await clock.runUntilIdle();
 * assert.ok(calls.length === 1 && timer.next === undefined);
 * ```
 */
export function runAt(
  spec: TimeSpecInput,
  fn: (at: number) => unknown,
  options: RunAtOptions,
): RunAtTimer {
  const target = waitTarget(spec, options);
  const cancel = new AbortController();
  const signal = options.signal === undefined
    ? cancel.signal
    : AbortSignal.any([options.signal, cancel.signal]);
  const onError = options.onError ?? ((e: unknown) => globalThis.reportError(e));
  let next: number | undefined = signal.aborted ? undefined : target;

  void (async () => {
    try {
      await sleepTo(target, options.clock, signal);
    } catch (e) {
      next = undefined;
      // A cancelled or aborted timer just never fires.
      if (!signal.aborted) onError(e);
      return;
    }
    next = undefined;
    if (signal.aborted) return;
    try {
      await fn(target);
    } catch (e) {
      onError(e);
    }
  })();

  return {
    cancel() {
      next = undefined;
      cancel.abort(new DOMException("The run_at timer was cancelled", "AbortError"));
    },
    get next() {
      return next;
    },
  };
}
