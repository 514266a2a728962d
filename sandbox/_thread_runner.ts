/**
 * The sandbox process's side of `moat.thread`: starts one Worker per thread
 * (from the thread bootstrap, sandbox/_thread_main.ts, with no
 * permissions), hands it the function and its arguments, relays its log
 * lines to the host and its result to the script's Worker, and ends it.
 *
 * A thread is a Worker of the script's own sandbox process, so its CPU time
 * and memory are the process's: the host's watchdog counts them against the
 * script's `cpu` and `memory` limits, and killing the process (when the
 * script ends, however it ends) kills its threads. `terminate()` is called
 * when a thread is done, but a thread that spins cannot be stopped that way
 * (docs/security.md): the CPU budget stops it, with its script.
 *
 * @module
 */

import type {
  ThreadDoneMessage,
  ThreadResultMessage,
  ThreadRunMessage,
  ThreadStartMessage,
} from "./protocol.ts";

/** What the runner needs from the sandbox process. */
export interface ThreadRunnerOptions {
  /** The thread bootstrap's JavaScript (`threadSource`). */
  source: string;
  /** Most threads at once (the script's Worker queues the rest; this is a backstop). */
  maxThreads: number;
  /** Answer the script's Worker. */
  done(msg: ThreadDoneMessage): void;
  /** A line of JSON text from a thread, to check and relay like the Worker's own (only `log`). */
  line(text: unknown): void;
  /** A warning for the host's log. */
  warn(message: string): void;
  /**
   * Make room in the address space for one more Worker (resolves when the
   * host has raised the data-size rlimit), or (`need` false) say that the
   * threads changed, so that the host sets the limit to fit again.
   */
  room(need: boolean): Promise<void>;
  /** Called right after each thread's Worker is created (a group tells the host whose it is). */
  spawned?(): void;
}

/** The threads of one script. */
export class ThreadRunner {
  #o: ThreadRunnerOptions;
  /** The threads' `blob:` URL, made at the first thread (most scripts start none). */
  #url: string | undefined;
  #threads = new Map<number, Worker>();
  /** Thread Workers start one after the other, each with room made for it. */
  #starting: Promise<void> = Promise.resolve();
  /** Threads waiting in `#starting`. */
  #queued = 0;
  /**
   * A start holds room it asked for until its isolate is up: no other
   * `room(false)` may take that room back meanwhile.
   */
  #startingNow = false;

  constructor(options: ThreadRunnerOptions) {
    this.#o = options;
  }

  /** A message from the script's Worker that is not a JSON line: a thread to start. */
  start(value: unknown): void {
    const m = value as Partial<ThreadStartMessage> | null;
    if (m === null || typeof m !== "object" || m.kind !== "thread_start") {
      this.#o.warn("sandbox refused a message from the script: not a thread request");
      return;
    }
    const { id, source, script, args } = m;
    if (!Number.isSafeInteger(id) || (id as number) < 0 || this.#threads.has(id as number)) {
      this.#o.warn("sandbox refused a thread request: bad id");
      return;
    }
    const refuse = (message: string) =>
      this.#o.done({ kind: "thread_done", id: id as number, ok: false, error: new Error(message) });
    if (typeof source !== "string" || typeof script !== "string" || !Array.isArray(args)) {
      return refuse("moat.thread(): malformed thread request");
    }
    if (this.#threads.size + this.#queued >= this.#o.maxThreads) {
      return refuse(`moat.thread(): more than ${this.#o.maxThreads} threads at once`);
    }
    this.#queued++;
    this.#starting = this.#starting.then(async () => {
      // One start at a time, from asking for room until its isolate is up
      // (or failed): room made for one isolate is never spent by two, on a
      // machine however busy.
      this.#startingNow = true;
      try {
        await this.#o.room(true);
      } catch (e) {
        // The host refused it (the script's manifest): no room was made.
        this.#queued--;
        this.#startingNow = false;
        const message = (e as Error).message;
        this.#o.done({
          kind: "thread_done",
          id: id as number,
          ok: false,
          error: new Error(message),
          moat: { code: "denied", message },
        });
        return;
      }
      this.#queued--;
      await this.#spawn(id as number, { kind: "thread_run", script, source, args });
      this.#startingNow = false;
      void this.#o.room(false);
    });
  }

  /** Terminate every thread (the script's member of a group leaves); no more start. */
  close(): void {
    this.#o = { ...this.#o, done: () => {}, line: () => {}, warn: () => {} };
    for (const worker of this.#threads.values()) worker.terminate();
    this.#threads.clear();
    this.#queued = this.#o.maxThreads; // every later start is refused
    if (this.#url !== undefined) URL.revokeObjectURL(this.#url);
  }

  /** Start one thread; resolves when its isolate is up or it ended first. */
  #spawn(id: number, run: ThreadRunMessage): Promise<void> {
    let isUp!: () => void;
    const upOrEnded = new Promise<void>((resolve) => isUp = resolve);
    // One blob for every thread: the bootstrap's text is the same each time.
    this.#url ??= URL.createObjectURL(new Blob([this.#o.source], { type: "text/javascript" }));
    const worker = new Worker(this.#url, {
      type: "module",
      name: "moat-thread",
      deno: { permissions: "none" },
    } as WorkerOptions);
    this.#threads.set(id, worker);
    this.#o.spawned?.();
    let up = false;
    const end = (msg: ThreadDoneMessage) => {
      if (this.#threads.get(msg.id) !== worker) return;
      this.#threads.delete(msg.id);
      worker.terminate();
      this.#o.done(msg);
      isUp();
      // Its isolate goes away in the background: fit the limit again later,
      // unless a start holds room then (it tightens the limit itself).
      setTimeout(() => {
        if (!this.#startingNow) void this.#o.room(false);
      }, 500);
    };
    worker.onmessage = (e: MessageEvent) => {
      if (!up) {
        // Its isolate is up (its address space reserved): the start is
        // done, and the limit may be tightened again.
        up = true;
        isUp();
      }
      if (typeof e.data === "string") {
        this.#o.line(e.data);
        return;
      }
      const r = e.data as ThreadResultMessage | null;
      if (r === null || typeof r !== "object" || r.kind !== "thread_result") return;
      end(
        r.ok
          ? { kind: "thread_done", id, ok: true, value: r.value }
          : { kind: "thread_done", id, ok: false, error: r.error },
      );
    };
    // An error the thread's own handlers did not catch would kill this
    // process: the thread fails instead.
    worker.onerror = (e: ErrorEvent) => {
      e.preventDefault();
      end({
        kind: "thread_done",
        id,
        ok: false,
        error: new Error(String(e.message ?? "uncaught error in a thread")),
      });
    };
    worker.onmessageerror = () => {
      end({
        kind: "thread_done",
        id,
        ok: false,
        error: new Error("moat.thread(): the thread's result could not be deserialised"),
      });
    };
    worker.postMessage(run);
    return upOrEnded;
  }
}

/** The host refused a thread: its message is the reason the script is told. */
export class ThreadDenied extends Error {
  override name = "ThreadDenied";
}
