/**
 * The host side of the bridge: running one script in one sandbox process.
 *
 * Everything a task runner needs is behind {@linkcode Isolation}:
 * `start()` a script with a method table and a log sink, get a
 * {@linkcode ScriptHandle}, and await `ended` (or `stop()` / `kill()` it).
 * {@linkcode SandboxPool} is the implementation: one `deno run` per script,
 * no permissions, a V8 heap limit, its own temporary Deno cache, and a warm
 * spare process so that starting a script costs a message, not a spawn.
 *
 * @example
 * ```ts ignore
 * const pool = new SandboxPool();
 * const script = await pool.start({
 *   task: "home/porch", script: "porch", code: "moat.setup(); moat.end();",
 *   methods: { time_at: async ([spec, opts]) => …, wait: async ([spec, opts], { signal }) => … },
 *   onLog: (level, message) => console.log(level, message),
 * });
 * const end = await script.ended; // { state: "ok", message: "script called moat.end()", … }
 * await pool.close();
 * ```
 *
 * @module
 */

import type {
  EventMessage,
  Json,
  LogLevel,
  MethodName,
  Methods,
  ReplyMessage,
} from "../../sandbox/protocol.ts";
import {
  type ChildExit,
  describe,
  findBinary,
  limitData,
  SandboxChild,
  sweepStaleDirs,
} from "./_child.ts";
import { DEFAULT_LIMITS, type SandboxLimits, TokenBucket } from "./limits.ts";
import { procUnreadable, readProc, readVmData, ScriptGuard, Watchdog } from "./_watchdog.ts";
import { argValidators, BridgeError, checkMessage } from "./validate.ts";

export { BridgeError } from "./validate.ts";
export { DEFAULT_LIMITS, type SandboxLimits } from "./limits.ts";

/** How a script ended. */
export interface ScriptEnd {
  /** ok: normal end or stopped; error: the script threw; fail: the host ended it. */
  state: "ok" | "error" | "fail";
  message: string;
  /** A stack trace or other detail; "" when none. */
  debug: string;
}

/** What a method handler gets besides the arguments. */
export interface CallContext {
  /** Aborts when the script cancels the call or ends. */
  signal: AbortSignal;
  /** The calling task's path. */
  task: string;
}

/**
 * The host's implementation of every bridge method. Arguments arrive
 * validated. Throw {@linkcode BridgeError} for errors the script should see;
 * anything else reaches the script as `internal error`.
 */
export type MethodTable = {
  readonly [M in MethodName]: (
    args: Methods[M]["args"],
    ctx: CallContext,
  ) => Promise<Methods[M]["result"]>;
};

/** Everything needed to run one script. */
export interface StartOptions {
  /** The task's path (for messages and `CallContext.task`). */
  task: string;
  /** The script's name (for stack traces). */
  script: string;
  /** JavaScript: the body of an async function with one parameter, `moat`. */
  code: string;
  /** Events applied before the script's first line runs (e.g. `data`). */
  initial?: { [event: string]: Json };
  methods: MethodTable;
  /** Script output (`moat.logger`, `console`) and sandbox warnings. Must not throw. */
  onLog(level: LogLevel, message: string): void;
  /**
   * Host-side failures the script must not see (a handler's unexpected
   * exception). @default logs with `console.error`
   */
  onInternalError?(error: unknown, method: string): void;
  /** After `stop()`, SIGKILL if not ended within this many ms. @default 4000 */
  stopGraceMs?: number;
  /** Bound for all `on_stop` functions together, in ms. @default 3000 */
  onStopBudgetMs?: number;
  /** Calls the script may have in flight; more are refused. @default 1000 */
  maxCallsInFlight?: number;
  /** Sandbox warnings (stray output, refused messages) passed to `onLog`. @default 100 */
  maxWarnings?: number;
  /**
   * Resource and traffic limits of this script, over the pool's
   * (`calls_in_flight` yields to `maxCallsInFlight`). See docs/security.md.
   */
  limits?: Partial<SandboxLimits>;
}

/** A running script. */
export interface ScriptHandle {
  /** Resolves once the script has ended and its process is gone. Never rejects. */
  readonly ended: Promise<ScriptEnd>;
  /** The sandbox process id. */
  readonly pid: number;
  /**
   * Ask the script to end: `moat.stopping` resolves, `on_stop` functions run,
   * then the process is killed. State as the script reported (`ok` after a
   * clean stop); `fail` if it has not ended after `stopGraceMs`.
   */
  stop(reason: string): Promise<ScriptEnd>;
  /** SIGKILL now. State `fail`, message `reason` (unless it had ended already). */
  kill(reason: string): Promise<ScriptEnd>;
  /** Deliver an event into the script (monitors, alerts, RPC: later). */
  sendEvent(event: Omit<EventMessage, "kind">): void;
}

