/**
 * The debug object of one run (`moat.debug_obj`), shown by `moat debug` as
 * it is when asked, not as it was when registered.
 *
 * The script's Worker keeps the registered value itself; when the host is
 * asked for it ({@linkcode DebugObject.current}), it sends the script a
 * `debug` event, and the Worker answers with a fresh `debug_obj` call (as
 * JSON, within the `value_size` quota, else a note saying why it is not
 * shown). The host waits for that answer at most `waitMs` (a script busy in
 * a long synchronous stretch cannot answer) and then gives the last value
 * it has. Requests that arrive while one is waiting share its answer, so
 * however often `moat debug` is called, a script serialises its object at
 * most once per request in flight.
 *
 * @module
 */

import type { Json } from "../../sandbox/protocol.ts";

/** How long the host waits for a script's fresh debug object, ms. */
export const DEBUG_WAIT_MS = 2000;

/** One run's debug object; see the module doc. */
export class DebugObject {
  #value: Json | undefined;
  #waiters: (() => void)[] = [];
  #asking: Promise<Json | undefined> | undefined;

  /** The last value the script sent, if it registered one. */
  get value(): Json | undefined {
    return this.#value;
  }

  /** The script registered `value`, or answered a request with it. */
  set(value: Json): void {
    this.#value = value;
    for (const w of this.#waiters.splice(0)) w();
  }

  /**
   * The value as it is now: `ask()` asks the script for a fresh copy, which
   * is awaited at most `waitMs`. `undefined` when the script registered
   * none (then it is not asked).
   */
  current(ask: () => void, waitMs = DEBUG_WAIT_MS): Promise<Json | undefined> {
    if (this.#value === undefined) return Promise.resolve(undefined);
    this.#asking ??= new Promise<Json | undefined>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.#asking = undefined;
        resolve(this.#value);
      };
      this.#waiters.push(done);
      const timer = setTimeout(() => {
        const i = this.#waiters.indexOf(done);
        if (i >= 0) this.#waiters.splice(i, 1);
        done();
      }, waitMs);
      try {
        ask();
      } catch {
        done();
      }
    });
    return this.#asking;
  }
}
