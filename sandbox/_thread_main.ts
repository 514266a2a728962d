/**
 * The bootstrap of a `moat.thread` Worker: a sibling of the script's Worker
 * in the script's sandbox process, started by the process
 * (sandbox/_thread_runner.ts) from a `blob:` URL, like the script's Worker
 * and with the same lockdown (`captureAndLockDown`), function-only timers
 * and a `console` whose lines go to the task's log. It has no `moat` and
 * no channel to the host.
 *
 * Like the `sandbox/_worker_*.ts` modules, {@linkcode threadMain} is copied
 * into the thread as source text: it may use globals, its parameters and
 * the other functions copied (see {@linkcode threadSource}), nothing else
 * from this module.
 *
 * The thread compiles the function's text with the `AsyncFunction`
 * constructor it captured before the lockdown, as the script's Worker
 * compiles the script: the text comes only from the sandbox process, in the
 * thread's first message, which the script's Worker checked to be part of
 * the script's code. Later messages (the function may dispatch forged
 * `message` events on its own scope) are ignored.
 *
 * @module
 */

import type { ThreadResultMessage, ThreadRunMessage } from "./protocol.ts";
import { captureAndLockDown } from "./_worker_lockdown.ts";
import { bridgeClient, type WorkerConfig } from "./_worker_bridge.ts";
import { realScriptTimers } from "./_worker_timers.ts";

/** The JavaScript text of a thread Worker: its functions and a call to `threadMain`. */
export function threadSource(config: WorkerConfig): string {
  const parts = [captureAndLockDown, bridgeClient, realScriptTimers, threadMain];
  const text = parts.map((f) => f.toString()).join("\n");
  return `"use strict";\n${text}\nthreadMain(${JSON.stringify(config)});\n`;
}

/** The thread's main. Runs inside the thread Worker only. */
export function threadMain(config: WorkerConfig): void {
  // deno-lint-ignore no-explicit-any
  const g = globalThis as any;
  const c = captureAndLockDown(g);
  const timers = realScriptTimers(c.timers);
  g.setTimeout = timers.setTimeout;
  g.setInterval = timers.setInterval;
  g.clearTimeout = timers.clearTimeout;
  g.clearInterval = timers.clearInterval;
  const bridge = bridgeClient(c, config);
  // Deno's own console would write to the sandbox process's stdout, the
  // line protocol to the host: the thread's output becomes log lines.
  g.console = bridge.console(g.console);

  // Up: the sandbox process may let the host tighten the memory limit again.
  c.post({ kind: "thread_up" });

  let started = false;
  let finished = false;
  const finish = (msg: ThreadResultMessage): void => {
    if (finished) return;
    finished = true;
    timers.clearAll();
    try {
      c.post(msg);
    } catch (err) {
      // The result (or error) cannot be cloned: say so instead.
      const what = msg.ok ? "result" : "error";
      c.post(
        {
          kind: "thread_result",
          ok: false,
          error: new TypeError(
            `moat.thread(): the thread's ${what} cannot be cloned: ${bridge.describe(err).message}`,
          ),
        } satisfies ThreadResultMessage,
      );
    }
  };
  const fail = (err: unknown): void => finish({ kind: "thread_result", ok: false, error: err });

  // An error the function did not catch ends the thread with that error.
  c.listen("error", (e) => {
    e.preventDefault();
    fail((e as ErrorEvent).error ?? new Error((e as ErrorEvent).message));
  });
  c.listen("unhandledrejection", (e) => {
    e.preventDefault();
    fail((e as PromiseRejectionEvent).reason);
  });

  c.listen("message", (e) => {
    // Only the first message, which the sandbox process sent before any of
    // the function's code ran.
    if (started) return;
    started = true;
    const msg = (e as MessageEvent).data as ThreadRunMessage;
    void (async () => {
      let fn: (...a: unknown[]) => unknown;
      try {
        const body = `return (${msg.source}\n);\n//# sourceURL=moat-thread:${
          encodeURIComponent(msg.script)
        }`;
        fn = await new c.AsyncFunction(body).call(undefined) as typeof fn;
      } catch (err) {
        fail(
          new SyntaxError(
            `moat.thread(): this function cannot run in a thread (${
              bridge.describe(err).message
            }); write it as a function or an arrow function, not as a method or accessor`,
          ),
        );
        return;
      }
      try {
        const value = await fn(...msg.args);
        finish({ kind: "thread_result", ok: true, value });
      } catch (err) {
        fail(err);
      }
    })();
  });
}
