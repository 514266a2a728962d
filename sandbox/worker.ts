/**
 * The Worker bootstrap: everything that runs inside the script's Worker.
 *
 * The sandbox process has no read permission, so it cannot start a Worker
 * from this file. Instead it builds the Worker from a `blob:` URL whose text
 * is {@linkcode workerSource}: the source of {@linkcode workerMain} (already
 * transpiled to JavaScript by Deno when the sandbox process loaded this
 * module) followed by a call with its settings. Hence `workerMain` must be
 * self-contained: it may use globals and its parameter, nothing else from
 * this module (type-only imports are erased and fine).
 *
 * Inside the Worker, `workerMain`
 * 1. captures what it needs (`postMessage`, `JSON`, `Deno.inspect`, timers,
 *    the `AsyncFunction` constructor);
 * 2. neutralises everything a script could use to make new code from text or
 *    to reach the process: `eval`, the `Function`/`AsyncFunction`/generator
 *    constructors (through their prototypes' `constructor` too), string
 *    timers, `Deno` (stdin/stdout, signals, `Deno.inspect`), Node's
 *    `process`/`Buffer`/`global`, nested `Worker`s, `WebAssembly` (memory
 *    outside the V8 heap limit), `caches` and `BroadcastChannel` (state
 *    shared beyond the script), WebGPU (`navigator.gpu`, the `GPU…`
 *    interfaces, `OffscreenCanvas`: graphics drivers in the process and a
 *    shader cache in the user's home), and the raw
 *    `postMessage`/`close`/`onmessage` of the Worker scope;
 * 3. replaces `console` so that script output becomes `log` messages;
 * 4. on `start`, builds `moat` and runs the script's lifecycle.
 *
 * Dynamic `import()` cannot be removed from JavaScript; the sandbox process
 * runs with `--no-npm --no-remote`, no read permission and an import map
 * that sends every `node:` built-in to a module that throws, so an import
 * finds nothing to load. (The host's code check rejects `import` anyway.)
 *
 * @module
 */

import type {
  AlertEvent,
  DataEvent,
  ErrorInfo,
  HostMessage,
  Json,
  LogLevel,
  MethodName,
  Methods,
  NodeSnapshot,
  RpcEvent,
  SandboxMessage,
  ScriptEvent,
  TimeOptions,
  TimeSpec,
  TreeEvent,
} from "./protocol.ts";
import type { MoatApi, MoatApiErrorCode } from "./moat_api.ts";

/** Settings baked into the Worker's source. */
export interface WorkerConfig {
  /** `PROTOCOL_VERSION`, sent back in `ready`. */
  version: number;
  /** Longest message the Worker may send, in UTF-8 bytes. */
  maxLineBytes: number;
  /** Log messages are cut to this many characters. */
  maxLogChars: number;
  /** `ended.message`/`ended.debug` are cut to this many characters. */
  maxEndTextChars: number;
}

/** The JavaScript text of the Worker: `workerMain` and a call to it. */
export function workerSource(config: WorkerConfig): string {
  return `"use strict";\n${workerMain.toString()}\nworkerMain(${JSON.stringify(config)});\n`;
}

/**
 * The Worker's main. Runs inside the Worker only; see the module doc for why
 * it must be self-contained.
 */