/** Runs scripts in isolation. */
export interface Isolation {
  start(options: StartOptions): Promise<ScriptHandle>;
  /** Kill every script and spare process. Safe to call twice. */
  close(): Promise<void>;
}

/** Options of {@linkcode SandboxPool}. */
export interface SandboxPoolOptions {
  /** The `deno` binary. @default Deno.execPath() */
  denoPath?: string;
  /** V8 heap limit per sandbox process (each isolate), MiB. @default 64 */
  heapMb?: number;
  /** Sandbox processes kept spawned and ready. @default 1 */
  warm?: number;
  /** The sandbox main module. @default sandbox/process.ts beside this tree */
  processModule?: string | URL;
  /** A sandbox that is not ready after this long is killed. @default 10000 */
  readyTimeoutMs?: number;
  /** Default limits of every script (each may override them). @default DEFAULT_LIMITS */
  limits?: Partial<SandboxLimits>;
  /** How often each sandbox's CPU, memory and heartbeat are checked, ms. @default 250 */
  sampleMs?: number;
  /**
   * The util-linux `prlimit` binary that applies rlimits (file size, no core
   * dumps, data size); `null`: none (then only the RSS watch bounds memory).
   * @default found in /usr/bin, /bin or /usr/local/bin
   */
  prlimit?: string | null;
  /** Largest file a sandbox process may write (its Deno cache), MiB. @default 32 */
  fileSizeMb?: number;
  /**
   * Niceness of every sandbox process (through the coreutils `nice`
   * binary, found like `prlimit`); `null`: the host's own. Busy scripts
   * then take CPU from each other before they take it from the host.
   * @default 10
   */
  nice?: number | null;
}

/** What a pool gives each of its scripts for guarding it. */
interface Guarding {
  watchdog: Watchdog;
  limits: SandboxLimits;
  prlimit: string | undefined;
}

