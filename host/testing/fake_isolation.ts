/**
 * An `Isolation` that runs nothing: each "script" is a {@linkcode FakeScript}
 * the test drives, so that the run protocol (leases, restarts, retries,
 * take-overs, stop order) can be tested on `MemoryStore` and `VirtualClock`
 * in milliseconds, without sandbox processes. A fake script does what the
 * real sandbox does at its edges: it ends once, `stop` ends it `ok` (as a
 * script with no `on_stop` trouble does) and `kill` ends it `fail`; it
 * records the events delivered to it and can call the host's methods.
 *
 * @example
 * ```ts
 * import { FakeIsolation } from "./fake_isolation.ts";
 *
 * const iso = new FakeIsolation();
 * const handle = await iso.start({
 *   task: "h/t", script: "s", code: "", methods: {} as never, onLog: () => {},
 * });
 * const script = await iso.next();
 * script.end("ok", "done");
 * if ((await handle.ended).message !== "done") throw new Error("not ended");
 * await iso.close();
 * ```
 *
 * @module
 */

import type {
  Isolation,
  MethodHandler,
  ScriptEnd,
  ScriptHandle,
  StartOptions,
} from "../bridge/sandbox.ts";
import type { MethodName, Methods, ScriptEvent } from "../../sandbox/protocol.ts";

/** What happened to the fake scripts, in order: `start`, `stop`, `kill`, `end` with the task. */
export interface FakeEvent {
  /** What happened. */
  what: "start" | "stop" | "kill" | "end";
  /** The task's path. */
  task: string;
  /** The reason given to `stop`/`kill`, or the end's message. */
  detail: string;
}

/** One started script, driven by the test. */
export class FakeScript implements ScriptHandle {
  /** What the host started it with (code, limits, initial events, methods). */
  readonly options: StartOptions;
  /** A made-up process id. */
  readonly pid: number;
  /** Every event delivered into the script, `initial` ones first. */
  readonly events: ScriptEvent[];
  /** Resolves once the script has ended. Never rejects. */
  readonly ended: Promise<ScriptEnd>;
  #end: ScriptEnd | undefined;
  #resolve!: (end: ScriptEnd) => void;
  #log: FakeEvent[];
  #calls = new AbortController();

  /** A script started with `options`, reporting to `log`. */
  constructor(options: StartOptions, pid: number, log: FakeEvent[]) {
    this.options = options;
    this.pid = pid;
    this.events = [...(options.initial ?? [])];
    this.#log = log;
    this.ended = new Promise((r) => this.#resolve = r);
  }

  /** The task it runs. */
  get task(): string {
    return this.options.task;
  }

  /** How it ended, once it has. */
  get outcome(): ScriptEnd | undefined {
    return this.#end;
  }

  /** End by itself, as the script would (`moat.end()`: ok; a throw: error). */
  end(state: "ok" | "error", message = "", debug = ""): void {
    this.#finish({ state, message, debug }, "end", message);
  }

  /** Call a host method as the script's `moat` would (arguments as validated). */
  call<M extends MethodName>(method: M, args: Methods[M]["args"]): Promise<Methods[M]["result"]> {
    const handler: MethodHandler<M> = this.options.methods[method];
    return handler(args, { signal: this.#calls.signal, task: this.task });
  }

  /** Ask it to end: it ends `ok` with `stopped: <reason>`, as a script without `on_stop` does. */
  stop(reason: string): Promise<ScriptEnd> {
    this.#finish({ state: "ok", message: `stopped: ${reason}`, debug: "" }, "stop", reason);
    return this.ended;
  }

  /** End it now: `fail` with `reason`. */
  kill(reason: string): Promise<ScriptEnd> {
    this.#finish({ state: "fail", message: reason, debug: "" }, "kill", reason);
    return this.ended;
  }

  /** Deliver an event (recorded in `events`). */
  sendEvent(event: ScriptEvent): void {
    if (this.#end === undefined) this.events.push(event);
  }

  #finish(end: ScriptEnd, what: FakeEvent["what"], detail: string): void {
    if (this.#end !== undefined) return;
    this.#end = end;
    this.#calls.abort();
    this.#log.push({ what, task: this.task, detail });
    this.#resolve(end);
  }
}

/** The fake isolation; see the module doc. */
export class FakeIsolation implements Isolation {
  /** Every script started, in order. */
  readonly started: FakeScript[] = [];
  /** Starts, stops, kills and ends, in order. */
  readonly log: FakeEvent[] = [];
  /** Called with each script as it starts (e.g. to end it at once). */
  onStart: ((script: FakeScript) => void) | undefined;
  /** When set, `start` rejects with it (the sandbox failed to start). */
  failStart: Error | undefined;
  #taken = 0;
  #waiters: (() => void)[] = [];
  #pid = 1000;
  #closed = false;

  /** Start a fake script; it runs until it ends, is stopped or killed. */
  start(options: StartOptions): Promise<ScriptHandle> {
    if (this.#closed) return Promise.reject(new Error("the fake isolation is closed"));
    if (this.failStart) return Promise.reject(this.failStart);
    const script = new FakeScript(options, this.#pid++, this.log);
    this.started.push(script);
    this.log.push({ what: "start", task: options.task, detail: options.script });
    for (const w of this.#waiters.splice(0)) w();
    this.onStart?.(script);
    return Promise.resolve(script);
  }

  /**
   * The next script started that `next` has not returned yet; waits for it
   * at most `ms` of real time (the host's own work, not the virtual clock).
   */
  async next(ms = 5000): Promise<FakeScript> {
    const deadline = Date.now() + ms;
    while (this.#taken >= this.started.length) {
      if (Date.now() > deadline) throw new Error(`no script started within ${ms} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, Math.max(1, deadline - Date.now()));
        function done() {
          clearTimeout(timer);
          resolve();
        }
        this.#waiters.push(done);
      });
    }
    return this.started[this.#taken++]!;
  }

  /** Kill every script still running. Safe to call twice. */
  async close(): Promise<void> {
    this.#closed = true;
    await Promise.all(this.started.map((s) => s.kill("isolation closed")));
  }
}