export function workerMain(config: WorkerConfig): void {
  // deno-lint-ignore no-explicit-any
  const g = globalThis as any;

  // ---- 1. capture --------------------------------------------------------
  const post: (s: string) => void = g.postMessage.bind(g);
  const listen: (type: string, fn: (e: Event) => void) => void = g.addEventListener.bind(g);
  const stringify = JSON.stringify;
  const parse = JSON.parse;
  const inspect: (v: unknown, o: object) => string = g.Deno.inspect;
  const realSetTimeout: (fn: () => void, ms: number) => unknown = g.setTimeout;
  const realClearTimeout: (t: unknown) => void = g.clearTimeout;
  const realSetInterval: (fn: () => void, ms: number) => unknown = g.setInterval;
  const realClearInterval: (t: unknown) => void = g.clearInterval;
  const encoder = new TextEncoder();
  // deno-lint-ignore no-explicit-any
  const AsyncFunction: new (...a: string[]) => (...a: any[]) => Promise<unknown> =
    Object.getPrototypeOf(async function () {}).constructor;

  // ---- 2. neutralise -----------------------------------------------------
  const deny = function () {
    throw new EvalError("code generation from strings is disabled in scripts");
  };
  // `x instanceof Function` keeps working.
  deny.prototype = Function.prototype;
  const codeProtos = [
    Function.prototype,
    AsyncFunction.prototype,
    Object.getPrototypeOf(function* () {}),
    Object.getPrototypeOf(async function* () {}),
  ];
  for (const proto of codeProtos) {
    Object.defineProperty(proto, "constructor", {
      value: deny,
      writable: false,
      enumerable: false,
      configurable: false,
    });
  }
  const removed = [
    "eval",
    "Function",
    "Deno",
    "Worker",
    "process",
    "Buffer",
    "global",
    "setImmediate",
    "clearImmediate",
    "WebAssembly",
    "caches",
    "BroadcastChannel",
  ];
  for (const name of removed) delete g[name];
  Object.defineProperty(g, "Function", { value: deny, writable: false, configurable: false });
  // No WebGPU: `navigator.gpu.requestAdapter()` loads the system's graphics
  // drivers into the sandbox process (native code no permission covers, and
  // memory outside the V8 heap), and Mesa writes its shader cache into the
  // home folder of the host's user (it asks the password database, not
  // $HOME). The getter lives on WorkerNavigator.prototype: delete it on every
  // object of navigator's chain, so that no prototype or descriptor brings
  // it back. The `GPU…` interfaces and constants (`GPUBufferUsage`, …) are
  // found by name on the whole scope chain, so that a Deno version adding
  // one does not widen the sandbox; tests/security/globals_test.ts holds
  // the complete list of what stays.
  for (let o = g.navigator; o !== null && o !== Object.prototype; o = Object.getPrototypeOf(o)) {
    if (Object.hasOwn(o, "gpu")) delete o.gpu;
  }
  for (let o = g; o !== null && o !== Object.prototype; o = Object.getPrototypeOf(o)) {
    for (const name of Object.getOwnPropertyNames(o)) {
      if (/^(GPU|WGSL)/.test(name)) delete o[name];
    }
  }
  // OffscreenCanvas is the other door to WebGPU: its getContext("webgpu")
  // hands out a GPUCanvasContext (whose prototype leads back to the
  // interfaces removed above). Deno gives it no "2d" context, so a script
  // loses nothing it could use.
  delete g.OffscreenCanvas;
  delete g.ImageBitmapRenderingContext;
  // No `blob:` URLs: they are a way to name code for the module loader (and
  // to keep data alive outside the script's reach). `data:` imports are
  // refused by the host's code check, and no code can be made from text.
  for (const name of ["createObjectURL", "revokeObjectURL"]) delete g.URL[name];
  // The raw channel to the sandbox process lives on the scope's prototypes.
  for (const name of ["postMessage", "close", "onmessage", "onmessageerror", "onerror"]) {
    for (let o = g; o !== null && o !== Object.prototype; o = Object.getPrototypeOf(o)) {
      if (Object.hasOwn(o, name)) delete o[name];
    }
  }

  // Timers: functions only (a string would be evaluated), and remembered so
  // that they die when the script ends.
  const userTimers = new Set<unknown>();
  const wrapTimer =
    (real: (fn: () => void, ms: number) => unknown, repeat: boolean) =>
    (fn: unknown, ms?: number, ...args: unknown[]): unknown => {
      if (typeof fn !== "function") {
        throw new TypeError("timers take a function, not code as text");
      }
      const t = real(() => {
        if (!repeat) userTimers.delete(t);
        fn(...args);
      }, typeof ms === "number" ? ms : 0);
      userTimers.add(t);
      return t;
    };
  const wrapClear = (real: (t: unknown) => void) => (t: unknown): void => {
    userTimers.delete(t);
    real(t);
  };
  g.setTimeout = wrapTimer(realSetTimeout, false);
  g.setInterval = wrapTimer(realSetInterval, true);
  g.clearTimeout = wrapClear(realClearTimeout);
  g.clearInterval = wrapClear(realClearInterval);

  // ---- messaging ---------------------------------------------------------
  const send = (msg: SandboxMessage): void => {
    const text = stringify(msg);
    if (
      text.length > config.maxLineBytes ||
      (text.length * 3 >= config.maxLineBytes && encoder.encode(text).length >= config.maxLineBytes)
    ) {
      throw new RangeError(`message of ${text.length} characters is too large for the bridge`);
    }
    post(text);
  };
  const cut = (s: string, max: number): string =>
    s.length <= max ? s : `${s.slice(0, max)}… [${s.length - max} more characters]`;
  const format = (args: unknown[]): string => {
    const parts: string[] = [];
    for (const a of args) {
      if (typeof a === "string") parts.push(a);
      else {
        try {
          parts.push(inspect(a, { depth: 4, colors: false, iterableLimit: 100 }));
        } catch {
          parts.push("[uninspectable value]");
        }
      }
    }
    return parts.join(" ");
  };
  const log = (level: LogLevel, args: unknown[]): void => {
    send({ kind: "log", level, message: cut(format(args), config.maxLogChars) });
  };

  // ---- 3. console --------------------------------------------------------
  const consoleLevels: Record<string, LogLevel> = {
    debug: "debug",
    trace: "debug",
    log: "info",
    info: "info",
    dir: "info",
    dirxml: "info",
    table: "info",
    warn: "warn",
    error: "error",
  };
  const newConsole: Record<string, (...args: unknown[]) => void> = {};
  const noop = () => {};
  for (const name of Object.keys(g.console)) newConsole[name] = noop;
  for (const [name, level] of Object.entries(consoleLevels)) {
    newConsole[name] = (...args: unknown[]) => log(level, args);
  }
  newConsole.assert = (cond?: unknown, ...args: unknown[]) => {
    if (!cond) log("error", ["Assertion failed", ...args]);
  };
  g.console = newConsole;

  // ---- 4. the script -----------------------------------------------------
  /** Error a host call failed with: the host's code and message only. */
  class MoatError extends Error {
    // The host's codes must be ones scripts are told of (types/moat.d.ts).
    code: MoatApiErrorCode;
    constructor(info: ErrorInfo) {
      super(info.message);
      this.name = "MoatError";
      this.code = info.code;
    }
  }

  interface Pending {
    resolve(v: unknown): void;
    reject(e: unknown): void;
  }
  const pending = new Map<number, Pending>();
  let lastId = 0;
  let maxCallsInFlight = 1000;
  let onStopBudgetMs = 3000;

  let started = false;
  let setupCalled = false;
  let ending = false;
  let endSent = false;
  const onStart: (() => unknown)[] = [];
  const onStop: (() => unknown)[] = [];
  let runFn: (() => unknown) | undefined;
  let resolveStopping: () => void = noop;
  const stopping = new Promise<void>((r) => (resolveStopping = r));

  const describe = (err: unknown): { message: string; debug: string } => {
    try {
      if (err instanceof Error) {
        return { message: String(err.message), debug: String(err.stack ?? "") };
      }
      return { message: `non-error thrown: ${format([err])}`, debug: "" };
    } catch {
      return { message: "an unprintable value was thrown", debug: "" };
    }
  };

  const finish = async (state: "ok" | "error", message: string, debug: string) => {
    if (ending) return;
    ending = true;
    resolveStopping();
    // Calls still in flight will never be answered to the script: tell the
    // host so that it drops them (a `wait` holds a timer there).
    for (const id of [...pending.keys()]) {
      pending.delete(id);
      try {
        send({ kind: "cancel", id });
      } catch { /* best effort */ }
    }
    for (const t of userTimers) {
      realClearTimeout(t);
      realClearInterval(t);
    }
    userTimers.clear();
    // Let code waiting on `moat.stopping` run up to its next await first.
    await new Promise<void>((r) => realSetTimeout(r, 0));
    const stops = async () => {
      for (let i = onStop.length - 1; i >= 0; i--) {
        try {
          await onStop[i]!();
        } catch (err) {
          try {
            log("error", [`on_stop function failed: ${describe(err).message}`]);
          } catch { /* best effort */ }
        }
      }
    };
    let timer: unknown;
    const budget = new Promise<boolean>((r) => {
      timer = realSetTimeout(() => r(false), onStopBudgetMs);
    });
    const done = await Promise.race([stops().then(() => true), budget]);
    realClearTimeout(timer);
    if (!done) {
      try {
        log("warn", [`on_stop functions did not finish within ${onStopBudgetMs} ms`]);
      } catch { /* best effort */ }
    }
    endSent = true;
    send({
      kind: "ended",
      state,
      message: cut(message, config.maxEndTextChars),
      debug: cut(debug, config.maxEndTextChars),
    });
  };
  const fail = (err: unknown): void => {
    const { message, debug } = describe(err);
    void finish("error", message, debug);
  };
  /** Ends the script with `message` and throws it at the caller too. */
  const misuse = (message: string): never => {
    const err = new Error(message);
    fail(err);
    throw err;
  };
  const requireSetup = (what: string): void => {
    if (!setupCalled) misuse(`moat.${what} called before moat.setup()`);
  };
  const requireFunction = (what: string, fn: unknown): void => {
    if (typeof fn !== "function") misuse(`moat.${what} needs a function, got ${typeof fn}`);
  };

  /** Send a call; returns its id and a promise of the answer. */
  const call = <M extends MethodName>(
    method: M,
    args: Methods[M]["args"],
  ): { id: number; result: Promise<Methods[M]["result"]> } => {
    if (pending.size >= maxCallsInFlight) {
      throw new RangeError(`too many calls in flight (limit ${maxCallsInFlight})`);
    }
    const id = ++lastId;
    const result = new Promise<Methods[M]["result"]>((resolve, reject) => {
      pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
    });
    try {
      send({ kind: "call", id, method, args } as SandboxMessage);
    } catch (err) {
      pending.delete(id);
      throw err;
    }
    return { id, result };
  };
  const timeArgs = (spec: unknown, options: unknown): [TimeSpec, TimeOptions] => {
    // `moat.wait({ now })`: a base time as the sole argument.
    if (
      spec !== null && typeof spec === "object" && !Array.isArray(spec) && options === undefined
    ) {
      return [[], spec as TimeOptions];
    }
    return [spec as TimeSpec, (options ?? {}) as TimeOptions];
  };

  const loggerOf = (level: LogLevel) => (...args: unknown[]): void => {
    requireSetup(`logger.${level}()`);
    log(level, args);
  };

  // ---- 5. the MoaT tree: data, tree nodes, monitors --------------------
  // Every value the script can read synchronously, by root-relative key,
  // kept current by the host's `data` and `tree` events.
  const cache = new Map<string, Json>();
  let dataValues = new Map<string, { value: Json; type: string | null }>();
  let dataRefs = new Map<string, string | null>();
  interface MoatNode {
    readonly path: string;
    readonly value: Json | undefined;
    get(name: string): Json | MoatNode | undefined;
    keys(): string[];
  }
  const nodes = new Map<string, MoatNode>();
  const nodeSet = new WeakSet<object>();
  const childrenOf = (path: string): string[] => {
    const names = new Set<string>();
    const pre = path + "/";
    for (const k of cache.keys()) {
      if (k.startsWith(pre)) names.add(k.slice(pre.length).split("/")[0]!);
    }
    return [...names].sort();
  };
  const exists = (path: string): boolean => {
    if (cache.has(path)) return true;
    const pre = path + "/";
    for (const k of cache.keys()) if (k.startsWith(pre)) return true;
    return false;
  };
  const nodeOf = (path: string): MoatNode => {
    let n = nodes.get(path);
    if (n) return n;
    n = Object.freeze({
      path,
      get value(): Json | undefined {
        return cache.get(path);
      },
      get(name: string): Json | MoatNode | undefined {
        if (typeof name !== "string" || name === "") return undefined;
        const key = `${path}/${name}`;
        const pre = key + "/";
        for (const k of cache.keys()) if (k.startsWith(pre)) return nodeOf(key);
        return cache.get(key);
      },
      keys(): string[] {
        return childrenOf(path);
      },
      toString(): string {
        return `[moat node ${path}]`;
      },
    });
    nodes.set(path, n);
    nodeSet.add(n);
    return n;
  };
  const loadSnapshot = (snap: NodeSnapshot): void => {
    for (const k of [...cache.keys()]) {
      if (k === snap.path || k.startsWith(snap.path + "/")) cache.delete(k);
    }
    for (const [rel, v] of Object.entries(snap.entries)) {
      cache.set(rel === "" ? snap.path : `${snap.path}/${rel}`, v);
    }
  };
  const applyData = (ev: DataEvent): void => {
    const refs = new Map<string, string | null>();
    for (const [key, snap] of Object.entries(ev.refs)) {
      if (snap) loadSnapshot(snap);
      refs.set(key, snap ? snap.path : null);
    }
    dataValues = new Map(Object.entries(ev.values));
    dataRefs = refs;
  };
  /** What a monitor's function gets (types/moat.d.ts `MoatChange`). */
  interface Change {
    readonly node: MoatNode;
    readonly is_new: boolean | null;
    readonly added: string[];
    readonly deleted: string[];
  }
  interface Monitor {
    path: string;
    fn: (change: Change) => unknown;
    children: string[];
  }
  const monitors: Monitor[] = [];
  const deliver = (m: Monitor, isNew: boolean | null, added: string[], deleted: string[]) => {
    try {
      const r = m.fn(Object.freeze({ node: nodeOf(m.path), is_new: isNew, added, deleted }));
      if (r && typeof (r as Promise<unknown>).then === "function") {
        (r as Promise<unknown>).then(undefined, fail);
      }
    } catch (err) {
      fail(err);
    }
  };
  const applyTree = (ev: TreeEvent): void => {
    const touched = new Set<string>();
    for (const c of ev.changes) {
      if (c.value === null) cache.delete(c.key);
      else cache.set(c.key, c.value);
      touched.add(c.key);
    }
    for (const m of [...monitors]) {
      let hit = false;
      for (const k of touched) {
        if (k === m.path || k.startsWith(m.path + "/")) {
          hit = true;
          break;
        }
      }
      if (!hit || ending) continue;
      const now = childrenOf(m.path);
      const before = new Set(m.children);
      const after = new Set(now);
      m.children = now;
      deliver(
        m,
        exists(m.path) ? false : null,
        now.filter((c) => !before.has(c)),
        [...before].filter((c) => !after.has(c)),
      );
    }
  };
  const checkSegments = (segments: unknown[]): string => {
    // Bad arguments throw at the call site (catchable), unlike lifecycle misuse.
    if (segments.length === 0) {
      throw new TypeError("moat.tree.lookup() needs at least one path segment");
    }
    const parts: string[] = [];
    for (const seg of segments) {
      if (typeof seg !== "string" && typeof seg !== "number") {
        throw new TypeError(`moat.tree.lookup() takes strings, got ${typeof seg}`);
      }
      for (const p of String(seg).split("/")) {
        if (p === "" || p === "." || p === "..") {
          throw new TypeError(`moat.tree.lookup(): bad path segment ${stringify(String(seg))}`);
        }
        parts.push(p);
      }
    }
    return parts.join("/");
  };

  // ---- 6. RPC and alerts -------------------------------------------------
  /** Only JSON crosses the bridge: undefined becomes null; a cycle is a TypeError. */
  const toJson = (value: unknown, what: string): Json => {
    if (value === undefined) return null;
    try {
      return parse(stringify(value)) as Json;
    } catch {
      throw new TypeError(`${what}: the value cannot be sent as JSON`);
    }
  };
  const rpcHandlers = new Map<number, (args: unknown) => unknown>();
  const alertHandlers = new Map<number, (topic: string, data: unknown) => unknown>();
  // Deliveries that arrive before the registration's id is known here.
  const early = new Map<number, (() => void)[]>();
  const register = <F>(id: number, map: Map<number, F>, fn: F) => {
    map.set(id, fn);
    for (const run of early.get(id) ?? []) run();
    early.delete(id);
  };
  const later = (id: number, run: () => void) => {
    const list = early.get(id) ?? [];
    if (list.length < 1000) list.push(run);
    early.set(id, list);
  };
  const onRpc = (ev: RpcEvent): void => {
    const handler = rpcHandlers.get(ev.id);
    if (!handler) return later(ev.id, () => onRpc(ev));
    const reply = (ok: boolean, value: Json) => {
      if (ending) return;
      try {
        call("rpc_reply", [ev.call, ok, value]).result.then(undefined, () => {});
      } catch (err) {
        // The reply did not fit the bridge (or too many calls are in
        // flight): the caller still gets one answer, a short error.
        const why = String(describe(err).message).slice(0, 500);
        try {
          call("rpc_reply", [ev.call, false, {
            message: `the reply could not be sent: ${why}`,
            class: "RangeError",
          }]).result.then(undefined, () => {});
        } catch {
          // The host's handler timeout answers the caller.
        }
      }
    };
    Promise.resolve().then(() => handler(ev.args)).then(
      (v) => {
        try {
          reply(true, toJson(v, `the result of RPC ${ev.name}`));
        } catch (err) {
          reply(false, { message: describe(err).message, class: "TypeError" });
        }
      },
      (err) => {
        const { message } = describe(err);
        const cls = err instanceof Error ? String(err.name) : "Error";
        reply(false, { message, class: cls });
      },
    );
  };
  const onAlert = (ev: AlertEvent): void => {
    const handler = alertHandlers.get(ev.id);
    if (!handler) return later(ev.id, () => onAlert(ev));
    if (ending) return;
    try {
      const r = handler(ev.topic, ev.data);
      if (r && typeof (r as Promise<unknown>).then === "function") {
        (r as Promise<unknown>).then(undefined, fail);
      }
    } catch (err) {
      fail(err);
    }
  };

  // ---- 7. moat.load ------------------------------------------------------
  const MAX_LOAD_CALLS = 100;
  let loadCalls = 0;
  let scriptName = "";
  const loaded = new Map<string, Promise<Record<string, unknown>>>();
  // deno-lint-ignore no-explicit-any
  let libraryMoat: (chain: string[]) => any = () => moat;
  const loadWith = (name: unknown, chain: string[]): Promise<Record<string, unknown>> => {
    requireSetup("load()");
    if (typeof name !== "string" || name === "") {
      return Promise.reject(new TypeError("moat.load() needs a script name"));
    }
    if (++loadCalls > MAX_LOAD_CALLS) {
      return Promise.reject(
        new RangeError(
          `moat.load() called more than ${MAX_LOAD_CALLS} times in one run; load each library once`,
        ),
      );
    }
    if (chain.includes(name)) {
      return Promise.reject(new Error(`load cycle: ${[...chain, name].join(" → ")}`));
    }
    const known = loaded.get(name);
    if (known) return known;
    const p = (async () => {
      const { script, code } = await call("load", [name]).result;
      const lib = libraryMoat([...chain, name]);
      const body = `${code}\n//# sourceURL=moat-script:${encodeURIComponent(script)}`;
      await new AsyncFunction("moat", body).call(undefined, lib);
      return lib.exports as Record<string, unknown>;
    })();
    loaded.set(name, p);
    return p;
  };

  const moat = Object.freeze(
    {
      setup(options?: unknown): void {
        if (setupCalled) misuse("moat.setup() called more than once");
        if (options !== undefined && (options === null || typeof options !== "object")) {
          misuse("moat.setup() takes an options object");
        }
        setupCalled = true;
      },
      on_start<F extends () => unknown>(fn: F): F {
        requireSetup("on_start()");
        requireFunction("on_start()", fn);
        onStart.push(fn);
        return fn;
      },
      on_stop<F extends () => unknown>(fn: F): F {
        requireSetup("on_stop()");
        requireFunction("on_stop()", fn);
        onStop.push(fn);
        return fn;
      },
      run<F extends () => unknown>(fn: F): F {
        requireSetup("run()");
        requireFunction("run()", fn);
        if (runFn !== undefined) misuse("moat.run() called more than once");
        runFn = fn;
        return fn;
      },
      end(...args: unknown[]): void {
        requireSetup("end()");
        if (args.length > 0) misuse("moat.end() takes no parameters");
        void finish("ok", "script called moat.end()", "");
      },
      get stopping(): Promise<void> {
        return stopping;
      },
      logger: Object.freeze({
        debug: loggerOf("debug"),
        info: loggerOf("info"),
        warn: loggerOf("warn"),
        error: loggerOf("error"),
      }),
      time_at(spec: TimeSpec | TimeOptions, options?: TimeOptions): Promise<number> {
        requireSetup("time_at()");
        return call("time_at", timeArgs(spec, options)).result;
      },
      wait(spec: TimeSpec | TimeOptions, options?: TimeOptions): Promise<number> {
        requireSetup("wait()");
        return call("wait", timeArgs(spec, options)).result;
      },
      run_at(
        spec: TimeSpec | TimeOptions,
        fn: () => unknown,
        options?: TimeOptions,
      ): { cancel(): void } {
        requireSetup("run_at()");
        requireFunction("run_at()", fn);
        const { id, result } = call("wait", timeArgs(spec, options));
        let cancelled = false;
        result.then(() => {
          if (!cancelled && !ending) return fn();
        }).then(undefined, (err) => {
          if (!cancelled) fail(err);
        });
        return Object.freeze({
          cancel(): void {
            if (cancelled) return;
            cancelled = true;
            if (pending.delete(id)) {
              try {
                send({ kind: "cancel", id });
              } catch { /* best effort */ }
            }
          },
        });
      },
      data: Object.freeze({
        // The type argument is only a cast for the script's type checker.
        get<T>(key: string): T | undefined {
          requireSetup("data.get()");
          const v = dataValues.get(key);
          if (v === undefined) return undefined;
          if (v.type === "str/ref") {
            const path = dataRefs.get(key);
            return path ? nodeOf(path) as T : undefined;
          }
          return v.value as T;
        },
        keys(): string[] {
          requireSetup("data.keys()");
          return [...dataValues.keys()].sort();
        },
        async set(key: string, value: unknown): Promise<void> {
          requireSetup("data.set()");
          if (typeof key !== "string") throw new TypeError("moat.data.set() needs a key name");
          // Only JSON can travel; undefined, functions, cycles and the like cannot.
          let json: Json;
          try {
            json = parse(stringify(value)) as Json;
          } catch {
            throw new TypeError(`moat.data.set(${stringify(key)}): the value is not JSON`);
          }
          if (json === undefined) throw new TypeError(`moat.data.set(${stringify(key)}): no value`);
          await call("data_set", [key, json]).result;
          const old = dataValues.get(key);
          dataValues.set(key, { value: json, type: old?.type ?? null });
        },
      }),
      tree: Object.freeze({
        async lookup(...segments: unknown[]): Promise<MoatNode | undefined> {
          requireSetup("tree.lookup()");
          const path = checkSegments(segments);
          const snap = await call("tree_lookup", [path]).result;
          if (snap === null) return undefined;
          loadSnapshot(snap);
          return nodeOf(snap.path);
        },
      }),
      monitor(node: unknown): <F extends (change: Change) => unknown>(fn: F) => F {
        requireSetup("monitor()");
        if (node === null || typeof node !== "object" || !nodeSet.has(node)) {
          throw new TypeError(
            "moat.monitor() needs a node from moat.tree.lookup() or a str/ref data value",
          );
        }
        const path = (node as MoatNode).path;
        return (fn) => {
          requireFunction("monitor()(fn)", fn);
          const m: Monitor = { path, fn, children: childrenOf(path) };
          call("tree_watch", [path]).result.then(() => {
            if (ending) return;
            monitors.push(m);
            deliver(m, true, [], []);
          }, fail);
          return fn;
        };
      },
      set_error(tag: string, message: string): Promise<void> {
        requireSetup("set_error()");
        if (typeof tag !== "string" || tag === "") {
          return Promise.reject(new TypeError("moat.set_error() needs a non-empty tag"));
        }
        return call("set_error", [tag, String(message ?? "")]).result.then(() => {});
      },
      clear_error(tag: string): Promise<void> {
        requireSetup("clear_error()");
        if (typeof tag !== "string" || tag === "") {
          return Promise.reject(new TypeError("moat.clear_error() needs a non-empty tag"));
        }
        return call("clear_error", [tag]).result.then(() => {});
      },
      // The type argument is only a cast for the script's type checker.
      load<T extends object = Record<string, unknown>>(name: string): Promise<T> {
        return loadWith(name, [scriptName]) as Promise<T>;
      },
      /** What this script offers when another one loads it. */
      exports: {} as Record<string, unknown>,
      rpc(name: string): <F extends (args: unknown) => unknown>(handler: F) => F {
        requireSetup("rpc()");
        if (typeof name !== "string" || name === "") throw new TypeError("moat.rpc() needs a name");
        return (handler) => {
          requireFunction("rpc()(handler)", handler);
          call("rpc_serve", [name]).result.then((id) => register(id, rpcHandlers, handler), fail);
          return handler;
        };
      },
      on_alert(
        pattern: string,
      ): <F extends (topic: string, data: unknown) => unknown>(handler: F) => F {
        requireSetup("on_alert()");
        if (typeof pattern !== "string" || pattern === "") {
          throw new TypeError("moat.on_alert() needs a topic pattern");
        }
        return (handler) => {
          requireFunction("on_alert()(handler)", handler);
          call("alert_listen", [pattern]).result.then(
            (id) => register(id, alertHandlers, handler),
            fail,
          );
          return handler;
        };
      },
      call(name: string, args?: unknown, options?: { timeout?: number }): Promise<unknown> {
        requireSetup("call()");
        const timeout = options?.timeout ?? 15;
        if (typeof timeout !== "number" || !(timeout > 0)) {
          return Promise.reject(
            new TypeError("moat.call(): timeout must be a positive number of seconds"),
          );
        }
        let json: Json;
        try {
          json = toJson(args, `moat.call(${stringify(String(name))})`);
        } catch (err) {
          return Promise.reject(err);
        }
        return call("call", [String(name), json, timeout]).result;
      },
      alert(topic: string, data?: unknown): Promise<void> {
        requireSetup("alert()");
        let json: Json;
        try {
          json = toJson(data, `moat.alert(${stringify(String(topic))})`);
        } catch (err) {
          return Promise.reject(err);
        }
        return call("alert", [String(topic), json]).result.then(() => {});
      },
      debug_obj(value: unknown): void {
        requireSetup("debug_obj()");
        call("debug_obj", [toJson(value, "moat.debug_obj()")]).result.then(undefined, fail);
      },
      // What scripts are promised (types/moat.d.ts) is what they get.
    } satisfies MoatApi,
  );
  // A loaded library gets the same moat, except: `setup` may be called
  // again (with other options), `run` is ignored, `exports` is its own, and
  // its loads continue its chain (for cycle detection).
  libraryMoat = (chain: string[]) => {
    // moat is frozen: copy its members as configurable ones first.
    const descriptors = Object.getOwnPropertyDescriptors(moat) as Record<
      string,
      PropertyDescriptor
    >;
    for (const d of Object.values(descriptors)) d.configurable = true;
    const lib = Object.defineProperties({}, descriptors);
    Object.defineProperties(lib, {
      setup: { value: (_options?: unknown) => {}, enumerable: true },
      run: { value: <F>(fn: F): F => fn, enumerable: true },
      exports: { value: {}, enumerable: true },
      load: {
        value: (name: string) => loadWith(name, chain),
        enumerable: true,
      },
    });
    return Object.freeze(lib);
  };

  const runScript = async (code: string, script: string) => {
    try {
      // The script is the body of an async function: top-level await works,
      // and nothing goes through the module loader (which would cache it on
      // disk). `sourceURL` names it in stack traces.
      const body = `${code}\n//# sourceURL=moat-script:${encodeURIComponent(script)}`;
      const main = new AsyncFunction("moat", body);
      await main.call(undefined, moat);
      if (ending) return;
      if (!setupCalled) {
        void finish("error", "script did not call moat.setup()", "");
        return;
      }
      // on_start functions may add more; they run too, in order.
      for (let i = 0; i < onStart.length; i++) {
        await onStart[i]!();
        if (ending) return;
      }
      if (runFn === undefined) {
        await stopping;
        return;
      }
      await runFn();
      void finish("ok", "run function returned", "");
    } catch (err) {
      fail(err);
    }
  };

  // Any error the script did not catch, wherever it happened, ends it.
  listen("error", (e) => {
    e.preventDefault();
    fail((e as ErrorEvent).error ?? new Error((e as ErrorEvent).message));
  });
  listen("unhandledrejection", (e) => {
    e.preventDefault();
    fail((e as PromiseRejectionEvent).reason);
  });

  /** Deliveries into the script. A malformed one is dropped, never thrown. */
  const onEvent = (e: ScriptEvent): void => {
    try {
      if (e.event === "data") applyData(e.data);
      else if (e.event === "tree") applyTree(e.data);
      else if (e.event === "rpc") onRpc(e.data);
      else if (e.event === "alert") onAlert(e.data);
    } catch {
      // The host sends well-formed events; nothing a script did can get here.
    }
  };

  listen("message", (e) => {
    let msg: HostMessage;
    try {
      msg = parse((e as MessageEvent).data);
    } catch {
      return;
    }
    switch (msg.kind) {
      case "ping":
        // The heartbeat: answered from this loop, so a Worker that spins or
        // blocks goes quiet and the host kills its process.
        send({ kind: "pong", id: msg.id });
        return;
      case "start": {
        if (started) return;
        started = true;
        maxCallsInFlight = msg.options.maxCallsInFlight;
        onStopBudgetMs = msg.options.onStopBudgetMs;
        g.moat = moat;
        scriptName = msg.script;
        for (const e of msg.initial ?? []) onEvent(e);
        void runScript(msg.code, msg.script);
        return;
      }
      case "reply": {
        const p = pending.get(msg.id);
        if (p === undefined) return;
        pending.delete(msg.id);
        if (msg.ok) p.resolve(msg.value);
        else p.reject(new MoatError(msg.error));
        return;
      }
      case "stop": {
        if (!started) {
          if (!endSent) {
            endSent = true;
            ending = true;
            send({ kind: "ended", state: "ok", message: "stopped before start", debug: "" });
          }
          return;
        }
        void finish("ok", `stopped: ${msg.reason}`, "");
        return;
      }
      case "event":
        onEvent(msg);
        return;
    }
  });

  send({ kind: "ready", version: config.version });
}
