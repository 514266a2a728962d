/**
 * The `moat` object as script authors see it: one global, every call of
 * which crosses the bridge to the host. Reference this file from a script
 * for editor completion and `deno check`:
 *
 * ```ts
 * /// <reference path="../types/moat.d.ts" />
 * moat.setup();
 * moat.on_start(() => moat.logger.info("started"));
 * ```
 *
 * A script is the body of an async function: top-level `await` works, and
 * `import`/`export` statements are refused (use {@linkcode Moat.load}).
 * docs/scripts.md is the guide; every `@example` here is type-checked by
 * tests/docs/scripts_doc_test.ts.
 *
 * @module
 */

/** A time specification: `"mon 7 hr 30 min"` or `["mon", 7, "hr", 30, "min"]` (docs/time.md). */
type MoatTimeSpec = string | (string | number)[];

/** One token of a time spec given as separate arguments: `moat.wait("12", "hr", 10, "min")`. */
type MoatTimeToken = string | number;

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

/**
 * Options of `moat.wait` and `moat.run_at`: those of `time_at`, and a
 * schedule that survives failover, restarts and code updates (docs/time.md,
 * "Catch-up").
 */
interface MoatScheduleOptions extends MoatTimeOptions {
  /**
   * The schedule's name, unique per task (letters, digits, `_`, `.`, `-`;
   * at most 100): the host records each completed firing under it.
   */
  id?: string;
  /**
   * Seconds: when a firing was due at most this long ago and is not
   * recorded as done (the script was not running then), it fires at once,
   * late, exactly once. Needs `id`, the default `current` and no `now`.
   * @default no catch-up
   */
  catch_up?: number;
}

/** One firing of a `moat.run_at` schedule, the callback's argument. */
interface MoatFiring {
  /** The Unix time (seconds) the firing was due. */
  due: number;
  /** True when it fires late: a catch-up of a firing missed while the script did not run. */
  late: boolean;
}

/** A timer set with `moat.run_at`. */
interface MoatTimer {
  /**
   * Do not call the function. Safe to call twice.
   * @example
   * ```ts
   * const t = moat.run_at("23 hr", () => moat.logger.info("late"));
   * t.cancel();
   * ```
   */
  cancel(): void;
}

/**
 * The script's logger; every line goes to the host's log, tagged with the
 * task path. `console.log`/`info`/`warn`/`error`/`debug` go there too.
 */
interface MoatLogger {
  /**
   * Log at level debug (hidden unless `moat run --log-level debug`).
   * @example
   * ```ts
   * moat.logger.debug("raw reading", { temp: 21.5 });
   * ```
   */
  debug(...args: unknown[]): void;
  /**
   * Log at level info. Strings are written as they are, other values inspected.
   * @example
   * ```ts
   * moat.logger.info("light on at", new Date().toISOString());
   * ```
   */
  info(...args: unknown[]): void;
  /**
   * Log at level warn.
   * @example
   * ```ts
   * moat.logger.warn("sensor slow to answer");
   * ```
   */
  warn(...args: unknown[]): void;
  /**
   * Log at level error. This does not end the script; throw to do that.
   * @example
   * ```ts
   * moat.logger.error("could not switch the light");
   * ```
   */
  error(...args: unknown[]): void;
}

/**
 * A value as it is stored in the MoaT tree, decoded: numbers, booleans,
 * text, JSON arrays and objects (docs/etcd-layout.md).
 */
type MoatValue =
  | null
  | boolean
  | number
  | string
  | MoatValue[]
  | { [key: string]: MoatValue };

/**
 * A node of the MoaT tree: from `moat.tree.lookup`, or a `str/ref` value of
 * `moat.data`. Reads are synchronous. A node from `moat.tree.lookup` shows
 * the values as of the lookup; once monitored (`moat.monitor`), and always
 * for a `str/ref` data value, it is kept current by the host. The same path
 * always gives the same node object.
 */
