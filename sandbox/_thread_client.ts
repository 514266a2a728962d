/**
 * `moat.thread` inside the script's Worker: checks the function, queues the
 * call until a thread is free (at most `maxThreads` run at once), asks the
 * sandbox process to run it, and settles the script's promise with what
 * comes back.
 *
 * Like the `sandbox/_worker_*.ts` modules, the function here is copied
 * into the Worker as source text: it may use globals and its parameters,
 * nothing else from this module.
 *
 * Why the function's text must be part of the script's code: the thread
 * compiles it, and the sandbox makes no code from text a script made at run
 * time. A real function's text (read with the `Function.prototype.toString`
 * captured before the script ran) is code V8 compiled already: the
 * script's, a library's, the bootstrap's or native code. Requiring that the
 * text occur in the script's code or a library it loaded leaves only the
 * first two, which the host checked.
 *
 * @module
 */

import type { Captured } from "./_worker_lockdown.ts";
import type { ErrorInfo, ThreadDoneMessage, ThreadStartMessage } from "./protocol.ts";
import type { WorkerConfig } from "./_worker_bridge.ts";

/** What {@linkcode threadClient} gives the `moat` object. */
export interface ThreadClient {
  /** `moat.thread(fn, ...args)`: check `fn`, run it in a thread when one is free. */
  run(fn: unknown, args: unknown[]): Promise<unknown>;
  /** A `thread_done` message from the sandbox process. */
  onDone(msg: ThreadDoneMessage): void;
  /** Whether a thread runs or a call waits for one. */
  busy(): boolean;
  /** How many threads have finished (activity, for virtual time). */
  finished(): number;
}

/**
 * Threads of one script. `code()` is the text of the script and of every
 * library it loaded; `script()` names the script (for stack traces).
 *
 * The function's text must reach the sandbox process as it was checked,
 * whatever the script did to the prototypes of the scope (it may replace
 * `Array.prototype.shift`, `Map.prototype.get` and such, which run in the
 * bootstrap's code too): between the check and the `post` the text moves
 * only through local variables and own properties of object literals
 * (the queue is a linked list of them), and the check uses the captured
 * `includes`. (Hooks elsewhere, on the Map of running threads say, can
 * only deceive the script itself; the sandbox process enforces the number
 * of threads on its own.)
 */
export function threadClient(
  c: Captured,
  config: WorkerConfig,
  code: () => string,
  script: () => string,
  moatError: (info: ErrorInfo) => Error,
): ThreadClient {
  interface Job {
    source: string;
    args: unknown[];
    resolve(v: unknown): void;
    reject(e: unknown): void;
    next: Job | undefined;
  }
  let first: Job | undefined;
  let last: Job | undefined;
  let waiting = 0;
  const running = new Map<number, Job>();
  let lastId = 0;
  let done = 0;

  const pump = (): void => {
    while (running.size < config.maxThreads && first !== undefined) {
      const job: Job = first;
      first = job.next;
      if (first === undefined) last = undefined;
      waiting--;
      const id = ++lastId;
      const msg: ThreadStartMessage = {
        kind: "thread_start",
        id,
        script: script(),
        source: job.source,
        args: job.args,
      };
      try {
        // A structured clone: an argument that cannot be cloned throws here.
        c.post(msg);
      } catch (err) {
        job.reject(err);
        continue;
      }
      running.set(id, job);
    }
  };

  return {
    run(fn: unknown, args: unknown[]): Promise<unknown> {
      if (typeof fn !== "function") {
        return Promise.reject(
          new TypeError(`moat.thread() needs a function, got ${fn === null ? "null" : typeof fn}`),
        );
      }
      let source: string;
      try {
        source = c.sourceOf(fn);
      } catch {
        return Promise.reject(new TypeError("moat.thread(): cannot read the function's source"));
      }
      // A real function's text is code V8 compiled: this leaves the
      // script's and its libraries' (not the bootstrap's, not native code).
      if (typeof source !== "string" || !c.includes(code(), source)) {
        const shown = typeof source === "string" ? source.slice(0, 80) : "";
        return Promise.reject(
          new TypeError(
            "moat.thread() runs only a function written in the script's code (or a library " +
              `it loaded), not a built-in, bound or host function: ${c.stringify(shown)}`,
          ),
        );
      }
      if (waiting >= config.maxThreadsWaiting) {
        return Promise.reject(
          new RangeError(
            `moat.thread(): ${waiting} calls already wait for one of ` +
              `${config.maxThreads} threads (limit ${config.maxThreadsWaiting})`,
          ),
        );
      }
      return new Promise((resolve, reject) => {
        const job: Job = { source, args, resolve, reject, next: undefined };
        if (last === undefined) first = job;
        else last.next = job;
        last = job;
        waiting++;
        pump();
      });
    },
    onDone(msg: ThreadDoneMessage): void {
      const job = running.get(msg.id);
      if (job === undefined) return;
      running.delete(msg.id);
      done++;
      if (msg.ok) job.resolve(msg.value);
      else job.reject(msg.moat !== undefined ? moatError(msg.moat) : msg.error);
      pump();
    },
    busy: () => running.size > 0 || first !== undefined,
    finished: () => done,
  };
}
