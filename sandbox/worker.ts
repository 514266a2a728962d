/**
 * The Worker bootstrap: everything that runs inside the script's Worker.
 *
 * The sandbox process has no read permission, so it cannot start a Worker
 * from this file. Instead it builds the Worker from a `blob:` URL whose text
 * is {@linkcode workerSource}: the source of {@linkcode workerMain} and of
 * the functions it calls from `_worker_*.ts` modules (already transpiled to
 * JavaScript by Deno when the sandbox process loaded them), followed by a
 * call with its settings. Hence each of these functions must be
 * self-contained: it may use globals, its parameters and the other
 * functions copied (listed in `PARTS`), nothing else from its module
 * (type-only imports are erased and fine).
 *
 * The parts live in modules of their own, each a self-contained function
 * copied into the Worker the same way: `_worker_lockdown.ts` (capture and
 * neutralise), `_worker_bridge.ts` (messages, calls, log lines, `console`),
 * `_worker_timers.ts` (timers on real time, or on the virtual clock of
 * `moat script try`), `_worker_tree.ts` (the tree and data the script reads,
 * monitors), `_worker_messages.ts` (RPC requests and alerts), `_thread_client.ts`
 * (`moat.thread`). This module wires them, builds `moat` and runs the lifecycle.
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
 * 4. on `start`, builds `moat` and runs the script's lifecycle; with
 *    `options.virtualTime` (only `moat script try`) it first puts the
 *    script's clock and timers on virtual time.
 *
 * Dynamic `import()` cannot be removed from JavaScript; the sandbox process
 * runs with `--no-npm --no-remote`, no read permission and an import map
 * that sends every `node:` built-in to a module that throws, so an import
 * finds nothing to load. (The host's code check rejects `import` anyway.)
 *
 * @module
 */

import type {
  HostMessage,
  Json,
  LogLevel,
  ScriptEvent,
  ThreadDoneMessage,
  TimeOptions,
  TimerFiring,
  TimeSpec,
} from "./protocol.ts";
import type { MoatApi } from "./moat_api.ts";
import { captureAndLockDown } from "./_worker_lockdown.ts";
import { bridgeClient, type WorkerConfig } from "./_worker_bridge.ts";
import {
  realScriptTimers,
  type ScriptTimers,
  virtualScriptTimers,
  type VirtualTimers,
} from "./_worker_timers.ts";
import { type TreeChange, type TreeNode, treeView } from "./_worker_tree.ts";
import { scriptMessages } from "./_worker_messages.ts";
import { threadClient } from "./_thread_client.ts";

export type { WorkerConfig } from "./_worker_bridge.ts";

/** The functions the Worker's source is made of, `workerMain` last. */
const PARTS = [
  captureAndLockDown,
  bridgeClient,
  realScriptTimers,
  virtualScriptTimers,
  treeView,
  scriptMessages,
  threadClient,
  workerMain,
];

/** The JavaScript text of the Worker: its functions and a call to `workerMain`. */
export function workerSource(config: WorkerConfig): string {
  const text = PARTS.map((f) => f.toString()).join("\n");
  return `"use strict";\n${text}\nworkerMain(${JSON.stringify(config)});\n`;
}

/**
 * The Worker's main. Runs inside the Worker only; see the module doc for why
 * it must be self-contained.
 */