interface MoatNode {
  /**
   * The node's path, relative to the MoaT root (`"device/onewire/10/:dev"`).
   * @example
   * ```ts
   * const node = await moat.tree.lookup("device");
   * if (node) moat.logger.info(node.path); // "device"
   * ```
   */
  readonly path: string;
  /**
   * The value stored at exactly this path, or `undefined` when only keys
   * below it exist (a directory).
   * @example
   * ```ts
   * const temp = await moat.tree.lookup("device", "onewire", "10", ":dev", "temp");
   * moat.logger.info("temperature", temp?.value);
   * ```
   */
  readonly value: MoatValue | undefined;
  /**
   * A child by name: its value when it is a leaf, a node when it has keys
   * below it, `undefined` when there is no such child.
   * @example
   * ```ts
   * const dev = await moat.tree.lookup("device", "onewire", "10", ":dev");
   * const temp = dev?.get("temp"); // e.g. 21.5
   * ```
   */
  get(name: string): MoatValue | MoatNode | undefined;
  /**
   * The names of the children, sorted.
   * @example
   * ```ts
   * const devices = await moat.tree.lookup("device");
   * for (const name of devices?.keys() ?? []) moat.logger.info(name);
   * ```
   */
  keys(): string[];
}

/** What a `moat.monitor` callback gets, once per etcd revision that touched the node. */
interface MoatChange {
  /**
   * The monitored node, already showing the new values.
   * @example
   * ```ts
   * const dev = moat.data.get<MoatNode>("device");
   * if (dev) moat.monitor(dev)((c) => moat.logger.info("temp", c.node.get("temp")));
   * ```
   */
  readonly node: MoatNode;
  /**
   * `true` for the first call (right after `moat.monitor`), `false` for
   * every change after that, `null` when the node no longer exists.
   * @example
   * ```ts
   * const dev = moat.data.get<MoatNode>("device");
   * if (dev) {
   *   moat.monitor(dev)((c) => {
   *     if (c.is_new === null) moat.logger.warn(c.node.path, "was deleted");
   *   });
   * }
   * ```
   */
  readonly is_new: boolean | null;
  /**
   * Names of children that appeared since the last call (sorted).
   * @example
   * ```ts
   * const devices = await moat.tree.lookup("device");
   * if (devices) moat.monitor(devices)((c) => c.added.forEach((n) => moat.logger.info("new", n)));
   * ```
   */
  readonly added: string[];
  /**
   * Names of children that disappeared since the last call (sorted).
   * @example
   * ```ts
   * const devices = await moat.tree.lookup("device");
   * if (devices) moat.monitor(devices)((c) => c.deleted.forEach((n) => moat.logger.info("gone", n)));
   * ```
   */
  readonly deleted: string[];
}

/** The task's values: `data/` of the task over `values/` of the task over `values/` of the script. */
interface MoatData {
  /**
   * A value, synchronously. Typed by the script's `types/<key>`; a `str/ref`
   * value reads as the node it names (`undefined` while that node does not
   * exist); a `secret` value reads as a string (this is the only way any
   * script reads it: it is the task's own, docs/security.md); a declared key
   * without any value reads as `null`; an unknown key as `undefined`. The
   * type argument is only a cast for the type checker.
   * @example
   * ```ts
   * const target = moat.data.get<number>("target") ?? 21;
   * const device = moat.data.get<MoatNode>("device"); // a str/ref value
   * ```
   */
  get<T extends MoatValue | MoatNode = MoatValue | MoatNode>(key: string): T | undefined;
  /**
   * Every key that has a value or a declared type, sorted.
   * @example
   * ```ts
   * for (const k of moat.data.keys()) moat.logger.info(k, moat.data.get(k));
   * ```
   */
  keys(): string[];
  /**
   * Write an existing key of the task's `data/`, checked against its type
   * (a `secret` key: a string, written to the task's `secret/`).
   * A key that none of the layers has is refused ("you cannot add new
   * values"), as is a value of the wrong type or a value that is not JSON.
   * Rejects with a `MoatError` then; nothing is written.
   * @example
   * ```ts
   * await moat.data.set("light", true);
   * ```
   */
  set(key: string, value: MoatValue): Promise<void>;
}