/** One script per sandbox process, with warm spares. */
export class SandboxPool implements Isolation {
  #options: {
    denoPath: string;
    heapMb: number;
    processModule: string;
    readyTimeoutMs: number;
    prlimit: string | undefined;
    fileSizeBytes: number;
    nice: { path: string; value: number } | undefined;
  };
  #guarding: Guarding;
  #sweep: Promise<unknown> | undefined;
  #warmTarget: number;
  #warm: SandboxChild[] = [];
  #spawning = 0;
  #children = new Set<SandboxChild>();
  #spawns = new Set<Promise<unknown>>();
  #scripts = new Set<SandboxScript>();
  #closed = false;

  constructor(options: SandboxPoolOptions = {}) {
    // The watchdog is what stops a script that spins or grows, and it reads
    // each sandbox's CPU time and memory from /proc: a host that cannot
    // would run scripts unguarded. Refuse instead.
    const why = procUnreadable();
    if (why !== undefined) {
      throw new Error(
        `Cannot run sandboxes: the host watches their CPU time and memory in /proc, ` +
          `which it cannot read (${why}); Deno grants /proc only with --allow-all ` +
          `(deno run --allow-all cli.ts, as deno task moat does)`,
      );
    }
    this.#options = {
      denoPath: options.denoPath ?? Deno.execPath(),
      heapMb: options.heapMb ?? 64,
      processModule: String(
        options.processModule ?? new URL("../../sandbox/process.ts", import.meta.url),
      ),
      readyTimeoutMs: options.readyTimeoutMs ?? 10_000,
      prlimit: options.prlimit === undefined ? findBinary("prlimit") : options.prlimit ?? undefined,
      fileSizeBytes: (options.fileSizeMb ?? 32) * 2 ** 20,
      nice: niceOf(options.nice === undefined ? 10 : options.nice),
    };
    this.#guarding = {
      watchdog: new Watchdog(options.sampleMs ?? 250),
      limits: { ...DEFAULT_LIMITS, ...options.limits },
      prlimit: this.#options.prlimit,
    };
    this.#warmTarget = options.warm ?? 1;
    this.#refill();
  }

  /**
   * Start a script. Resolves once the script has been handed to a ready
   * sandbox; rejects only if no sandbox could be started.
   */
  async start(options: StartOptions): Promise<ScriptHandle> {
    if (this.#closed) throw new Error("Cannot start a script: the sandbox pool is closed");
    let child: SandboxChild | undefined;
    while (this.#warm.length > 0 && child === undefined) {
      const c = this.#warm.shift()!;
      if (!c.exited) child = c;
    }
    this.#refill();
    child ??= await this.#spawn();
    try {
      await child.ready;
    } catch (err) {
      child.kill();
      throw new Error(`Cannot start script "${options.script}": ${(err as Error).message}`, {
        cause: err,
      });
    }
    if (this.#closed) {
      child.kill();
      throw new Error("Cannot start a script: the sandbox pool is closed");
    }
    const script = new SandboxScript(child, options, this.#guarding);
    this.#scripts.add(script);
    script.ended.then(() => this.#scripts.delete(script));
    return script;
  }

  /**
   * Resolves once the warm spares being spawned now are ready, so that the
   * next `start()` costs a message, not a spawn. Never rejects.
   */
  async ready(): Promise<void> {
    await Promise.allSettled([...this.#spawns]);
    await Promise.allSettled(this.#warm.map((c) => c.ready));
  }

  async close(): Promise<void> {
    this.#closed = true;
    await Promise.allSettled([...this.#spawns]);
    const ends = [...this.#scripts].map((s) => s.kill("sandbox pool closed"));
    for (const c of this.#children) c.kill();
    await Promise.allSettled([...ends, ...[...this.#children].map((c) => c.gone)]);
    await this.#sweep;
    this.#guarding.watchdog.close();
    this.#warm = [];
  }

  #refill(): void {
    while (!this.#closed && this.#warm.length + this.#spawning < this.#warmTarget) {
      this.#spawning++;
      const p = this.#spawn().then(
        (c) => {
          if (this.#closed) c.kill();
          else this.#warm.push(c);
        },
        (err) => console.error("moat: cannot spawn a spare sandbox process:", err),
      ).finally(() => {
        this.#spawning--;
        this.#spawns.delete(p);
      });
      this.#spawns.add(p);
    }
  }

  async #spawn(): Promise<SandboxChild> {
    const child = await SandboxChild.spawn(this.#options);
    // Once per pool: remove the cache folders of hosts that died uncleanly.
    this.#sweep ??= sweepStaleDirs(child.dir.slice(0, child.dir.lastIndexOf("/")));
    this.#children.add(child);
    child.gone.then(() => {
      this.#children.delete(child);
      const i = this.#warm.indexOf(child);
      if (i >= 0) this.#warm.splice(i, 1);
    });
    return child;
  }
}

/** One script in one sandbox process. */
class SandboxScript implements ScriptHandle {
  readonly ended: Promise<ScriptEnd>;
  readonly pid: number;
  #child: SandboxChild;
  #options: StartOptions;
  #inflight = new Map<number, AbortController>();
  #end: ScriptEnd | undefined;
  #stopTimer: ReturnType<typeof setTimeout> | undefined;
  #warnings = 0;
  #maxInFlight: number;
  // ---- limits (docs/security.md) ----
  #limits: SandboxLimits;
  #guard: ScriptGuard;
  #unwatch: () => void;
  #callBucket: TokenBucket;
  #logLines: TokenBucket;
  #logChars: TokenBucket;
  #logsDropped = 0;
  #floodCount = 0;
  #floodSecond = 0;

  constructor(child: SandboxChild, options: StartOptions, guarding: Guarding) {
    this.#child = child;
    this.#options = options;
    this.pid = child.pid;
    const limits = { ...guarding.limits, ...options.limits };
    this.#limits = limits;
    this.#maxInFlight = options.maxCallsInFlight ?? limits.callsInFlight;
    this.#callBucket = new TokenBucket(limits.callRate, { burst: 5 });
    this.#logLines = new TokenBucket(limits.logRate);
    this.#logChars = new TokenBucket(limits.logVolume * 1024);
    this.#guard = new ScriptGuard(limits, {
      kill: (reason) => this.#finish({ state: "fail", message: reason, debug: "" }),
      ping: (id) => this.#child.send({ kind: "ping", id }),
    }, readProc(child.pid));
    this.#unwatch = guarding.watchdog.watch(child.pid, this.#guard);
    if (guarding.prlimit !== undefined) {
      // A hard cap on memory the process may map beyond what it has now,
      // so that a burst of ArrayBuffers fails at once; the RSS watch is
      // the finer limit.
      const now = readVmData(child.pid);
      if (now !== undefined) {
        void limitData(guarding.prlimit, child.pid, now + limits.memory * 2 ** 20);
      }
    }
    child.onMessage = (v) => this.#onMessage(v);
    child.onNoise = (stream, line) => this.#warn(`sandbox ${stream}: ${line.slice(0, 1000)}`);
    this.ended = child.gone.then((exit) => {
      clearTimeout(this.#stopTimer);
      this.#unwatch();
      this.#finish({ state: "fail", message: exitMessage(exit, options), debug: "" });
      return this.#end!;
    });
    child.send({
      kind: "start",
      task: options.task,
      script: options.script,
      code: options.code,
      ...(options.initial ? { initial: options.initial } : {}),
      options: {
        onStopBudgetMs: options.onStopBudgetMs ?? 3000,
        // The Worker refuses extra calls itself; the host refuses them too.
        maxCallsInFlight: this.#maxInFlight,
      },
    });
  }

  stop(reason: string): Promise<ScriptEnd> {
    if (this.#end === undefined && this.#stopTimer === undefined) {
      const grace = this.#options.stopGraceMs ?? 4000;
      this.#child.send({ kind: "stop", reason });
      this.#stopTimer = setTimeout(() => {
        this.#finish({
          state: "fail",
          message: `script did not end within ${grace} ms of being stopped (${reason})`,
          debug: "",
        });
      }, grace);
    }
    return this.ended;
  }

  kill(reason: string): Promise<ScriptEnd> {
    this.#finish({ state: "fail", message: reason, debug: "" });
    return this.ended;
  }

  sendEvent(event: Omit<EventMessage, "kind">): void {
    if (this.#end !== undefined) return;
    this.#child.send({ kind: "event", event: event.event, data: event.data });
  }

  /** Record the first end, drop every call in flight, kill the process. */
  #finish(end: ScriptEnd): void {
    if (this.#end !== undefined) return;
    this.#end = end;
    this.#unwatch();
    this.#noteDroppedLogs();
    for (const ac of this.#inflight.values()) ac.abort(new BridgeError("ended", "script ended"));
    this.#inflight.clear();
    this.#child.kill();
  }

  // The sandbox is untrusted: validate before dispatch; never throw.
  #onMessage(value: unknown): void {
    if (this.#end !== undefined) return;
    if (this.#flooding()) return;
    const checked = checkMessage(value);
    if (!checked.ok) {
      this.#warn(`refused a message from the sandbox: ${checked.why}`);
      if (checked.id !== undefined && !this.#inflight.has(checked.id)) {
        this.#reply({
          kind: "reply",
          id: checked.id,
          ok: false,
          error: { code: "bad_message", message: checked.why },
        });
      }
      return;
    }
    const msg = checked.message;
    switch (msg.kind) {
      case "call":
        this.#call(msg.id, msg.method, msg.args as unknown[]);
        return;
      case "cancel": {
        const ac = this.#inflight.get(msg.id);
        if (ac === undefined) return; // answered already, or never asked
        this.#inflight.delete(msg.id);
        ac.abort(new BridgeError("cancelled", "call cancelled"));
        this.#reply({
          kind: "reply",
          id: msg.id,
          ok: false,
          error: { code: "cancelled", message: "call cancelled" },
        });
        return;
      }
      case "log":
        this.#scriptLog(msg.level, msg.message);
        return;
      case "pong":
        this.#guard.pong();
        return;
      case "ended":
        clearTimeout(this.#stopTimer);
        this.#finish({ state: msg.state, message: msg.message, debug: msg.debug });
        return;
      case "ready":
        this.#warn("refused a message from the sandbox: second ready");
        return;
    }
  }

  #call(id: number, method: string, args: unknown[]): void {
    const refuse = (code: string, message: string) =>
      this.#reply({ kind: "reply", id, ok: false, error: { code, message } });
    if (this.#inflight.has(id)) {
      // Answering would confuse the call already in flight under this id.
      this.#warn(`refused a message from the sandbox: call id ${id} is already in flight`);
      return;
    }
    if (this.#inflight.size >= this.#maxInFlight) {
      return refuse("limit", `too many calls in flight (limit ${this.#maxInFlight})`);
    }
    if (!this.#callBucket.take()) {
      return refuse(
        "limit",
        `too many calls: more than ${this.#limits.callRate} per second (limit: call_rate)`,
      );
    }
    // A closed table: own properties only, so "__proto__", "constructor",
    // "toString" and friends are unknown methods.
    const methods = this.#options.methods;
    if (!Object.hasOwn(argValidators, method) || !Object.hasOwn(methods, method)) {
      return refuse("unknown_method", `unknown method ${JSON.stringify(method.slice(0, 100))}`);
    }
    const name = method as MethodName;
    let valid: Methods[MethodName]["args"];
    try {
      valid = argValidators[name](args);
    } catch (err) {
      return this.#replyError(id, name, err);
    }
    const ac = new AbortController();
    this.#inflight.set(id, ac);
    const handler = methods[name] as (
      a: typeof valid,
      c: CallContext,
    ) => Promise<Methods[MethodName]["result"]>;
    let result: Promise<unknown>;
    try {
      result = Promise.resolve(handler(valid, { signal: ac.signal, task: this.#options.task }));
    } catch (err) {
      result = Promise.reject(err);
    }
    result.then(
      (value) => {
        if (this.#inflight.get(id) !== ac) return; // cancelled or ended meanwhile
        this.#inflight.delete(id);
        this.#reply({ kind: "reply", id, ok: true, value: (value ?? null) as never });
      },
      (err) => {
        if (this.#inflight.get(id) !== ac) return;
        this.#inflight.delete(id);
        this.#replyError(id, name, err);
      },
    );
  }

  #replyError(id: number, method: string, err: unknown): void {
    if (err instanceof BridgeError) {
      this.#reply({
        kind: "reply",
        id,
        ok: false,
        error: { code: String(err.code), message: String(err.message) },
      });
      return;
    }
    // Never the host's stack or message: they may name files, hosts, keys.
    try {
      (this.#options.onInternalError ?? defaultInternalError)(err, method);
    } catch { /* the report must not break the reply */ }
    this.#reply({
      kind: "reply",
      id,
      ok: false,
      error: { code: "internal", message: "internal error" },
    });
  }

  #reply(reply: ReplyMessage): void {
    if (this.#end !== undefined) return;
    try {
      this.#child.send(reply);
    } catch (err) {
      // A handler result that is not JSON (a BigInt, a cycle): still one reply.
      this.#child.send({
        kind: "reply",
        id: reply.id,
        ok: false,
        error: { code: "internal", message: "internal error" },
      });
      try {
        (this.#options.onInternalError ?? defaultInternalError)(err, "reply");
      } catch { /* ignore */ }
    }
  }

  /**
   * Count a message from the sandbox; past `flood` in one second, kill the
   * script: even refusing costs the host, and a flood delays other scripts.
   */
  #flooding(): boolean {
    const second = Math.floor(performance.now() / 1000);
    if (second !== this.#floodSecond) {
      this.#floodSecond = second;
      this.#floodCount = 0;
    }
    if (++this.#floodCount <= this.#limits.flood) return false;
    this.#finish({
      state: "fail",
      message: `bridge flood: more than ${this.#limits.flood} messages in one second ` +
        `(limit: flood = ${this.#limits.flood})`,
      debug: "",
    });
    return true;
  }

  /** Script output, within `log_rate` and `log_volume`; the rest is counted and dropped. */
  #scriptLog(level: LogLevel, message: string): void {
    if (!this.#logLines.take() || !this.#logChars.take(Math.min(message.length, 1024 * 1024))) {
      this.#logsDropped++;
      return;
    }
    this.#noteDroppedLogs();
    this.#log(level, message);
  }

  #noteDroppedLogs(): void {
    if (this.#logsDropped === 0) return;
    const n = this.#logsDropped;
    this.#logsDropped = 0;
    this.#log(
      "warn",
      `${n} log line${n === 1 ? "" : "s"} of the script dropped (limits: log_rate = ` +
        `${this.#limits.logRate} lines and log_volume = ${this.#limits.logVolume} KiB per second)`,
    );
  }

  #log(level: LogLevel, message: string): void {
    try {
      this.#options.onLog(level, message);
    } catch { /* onLog must not throw; if it does, the sandbox is not to blame */ }
  }

  #warn(message: string): void {
    const max = this.#options.maxWarnings ?? 100;
    if (this.#warnings > max) return;
    this.#warnings++;
    this.#log("warn", this.#warnings > max ? "further sandbox warnings suppressed" : message);
  }
}

function defaultInternalError(error: unknown, method: string): void {
  console.error(`moat: bridge method ${method} failed:`, error);
}

function exitMessage(exit: ChildExit, options: StartOptions): string {
  const how = describe(exit);
  if (/out of memory|heap limit/i.test(exit.stderrTail)) {
    return `sandbox process of script "${options.script}" ran out of memory (${how})`;
  }
  return `sandbox process of script "${options.script}" exited unexpectedly (${how})`;
}

/** The `nice` wrapper for a niceness (1–19), or none for `null`, 0 or a missing binary. */
function niceOf(value: number | null): { path: string; value: number } | undefined {
  if (value === null || value === 0) return undefined;
  if (!Number.isInteger(value) || value < 1 || value > 19) {
    throw new RangeError(`Cannot run sandboxes at niceness ${value}: give an integer from 1 to 19`);
  }
  const path = findBinary("nice");
  return path === undefined ? undefined : { path, value };
}
