/**
 * The `moat` object as script authors see it: one global, every call of
 * which crosses the bridge to the host. Reference it from a script for
 * editor completion and `deno check`:
 *
 * ```ts
 * /// <reference path="../types/moat.d.ts" />
 * moat.setup();
 * moat.on_start(() => moat.logger.info("started"));
 * ```
 *
 * @module
 */

/** A time specification: `"mon 7 hr 30 min"` or `["mon", 7, "hr", 30, "min"]` (docs/time.md). */
type MoatTimeSpec = string | (string | number)[];

/** Options of the time functions. */
interface MoatTimeOptions {
  /** The base time, Unix seconds. @default now */
  now?: number;
  /**
   * `true`: the spec matching now counts; `false`: until it stops matching;
   * `null`: the start of the next matching period.
   * @default null
   */
  current?: boolean | null;
}

/** A timer set with `moat.run_at`. */
interface MoatTimer {
  /** Do not call the function. Safe to call twice. */
  cancel(): void;
}

/** The script's logger; every line goes to the host's log, prefixed with the task path. */
interface MoatLogger {
  debug(...args: unknown[]): void;
  info(...args: unknown[]): void;
  warn(...args: unknown[]): void;
  error(...args: unknown[]): void;
}

/** The one global object a script gets. */
interface Moat {
  /**
   * Must be called exactly once, before anything else.
   * @example
   * moat.setup();
   */
  setup(options?: Record<string, unknown>): void;
  /**
   * Run `fn` when the script starts (after its top-level code). Functions
   * running then may register more.
   * @example
   * moat.on_start(() => moat.logger.info("up"));
   */
  on_start<F extends () => unknown>(fn: F): F;
  /**
   * Run `fn` when the script ends, however it ends (best effort, bounded
   * time); in reverse order of registration.
   * @example
   * moat.on_stop(() => moat.logger.info("bye"));
   */
  on_stop<F extends () => unknown>(fn: F): F;
  /**
   * The script's main function (at most one). When it returns, the script
   * ends normally. Default: wait for `moat.stopping`.
   * @example
   * moat.run(async () => { await moat.wait("7 hr"); moat.end(); });
   */
  run<F extends () => unknown>(fn: F): F;
  /**
   * End the script normally. Takes no parameters.
   * @example
   * moat.end();
   */
  end(): void;
  /** Resolves when the script is ending: `moat.end()`, an exception, or the host stopping it. */
  readonly stopping: Promise<void>;
  /** Log through the host. */
  readonly logger: MoatLogger;
  /**
   * The Unix time (seconds) at which `spec` matches (see docs/time.md).
   * @example
   * const next = await moat.time_at("-1 fri 7 hr 30 min");
   */
  time_at(spec: MoatTimeSpec, options?: MoatTimeOptions): Promise<number>;
  time_at(options: MoatTimeOptions): Promise<number>;
  /**
   * Wait until `spec` matches; resolves with the Unix time reached.
   * `moat.wait({ now: T })` waits until T.
   * @example
   * await moat.wait("12 hr");
   */
  wait(spec: MoatTimeSpec, options?: MoatTimeOptions): Promise<number>;
  wait(options: MoatTimeOptions): Promise<number>;
  /**
   * Call `fn` when `spec` matches. The timer dies with the script.
   * @example
   * const t = moat.run_at("23 hr", () => moat.logger.info("late"));
   * t.cancel();
   */
  run_at(spec: MoatTimeSpec, fn: () => unknown, options?: MoatTimeOptions): MoatTimer;
}

/** The MoaT scripting environment. */
declare const moat: Moat;
