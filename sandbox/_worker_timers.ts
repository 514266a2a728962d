/**
 * The script's timers, inside its Worker: on real time (`moat run`), or on
 * the virtual clock of `moat script try`.
 *
 * Like every `sandbox/_worker_*.ts` module, each function here is copied
 * into the Worker as source text (see `workerSource` in sandbox/worker.ts):
 * it may use globals and its parameters, nothing else from this module
 * (type-only imports are erased and fine).
 *
 * On virtual time ({@linkcode virtualScriptTimers}) the script's `Date`
 * (`new Date()` without arguments, `Date()`, `Date.now()`),
 * `performance.now()` and timers read a clock that only the host moves
 * (`clock` messages). Timers due at the current virtual time fire in due
 * order, each in a macrotask of its own; when none is due and the microtask
 * queue has drained, the Worker reports that it has settled and when its
 * next timer is due, and the host may move the clock. A script that never
 * yields never settles, so virtual time does not pass for it.
 *
 * @module
 */

import type { TimerFiring } from "./protocol.ts";

/** The runtime's own timers, captured before the script can replace them. */
export interface RealTimers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(t: unknown): void;
  setInterval(fn: () => void, ms: number): unknown;
  clearInterval(t: unknown): void;
}

/** The timer globals a script gets, and a way to clear all of them when it ends. */
export interface ScriptTimers {
  setTimeout(fn: unknown, ms?: unknown, ...args: unknown[]): unknown;
  setInterval(fn: unknown, ms?: unknown, ...args: unknown[]): unknown;
  clearTimeout(t: unknown): void;
  clearInterval(t: unknown): void;
  /** Clear every timer of the script (it is ending). */
  clearAll(): void;
}

/** Timers on virtual time: {@linkcode ScriptTimers} and the host's controls. */
export interface VirtualTimers extends ScriptTimers {
  /** The host moved the clock to `nowMs`: fire what is due, then settle again. */
  setNow(nowMs: number): void;
  /** Something happened (a host message arrived): settle again once it is done. */
  poke(): void;
  /** Report the timers fired since the last report now, if any (the script is ending). */
  flush(): void;
}

/**
 * Timers on real time that take functions only (a string would be
 * evaluated) and are remembered, so that they die when the script ends.
 */
export function realScriptTimers(real: RealTimers): ScriptTimers {
  const userTimers = new Set<unknown>();
  const wrapTimer =
    (arm: (fn: () => void, ms: number) => unknown, repeat: boolean) =>
    (fn: unknown, ms?: unknown, ...args: unknown[]): unknown => {
      if (typeof fn !== "function") {
        throw new TypeError("timers take a function, not code as text");
      }
      const t = arm(() => {
        if (!repeat) userTimers.delete(t);
        fn(...args);
      }, typeof ms === "number" ? ms : 0);
      userTimers.add(t);
      return t;
    };
  const wrapClear = (clear: (t: unknown) => void) => (t: unknown): void => {
    userTimers.delete(t);
    clear(t);
  };
  return {
    setTimeout: wrapTimer(real.setTimeout, false),
    setInterval: wrapTimer(real.setInterval, true),
    clearTimeout: wrapClear(real.clearTimeout),
    clearInterval: wrapClear(real.clearInterval),
    clearAll(): void {
      for (const t of userTimers) {
        real.clearTimeout(t);
        real.clearInterval(t);
      }
      userTimers.clear();
    },
  };
}

/**
 * Put the script's clock on virtual time starting at `startMs`: replaces
 * `Date` and `performance.now` on `g` and returns the timers to install.
 * `report(nextMs, fired)` is called each time the script has settled;
 * `activity()` counts what the script did (messages sent and received).
 */