/** The whole MoaT tree, read-only and loaded on demand. */
interface MoatTree {
  /**
   * Load the node at a path given as segments (a segment may contain `/`:
   * `lookup("device/onewire", "10")` is fine). Resolves to `undefined` when
   * nothing exists there, or when the path is hidden from scripts
   * (`config/amqp`, and prefixes listed in `config/script/hidden`). An empty
   * segment, `.` or `..` rejects with a `TypeError`.
   * @example
   * ```ts
   * const dev = await moat.tree.lookup("device", "onewire", "10", ":dev");
   * if (dev === undefined) throw new Error("no such device");
   * ```
   */
  lookup(...segments: (string | number)[]): Promise<MoatNode | undefined>;
}

/**
 * The machine-readable codes of a `MoatError`:
 *
 * - the call itself: `bad_args` (arguments the host refused), `bad_message`,
 *   `unknown_method`, `cancelled`, `ended` (the script is ending), `internal`
 *   (the host failed; its details stay in the host's log), `unavailable`
 *   (etcd or the broker cannot be reached now), `unsupported`, `timeout`;
 * - what it names: `bad_key`, `bad_name`, `bad_path`, `bad_type`,
 *   `no_such_key`, `not_running`, `time_spec`, `load_cycle`, `load_failed`,
 *   `rpc_error` (the RPC's server failed);
 * - what one script may make the installation spend (docs/security.md):
 *   `quota`, `limit`, `too_large`, `reserved`, `taken`;
 * - what the script's capability manifest does not grant: `denied`.
 */
type MoatErrorCode =
  | "bad_args"
  | "bad_message"
  | "unknown_method"
  | "cancelled"
  | "ended"
  | "internal"
  | "unavailable"
  | "unsupported"
  | "timeout"
  | "bad_key"
  | "bad_name"
  | "bad_path"
  | "bad_type"
  | "no_such_key"
  | "not_running"
  | "time_spec"
  | "load_cycle"
  | "load_failed"
  | "rpc_error"
  | "no_server"
  | "quota"
  | "limit"
  | "too_large"
  | "reserved"
  | "taken"
  | "denied";

/** An error a host call failed with (a rejected promise of a `moat` call). */
interface MoatError extends Error {
  /** `"MoatError"` */
  name: string;
  /**
   * Machine-readable: `no_such_key`, `bad_type`, `load_failed`, `time_spec`,
   * `bad_args`, … and, for what one script may make the installation spend:
   * `quota` (over a quota; the message names its key, e.g. `value_size`:
   * see docs/security.md), `limit` (over a sandbox limit, e.g. `call_rate`),
   * `too_large` (a node too big to look up), `reserved` (a name or error
   * tag that belongs to the hosts: `moat.*`, `job`), `taken` (an RPC name
   * another script serves), `denied` (outside the script's capability
   * manifest; the message names the capability). Every code is listed at {@linkcode MoatErrorCode}.
   */
  code: MoatErrorCode;
}

/** Options of `moat.call`. */
interface MoatCallOptions {
  /** Seconds to wait for the reply. @default 15 */
  timeout?: number;
}

