/**
 * Clocks: everything time-based in the host takes a `Clock`, so that tests
 * run on a `VirtualClock` and finish in milliseconds.
 *
 * @module
 */

/** A source of the current time and of sleeps measured against it. */
export interface Clock {
  /** Milliseconds since the Unix epoch. */
  now(): number;
  /**
   * Resolve once `now() >= atMs`. The clock is re-read after every wake-up,
   * so a clock jump or a suspend neither fires the sleep early nor late.
   * Rejects with `signal.reason` when `signal` aborts.
   */
  sleepUntil(atMs: number, signal?: AbortSignal): Promise<void>;
}

/**
 * The longest single timer a clock arms. Sleeping in slices this long means
 * that a suspended machine or a jumped wall clock is noticed within one
 * slice, and the sleep re-evaluated, instead of firing an hour late.
 */
const SLICE_MS = 1_000;

/** The real wall clock (`Date.now()`), with sliced timers. */
export class SystemClock implements Clock {
  now(): number {
    return Date.now();
  }

  sleepUntil(atMs: number, signal?: AbortSignal): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      if (signal?.aborted) {
        reject(signal.reason);
        return;
      }
      let timer: ReturnType<typeof setTimeout> | undefined;
      const onAbort = () => {
        clearTimeout(timer);
        reject(signal?.reason);
      };
      const step = () => {
        const left = atMs - Date.now();
        if (left <= 0) {
          signal?.removeEventListener("abort", onAbort);
          resolve();
          return;
        }
        timer = setTimeout(step, Math.min(left, SLICE_MS));
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      step();
    });
  }
}