export function virtualScriptTimers(
  // deno-lint-ignore no-explicit-any
  g: any,
  startMs: number,
  report: (nextMs: number | null, fired: TimerFiring[]) => void,
  activity: () => number,
): VirtualTimers {
  let nowMs = startMs;

  // ---- the clock the script reads ----
  const RealDate: DateConstructor = g.Date;
  const realPerfNow: () => number = g.performance.now.bind(g.performance);
  // Whole ms, so that differences of virtual times are exact.
  const perfAtStart = Math.floor(realPerfNow());
  // `new Date()` and `Date()` read the virtual clock; `new Date(x)` is as ever.
  const VirtualDate = function (this: unknown, ...args: unknown[]): unknown {
    if (new.target === undefined) return new RealDate(nowMs).toString();
    return Reflect.construct(RealDate, args.length === 0 ? [nowMs] : args, new.target);
  } as unknown as DateConstructor;
  Object.defineProperty(VirtualDate, "prototype", { value: RealDate.prototype });
  Object.setPrototypeOf(VirtualDate, RealDate); // Date.UTC, Date.parse
  Object.defineProperty(VirtualDate, "name", { value: "Date" });
  Object.defineProperty(VirtualDate, "length", { value: 7 });
  Object.defineProperty(VirtualDate, "now", {
    value: function now(): number {
      return nowMs;
    },
    writable: true,
    configurable: true,
  });
  Object.defineProperty(RealDate.prototype, "constructor", {
    value: VirtualDate,
    writable: true,
    configurable: true,
  });
  g.Date = VirtualDate;
  Object.defineProperty(g.performance, "now", {
    value: function now(): number {
      return perfAtStart + (nowMs - startMs);
    },
    writable: true,
    configurable: true,
  });

  // ---- timers ----
  interface Timer {
    id: number;
    atMs: number;
    /** Ties at one time fire in the order they were (re)armed. */
    seq: number;
    delayMs: number;
    repeat: boolean;
    fn: (...a: unknown[]) => unknown;
    args: unknown[];
  }
  const timers = new Map<number, Timer>();
  let lastId = 0;
  let seq = 0;
  const fired = new Map<string, TimerFiring>();

  const earliest = (): Timer | undefined => {
    let best: Timer | undefined;
    for (const t of timers.values()) {
      if (best === undefined || t.atMs < best.atMs || (t.atMs === best.atMs && t.seq < best.seq)) {
        best = t;
      }
    }
    return best;
  };
  const arm = (repeat: boolean) => (fn: unknown, ms?: unknown, ...args: unknown[]): number => {
    if (typeof fn !== "function") {
      throw new TypeError("timers take a function, not code as text");
    }
    const n = Number(ms);
    const delayMs = Number.isFinite(n) && n > 0 ? n : 0;
    const id = ++lastId;
    timers.set(id, {
      id,
      atMs: nowMs + delayMs,
      seq: ++seq,
      delayMs,
      repeat,
      fn: fn as (...a: unknown[]) => unknown,
      args,
    });
    poke();
    return id;
  };
  const clear = (t: unknown): void => {
    if (typeof t === "number") timers.delete(t);
  };

  // ---- settling ----
  // A macrotask turn through a message port: nested `setTimeout(…, 0)`s are
  // clamped to 4 ms each, which would make an hour of 1 s ticks take minutes.
  const channel = new g.MessageChannel();
  channel.port1.onmessage = () => step();
  let scheduled = false;
  /** One macrotask turn from now, fire the next due timer or report that the script settled. */
  function poke(): void {
    if (scheduled) return;
    scheduled = true;
    channel.port2.postMessage(null);
  }
  // Deno delivers port messages (and timers) through promise jobs: a turn
  // may run between two jobs of one of the script's promise chains. So a
  // turn acts only when a whole turn passed without the script doing
  // anything (sending, receiving, a timer firing); else it looks again.
  let firings = 0;
  let lastLook = -1;
  function step(): void {
    scheduled = false;
    const now = activity() + firings;
    if (now !== lastLook) {
      lastLook = now;
      poke();
      return;
    }
    const t = earliest();
    if (t !== undefined && t.atMs <= nowMs) {
      if (t.repeat) {
        // An interval of 0 would fire for ever at one moment: at least 1 ms on.
        t.atMs += Math.max(1, t.delayMs);
        t.seq = ++seq;
      } else {
        timers.delete(t.id);
      }
      const key = `${t.repeat}/${t.delayMs}`;
      const f = fired.get(key);
      if (f !== undefined) f.count++;
      else if (fired.size < 100) fired.set(key, { repeat: t.repeat, delayMs: t.delayMs, count: 1 });
      firings++;
      // A throw ends the script (the Worker's `error` event), as with real timers.
      try {
        t.fn(...t.args);
      } finally {
        poke();
      }
      return;
    }
    const list = [...fired.values()];
    fired.clear();
    report(t === undefined ? null : t.atMs, list);
  }

  return {
    setTimeout: arm(false),
    setInterval: arm(true),
    clearTimeout: clear,
    clearInterval: clear,
    clearAll(): void {
      timers.clear();
    },
    flush(): void {
      if (fired.size === 0) return;
      const list = [...fired.values()];
      fired.clear();
      const t = earliest();
      report(t === undefined ? null : t.atMs, list);
    },
    setNow(ms: number): void {
      if (ms > nowMs) nowMs = ms;
      poke();
    },
    poke,
  };
}