export function workerMain(config: WorkerConfig): void {
  // deno-lint-ignore no-explicit-any
  const g = globalThis as any;

  // ---- 1.–2. capture, then neutralise ----------------------------------
  const c = captureAndLockDown(g);
  const { listen, stringify, parse, AsyncFunction } = c;
  const realSetTimeout = c.timers.setTimeout;
  const realClearTimeout = c.timers.clearTimeout;

  // Timers: functions only (a string would be evaluated), and remembered so
  // that they die when the script ends. Under `moat script try` they are
  // replaced by virtual ones at `start`.
  let timers: ScriptTimers = realScriptTimers(c.timers);
  const installTimers = (t: ScriptTimers): void => {
    timers = t;
    g.setTimeout = t.setTimeout;
    g.setInterval = t.setInterval;
    g.clearTimeout = t.clearTimeout;
    g.clearInterval = t.clearInterval;
  };
  installTimers(timers);

  // ---- messaging and 3. console ----------------------------------------
  const bridge = bridgeClient(c, config);
  const { send, call, pending, log, cut, describe } = bridge;
  const noop = () => {};
  g.console = bridge.console(g.console);

  // ---- 4. the script -----------------------------------------------------
  // Only under `moat script try` (set at `start`): the clock and timers on virtual time.
  let virtualClock: VirtualTimers | undefined;
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
    timers.clearAll();
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
    // The timers it fired last are counted in the trace of `moat script try`.
    virtualClock?.flush();
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

  // The one reading of the argument forms of time_at, wait and run_at (the
  // host checks the result again): a spec string or array, or the spec as
  // two or more separate arguments ("12", "hr", 10, "min"), each optionally
  // followed by the options; or the options alone.
  const timeArgs = (args: unknown[]): [TimeSpec, TimeOptions] => {
    if (args.length === 0) return [] as unknown as [TimeSpec, TimeOptions];
    const last = args[args.length - 1];
    const withOptions = last !== null && typeof last === "object" && !Array.isArray(last);
    const spec = withOptions ? args.slice(0, -1) : args;
    const options = (withOptions ? last : {}) as TimeOptions;
    if (spec.length === 0) return [[], options];
    const token = (v: unknown) => typeof v === "string" || typeof v === "number";
    if (spec.length > 1 && token(spec[0])) return [spec as TimeSpec, options];
    if (spec.length > 1) return [...args] as unknown as [TimeSpec, TimeOptions];
    return [spec[0] as TimeSpec, options];
  };
  // run_at's function comes after the spec, before the options if any.
  const runAtArgs = (args: unknown[]): [unknown, unknown[]] => {
    const at = typeof args[args.length - 1] === "function" ? args.length - 1 : args.length - 2;
    return [args[at], args.filter((_, i) => i !== at)];
  };

  // ---- 5. the MoaT tree: data, tree nodes, monitors (_worker_tree.ts) ---
  const tree = treeView(fail, () => ending);

  const loggerOf = (level: LogLevel) => (...args: unknown[]): void => {
    requireSetup(`logger.${level}()`);
    log(level, args);
  };

  // ---- 6. RPC and alerts (_worker_messages.ts) ---------------------------
  const messages = scriptMessages(bridge, fail, () => ending);
  const toJson = messages.toJson;

  // ---- moat.debug_obj: the registered value, sent again when asked ------
  let debugObject: { value: unknown } | undefined;
  /** A `debug` event: send the debug object as it is now, or why it cannot be shown. */
  const refreshDebug = (): void => {
    if (debugObject === undefined || ending) return;
    const note = (why: string): void => {
      try {
        const text = `[the debug object cannot be shown: ${cut(why, 500)}]`;
        call("debug_obj", [text]).result.then(undefined, () => {});
      } catch { /* too many calls in flight: the host shows the last value */ }
    };
    let json: Json;
    try {
      json = toJson(debugObject.value, "moat.debug_obj()");
      // Asking must never end the script: a value that grew too large
      // (for the bridge or the value_size quota) is shown as a note.
      call("debug_obj", [json]).result.then(undefined, (err) => note(describe(err).message));
    } catch (err) {
      note(describe(err).message);
    }
  };

  // ---- 7. moat.load ------------------------------------------------------
  const MAX_LOAD_CALLS = 100;
  let loadCalls = 0;
  let scriptName = "";
  // The code of the script and of each library it loaded: what moat.thread
  // may run. A string, extended with `+=`: no method the script can replace.
  let scriptCode = "";

  // ---- 8. moat.thread (_thread_client.ts) -------------------------------
  const threads = threadClient(c, config, () => scriptCode, () => scriptName, bridge.error);
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
      scriptCode += `${code}\n`;
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
      time_at(...args: unknown[]): Promise<number> {
        requireSetup("time_at()");
        return call("time_at", timeArgs(args)).result;
      },
      wait(...args: unknown[]): Promise<number> {
        requireSetup("wait()");
        return call("wait", timeArgs(args)).result;
      },
      run_at(...args: unknown[]): { cancel(): void } {
        requireSetup("run_at()");
        const [fn, spec] = runAtArgs(args);
        requireFunction("run_at()", fn);
        const [timeSpec, options] = timeArgs(spec);
        const { id, result } = call("run_at", [timeSpec, options]);
        let cancelled = false;
        result.then(async ({ due, late }) => {
          if (cancelled || ending) return;
          await (fn as (f: { due: number; late: boolean }) => unknown)({ due, late });
          // Only now is the firing done: the host records it (docs/time.md, "Catch-up").
          if (typeof options?.id === "string") {
            await call("fired", [options.id, due]).result.catch((e) => {
              if (!ending) throw e;
            });
          }
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
          return tree.dataGet(key) as T | undefined;
        },
        keys(): string[] {
          requireSetup("data.keys()");
          return tree.dataKeys();
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
          tree.dataWritten(key, json);
        },
      }),
      tree: Object.freeze({
        async lookup(...segments: unknown[]): Promise<TreeNode | undefined> {
          requireSetup("tree.lookup()");
          const path = tree.checkSegments(segments);
          const snap = await call("tree_lookup", [path]).result;
          if (snap === null) return undefined;
          tree.loadSnapshot(snap);
          return tree.nodeOf(snap.path);
        },
      }),
      monitor(node: unknown): <F extends (change: TreeChange) => unknown>(fn: F) => F {
        requireSetup("monitor()");
        if (!tree.isNode(node)) {
          throw new TypeError(
            "moat.monitor() needs a node from moat.tree.lookup() or a str/ref data value",
          );
        }
        const path = node.path;
        return (fn) => {
          requireFunction("monitor()(fn)", fn);
          const children = tree.childrenOf(path);
          call("tree_watch", [path]).result.then(() => {
            if (ending) return;
            tree.monitor(path, fn, children);
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
          call("rpc_serve", [name]).result.then((id) => messages.serve(id, handler), fail);
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
            (id) => messages.listen(id, handler),
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
      thread<A extends unknown[], R>(
        fn: (...args: A) => R,
        ...args: A
      ): Promise<Awaited<R>> {
        requireSetup("thread()");
        return threads.run(fn, args) as Promise<Awaited<R>>;
      },
      debug_obj(value: unknown): void {
        requireSetup("debug_obj()");
        call("debug_obj", [toJson(value, "moat.debug_obj()")]).result.then(undefined, fail);
        // Kept, not copied: `moat debug` asks for it as it is then.
        debugObject = { value };
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
      scriptCode += `${code}\n`;
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
      if (e.event === "data") tree.applyData(e.data);
      else if (e.event === "tree") tree.applyTree(e.data);
      else if (e.event === "rpc") messages.onRpc(e.data);
      else if (e.event === "alert") messages.onAlert(e.data);
      else if (e.event === "debug") refreshDebug();
    } catch {
      // The host sends well-formed events; nothing a script did can get here.
    }
  };

  // ---- virtual time (only `moat script try`) ---------------------------
  /** `a` and `b` with the counts of equal kinds and delays added up (at most 100 entries). */
  const mergeFirings = (a: TimerFiring[], b: TimerFiring[]): TimerFiring[] => {
    if (a.length === 0) return b;
    const out = a.map((f) => ({ ...f }));
    for (const f of b) {
      const same = out.find((o) => o.repeat === f.repeat && o.delayMs === f.delayMs);
      if (same !== undefined) same.count += f.count;
      else if (out.length < 100) out.push({ ...f });
    }
    return out;
  };
  // Host messages other than `ping` received, for `settled.seen`.
  let seen = 0;

  listen("message", (e) => {
    const data = (e as MessageEvent).data;
    if (typeof data !== "string") {
      // Not from the host: the sandbox process says a thread is done.
      threads.onDone(data as ThreadDoneMessage);
      virtualClock?.poke();
      return;
    }
    let msg: HostMessage;
    try {
      msg = parse(data);
    } catch {
      return;
    }
    if (msg.kind !== "ping") {
      seen++;
      // Whatever this message starts, the script settles again after it.
      virtualClock?.poke();
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
        bridge.setMaxCallsInFlight(msg.options.maxCallsInFlight);
        onStopBudgetMs = msg.options.onStopBudgetMs;
        const vt = msg.options.virtualTime;
        if (vt !== undefined && Number.isFinite(vt.startMs)) {
          // Timers fired while a thread ran, reported once the script rests.
          let held: TimerFiring[] = [];
          virtualClock = virtualScriptTimers(g, vt.startMs, (nextMs, fired) => {
            // A script waiting for a thread is not at rest: the clock waits
            // for the thread as it waits for a call in flight.
            if (threads.busy() && !ending) {
              held = mergeFirings(held, fired);
              return;
            }
            const all = mergeFirings(held, fired);
            held = [];
            // An ending script is not at rest (its `ended` is on the way):
            // it reports the timers it fired, nothing more.
            if (ending && all.length === 0) return;
            try {
              send({ kind: "settled", seen, nextMs, fired: all, ending });
            } catch { /* never too large: at most 100 entries */ }
          }, () => seen + bridge.sentCount() + threads.finished());
          installTimers(virtualClock);
          virtualClock.poke();
        }
        g.moat = moat;
        scriptName = msg.script;
        for (const e of msg.initial ?? []) onEvent(e);
        void runScript(msg.code, msg.script);
        return;
      }
      case "clock":
        virtualClock?.setNow(msg.nowMs);
        return;
      case "reply":
        bridge.answer(
          msg.id,
          msg.ok,
          msg.ok ? msg.value : undefined,
          msg.ok ? undefined : msg.error,
        );
        return;
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