/** The one global object a script gets. */
interface Moat {
  /**
   * Must be called exactly once, before any other member (except
   * `moat.stopping`). A second call, or another member called first, ends
   * the script with an error; so does a script that never calls it. In a
   * library loaded with `moat.load` it may be called again, with other options.
   * @example
   * ```ts
   * moat.setup();
   * ```
   */
  setup(options?: Record<string, unknown>): void;
  /**
   * Run `fn` when the script starts: after its top-level code, in order of
   * registration. Functions running then may register more; those run too.
   * Returns `fn`.
   * @example
   * ```ts
   * moat.on_start(() => moat.logger.info("up"));
   * ```
   */
  on_start<F extends () => unknown>(fn: F): F;
  /**
   * Run `fn` when the script ends, however it ends; in reverse order of
   * registration. Best effort and bounded in time (3 s for all of them
   * together by default); a failing one is logged and the next runs.
   * Returns `fn`.
   * @example
   * ```ts
   * moat.on_stop(() => moat.logger.info("bye"));
   * ```
   */
  on_stop<F extends () => unknown>(fn: F): F;
  /**
   * The script's main function (at most one), run after the `on_start`
   * functions. When it returns (or its promise resolves) the script ends
   * normally; when it throws, with an error. Without one, the script runs
   * until `moat.end()`, an error, or the host stops it. Returns `fn`.
   * @example
   * ```ts
   * moat.run(async () => {
   *   await moat.wait("7 hr");
   *   moat.logger.info("seven o'clock");
   * });
   * ```
   */
  run<F extends () => unknown>(fn: F): F;
  /**
   * End the script normally (state `ok`). Takes no parameters. For an
   * abnormal end, throw an error.
   * @example
   * ```ts
   * moat.end();
   * ```
   */
  end(): void;
  /**
   * Resolves when the script is ending: `moat.end()`, an uncaught error,
   * the run function returning, or the host stopping it.
   * @example
   * ```ts
   * await moat.stopping;
   * ```
   */
  readonly stopping: Promise<void>;
  /**
   * Log through the host.
   * @example
   * ```ts
   * moat.logger.info("hello");
   * ```
   */
  readonly logger: MoatLogger;
  /**
   * The Unix time (seconds) at which `spec` matches (docs/time.md), in the
   * installation's time zone: the moment `moat.wait` with the same arguments
   * would wait until. The spec is one string, an array, or separate arguments
   * (`moat.time_at("12", "hr", 10, "min")`), each optionally followed by the
   * options; `moat.time_at({ now: T })` is T, `moat.time_at([], { current: true })` now.
   * Sun events (`"30 min before sunset"`) use the installation's `/config/location`.
   * @example
   * ```ts
   * const next = await moat.time_at("-1 fri 7 hr 30 min");
   * moat.logger.info("next payday", new Date(next * 1000).toISOString());
   * ```
   */
  time_at(spec: MoatTimeSpec, options?: MoatTimeOptions): Promise<number>;
  time_at(options: MoatTimeOptions): Promise<number>;
  time_at(...spec: [MoatTimeToken, MoatTimeToken, ...MoatTimeToken[]]): Promise<number>;
  time_at(
    ...specThenOptions: [MoatTimeToken, MoatTimeToken, ...MoatTimeToken[], MoatTimeOptions]
  ): Promise<number>;
  /**
   * Wait until `spec` matches; resolves with the Unix time reached. The
   * spec takes the forms of `time_at`: `moat.wait("12", "hr", "10", "min")`
   * is `moat.wait("12 hr 10 min")`; `moat.wait({ now: T })` waits until Unix time T.
   * With `id` and `catch_up`, a firing missed within `catch_up` seconds
   * returns at once, with the time it was due.
   * @example
   * ```ts
   * await moat.wait("6 hr 30 min", { id: "morning", catch_up: 3600 }); // today's, if missed
   * await moat.wait("12 hr"); // the next noon
   * await moat.wait({ now: (await moat.time_at([], { current: true })) + 60 }); // a minute
   * ```
   */
  wait(spec: MoatTimeSpec, options?: MoatScheduleOptions): Promise<number>;
  wait(options: MoatScheduleOptions): Promise<number>;
  wait(...spec: [MoatTimeToken, MoatTimeToken, ...MoatTimeToken[]]): Promise<number>;
  wait(
    ...specThenOptions: [MoatTimeToken, MoatTimeToken, ...MoatTimeToken[], MoatScheduleOptions]
  ): Promise<number>;
  /**
   * Call `fn` once when `spec` matches, with the firing (`{ due, late }`).
   * The timer dies with the script; an error in `fn` ends the script. With
   * `id`, the firing counts as done (is recorded) when `fn` has returned. `fn` follows the spec in any of its forms
   * and precedes the options: `moat.run_at("23", "hr", fn, { current: true })`.
   * @example
   * ```ts
   * const t = moat.run_at("23 hr", () => moat.data.set("light", false));
   * moat.on_stop(() => t.cancel());
   * ```
   */
  run_at(
    spec: MoatTimeSpec,
    fn: (firing: MoatFiring) => unknown,
    options?: MoatScheduleOptions,
  ): MoatTimer;
  run_at(options: MoatScheduleOptions, fn: (firing: MoatFiring) => unknown): MoatTimer;
  run_at(
    ...specThenFn: [
      MoatTimeToken,
      MoatTimeToken,
      ...MoatTimeToken[],
      (firing: MoatFiring) => unknown,
    ]
  ): MoatTimer;
  run_at(
    ...specFnOptions: [
      MoatTimeToken,
      MoatTimeToken,
      ...MoatTimeToken[],
      (firing: MoatFiring) => unknown,
      MoatScheduleOptions,
    ]
  ): MoatTimer;
  /**
   * The task's values (`data/`), read synchronously, written with `set`.
   * @example
   * ```ts
   * const limit = moat.data.get<number>("limit") ?? 8;
   * ```
   */
  readonly data: MoatData;
  /**
   * The MoaT tree, read-only.
   * @example
   * ```ts
   * const cfg = await moat.tree.lookup("config", "run");
   * ```
   */
  readonly tree: MoatTree;
  /**
   * Watch a node: `moat.monitor(node)(fn)` calls `fn` once right away
   * (`is_new: true`), then once per etcd revision that changed the node or
   * anything below it, in revision order, none lost, none twice. Calls are
   * not awaited; an error in `fn` ends the script. Throws a `TypeError` for
   * anything that is not a node. Returns `fn`.
   * @example
   * ```ts
   * const dev = moat.data.get<MoatNode>("device");
   * if (dev === undefined) throw new Error("the device does not exist");
   * moat.monitor(dev)((change) => {
   *   moat.logger.info("temperature now", change.node.get("temp"));
   * });
   * ```
   */
  monitor(node: MoatNode): <F extends (change: MoatChange) => unknown>(fn: F) => F;
  /**
   * Record an error condition of this task under `tag` (letters, digits,
   * `_`, `.`, `-`): `status/errors/<tag>/<id>/{loc,msg,counter,created,timestamp}`.
   * Setting a tag that is set already counts it again and replaces the message.
   * @example
   * ```ts
   * await moat.set_error("owch", "I had an owie");
   * ```
   */
  set_error(tag: string, message: string): Promise<void>;
  /**
   * The error condition `tag` is fixed, or never existed: remove its record.
   * @example
   * ```ts
   * await moat.clear_error("owch");
   * ```
   */
  clear_error(tag: string): Promise<void>;
  /**
   * Run another script (a library) in this sandbox with this `moat`, and
   * resolve to what it put on its `moat.exports`. The library's `moat.run`
   * is ignored and its `moat.setup` may differ. A name is loaded once per
   * run (later loads give the same object); cycles are errors; at most 100
   * `load` calls per run. A change of the library restarts the task,
   * deleting it stops the task. The type argument is only a cast.
   * @example
   * ```ts
   * interface Units { celsius(f: number): number }
   * const units = await moat.load<Units>("lib/units");
   * moat.logger.info(units.celsius(212));
   * ```
   */
  load<T extends object = Record<string, unknown>>(name: string): Promise<T>;
  /**
   * In a library run by `moat.load`: the object that `moat.load` resolves
   * to; put what the library offers on it. In the script a task runs it is
   * an empty object of its own that nobody reads, so that a library's code
   * also runs as a task (a loaded script behaves as if copied into the
   * loading one).
   * @example
   * ```ts
   * moat.exports.celsius = (f: number) => (f - 32) * 5 / 9;
   * ```
   */
  readonly exports: Record<string, unknown>;
  /**
   * Serve the RPC `name` (dot-separated words) over AMQP while the script
   * runs: `moat.rpc(name)(handler)`. The handler gets the call's arguments
   * (one JSON value) and returns (or resolves to) the result; what it throws
   * goes back to the caller as the error. Returns the handler.
   * @example
   * ```ts
   * moat.rpc("porch.light.set")(async (args: { on: boolean }) => {
   *   await moat.data.set("light", args.on);
   *   return { ok: true };
   * });
   * ```
   */
  // deno-lint-ignore no-explicit-any
  rpc(name: string): <F extends (args: any) => unknown>(handler: F) => F;
  /**
   * Handle alerts whose topic matches `pattern` (`*` one word, `#` any
   * number of words) while the script runs: `moat.on_alert(pattern)(handler)`.
   * Returns the handler.
   * @example
   * ```ts
   * moat.on_alert("door.#")((topic, data) => moat.logger.info(topic, data));
   * ```
   */
  on_alert(pattern: string): <F extends (topic: string, data: unknown) => unknown>(handler: F) => F;
  /**
   * Call the RPC `name` over AMQP with `args` (one JSON value) and resolve
   * to its result; rejects when the handler failed or no reply came within
   * `options.timeout` seconds (default 15).
   * @example
   * ```ts
   * const reply = await moat.call("lamp.kitchen.set", { level: 40 }, { timeout: 5 });
   * ```
   */
  call(name: string, args?: unknown, options?: MoatCallOptions): Promise<unknown>;
  /**
   * Send an alert with `data` (one JSON value) to every handler of a
   * matching pattern.
   * @example
   * ```ts
   * await moat.alert("freezer.warm", { temp: -10 });
   * ```
   */
  alert(topic: string, data?: unknown): Promise<void>;
  /**
   * Register a value to show through the debug mechanism: `moat debug`
   * (the host's `moat.debug.<host>` RPC) answers
   * `{ "task": { "script": { <task path>: value } } }`, keyed by the path
   * of the task that runs the script (one script may run in many tasks).
   * The value is kept, not copied: each `moat debug` shows it as it is at
   * that moment (as JSON, at most `value_size` bytes, else a note saying
   * why it is not shown). A later call registers another value instead.
   * @example
   * ```ts
   * const state = { switched: 0 };
   * moat.debug_obj(state);
   * state.switched++; // moat debug shows { "switched": 1 }
   * ```
   */
  debug_obj(value: unknown): void;
  /**
   * Run `fn(...args)` in a thread of its own and resolve to its result, so
   * that a long computation does not hold up the script: its monitors, RPC
   * handlers, timers and the host's heartbeat keep working meanwhile.
   *
   * - `fn` must be written in the script's code (or a library it loaded):
   *   a function or an arrow function, not a method, accessor, built-in or
   *   bound function. It must be self-contained: it runs in another
   *   global scope, where the script's variables and `moat` do not exist;
   *   pass what it needs as `args`.
   * - `args` and the result are structured-cloned (JSON values, `Date`,
   *   `Map`, typed arrays, errors, …; not functions). What `fn` throws
   *   rejects the promise.
   * - The thread has the same restrictions as the script (no network,
   *   files, `eval`, …; its `console` writes to the task's log). Its CPU
   *   time and memory count against the script's limits, and it is killed
   *   when the script ends.
   * - At most 4 threads run at once; further calls wait until one is free
   *   (at most 1000 may wait; more reject with a `RangeError`).
   * - A script whose capability manifest says `"thread": false` gets a
   *   `MoatError` with code `denied` instead (docs/security.md).
   * @example
   * ```ts
   * const primes = await moat.thread((n: number) => {
   *   let count = 0;
   *   for (let i = 2; i < n; i++) {
   *     let prime = true;
   *     for (let d = 2; d * d <= i; d++) if (i % d === 0) prime = false;
   *     if (prime) count++;
   *   }
   *   return count;
   * }, 100_000);
   * ```
   */
  thread<A extends unknown[], R>(fn: (...args: A) => R, ...args: A): Promise<Awaited<R>>;
}

/** The MoaT scripting environment. */
declare const moat: Moat;
