/**
 * The host's bridge method table: what each `moat` call that crosses the
 * bridge does on the host. Arguments arrive validated (validate.ts); user
 * errors are thrown as `BridgeError` so the script sees a code and a
 * message, never a host stack.
 *
 * @module
 */

import type { Clock } from "../time/clock.ts";
import { timeAt } from "../time/time_at.ts";
import { TimeSpecError } from "../time/time_spec.ts";
import { waitUntilSpec } from "../time/wait.ts";
import { BridgeError, type MethodTable } from "./sandbox.ts";

/** What the methods of one run need from the host. */
export interface MethodContext {
  clock: Clock;
  /** The installation's time zone now (`/config/timezone`, else the host's). */
  zone(): string;
}

function timeError(e: unknown): never {
  if (e instanceof TimeSpecError || e instanceof RangeError) {
    throw new BridgeError("time_spec", e.message);
  }
  throw e;
}

/** Build the method table of one script run. */
export function hostMethods(ctx: MethodContext): MethodTable {
  return {
    // deno-lint-ignore require-await
    async time_at([spec, options]) {
      try {
        return timeAt(spec, {
          now: options.now ?? ctx.clock.now() / 1000,
          current: options.current ?? null,
          zone: ctx.zone(),
        });
      } catch (e) {
        return timeError(e);
      }
    },
    async wait([spec, options], call) {
      try {
        return await waitUntilSpec(spec, {
          clock: ctx.clock,
          zone: ctx.zone(),
          ...(options.now !== undefined ? { now: options.now } : {}),
          current: options.current ?? null,
          signal: call.signal,
        });
      } catch (e) {
        if (call.signal.aborted) throw new BridgeError("cancelled", "the wait was cancelled");
        return timeError(e);
      }
    },
  };
}
