/**
 * The host's bridge method table: what each `moat` call that crosses the
 * bridge does on the host, with the capabilities of one run (its view of the
 * tree, its bus, its error records, its quotas). Arguments arrive validated
 * (host/bridge/validate.ts); refusals are thrown as `CapabilityError` and
 * handed to the bridge as `BridgeError`, so the script sees a code and a
 * message, never a host stack.
 *
 * @module
 */

import type { Clock } from "../time/clock.ts";
import { parseTimeSpec, TimeSpecError, type TimeSpecInput } from "../time/time_spec.ts";
import { waitTarget, waitUntilSpec } from "../time/wait.ts";
import { type Location, parseLocation } from "../time/sun.ts";
import type { ScriptView } from "./script_view.ts";
import { maskText } from "./secret_mask.ts";
import { checkTag, DENIED_TAG_PREFIX, type ErrorRecords, isHostTag } from "./error_records.ts";
import type { ScriptBus } from "./script_bus.ts";
import { jsonBytes, type Quotas, StoreQuotas, utf8Length } from "./quotas.ts";
import { checkName } from "../names.ts";
import { DefinitionError } from "../scripts/definitions.ts";
import { ScriptCheckError } from "../scripts/check.ts";
import { BridgeError, mapMethods, type MethodTable } from "../bridge/sandbox.ts";
import { CapabilityError } from "./capability_error.ts";
import { type Capability, DeniedError, type Grants } from "./manifest.ts";
import type { DebugObject } from "./debug_object.ts";
import { latestDue, type Schedules } from "./schedules.ts";
import type { Firing, TimeOptions, TimeSpec } from "../../sandbox/protocol.ts";

/** What the methods of one run need from the host. */
export interface MethodContext {
  clock: Clock;
  /** The installation's time zone now (`/config/timezone`, else the host's). */
  zone(): string;
  /** The installation's location now, as written in `/config/location` ("LAT LON"), if set. */
  location?(): string | undefined;
  /** The task's path. */
  task: string;
  /** The running script's name. */
  script: string;
  /** The script's view of the tree. */
  view: ScriptView;
  errors: ErrorRecords;
  /** Fetch and check another script's code for `moat.load`, recording the dependency. */
  load(name: string): Promise<{ script: string; js: string }>;
  /** The run's registrations and traffic on the bus. */
  bus: ScriptBus;
  /** What the run may make the installation spend (quotas.ts). */
  quotas: Quotas;
  /** The run's debug object (`moat.debug_obj`). */
  debug: DebugObject;
  /** The run's schedules: records of firings, catch-up, and the lease fence. */
  schedules: Schedules;
  /** The capability manifest's limits (`data.write`, `load`); without it, none. */
  grants?: Grants;
  /**
   * Records a refusal by the manifest (see {@linkcode deniedRecorder}).
   * @default a recorder of this method table's own
   */
  recordDenied?: (e: DeniedError) => Promise<void>;
}

function timeError(e: unknown): never {
  if (e instanceof TimeSpecError || e instanceof RangeError) {
    throw new CapabilityError("time_spec", e.message);
  }
  throw e;
}

/**
 * The location for `spec`: only a spec with a sun event needs one, so a
 * malformed `/config/location` troubles only those, naming the key.
 */
function locationFor(ctx: MethodContext, spec: TimeSpecInput): { location?: Location } {
  const raw = ctx.location?.()?.trim();
  if (raw === undefined || raw === "") return {};
  let needed = false;
  try {
    needed = parseTimeSpec(spec).event !== undefined;
  } catch {
    // timeAt reports the bad spec itself.
  }
  if (!needed) return {};
  try {
    return { location: parseLocation(raw) };
  } catch (e) {
    throw new CapabilityError("time_spec", `/config/location: ${(e as Error).message}`);
  }
}

/** A script's error tag: well-formed, and not one of the host's own. */
function guardedTag(tag: string): string {
  try {
    return scriptTag(tag);
  } catch (e) {
    if (e instanceof CapabilityError) throw e;
    throw new CapabilityError("bad_args", (e as Error).message);
  }
}

/** Store trouble reaches the script as a plain message, never raw client text. */
async function guarded<T>(what: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    if (e instanceof CapabilityError) throw e;
    if (e instanceof RangeError) throw new CapabilityError("bad_args", e.message);
    throw new CapabilityError("unavailable", `cannot ${what}: the store is not reachable`);
  }
}

/** The host's own error tags: a script can neither set nor clear them. */
function scriptTag(tag: string): string {
  const t = checkTag(tag);
  if (isHostTag(t)) {
    throw new CapabilityError("reserved", `error tag "${t}" belongs to the host; use another tag`);
  }
  return t;
}

/** What the script is told of a refusal: the bridge's error with the same code and message. */
function toBridge(e: unknown): unknown {
  return e instanceof CapabilityError ? new BridgeError(e.code, e.message, { cause: e }) : e;
}

/**
 * `moat.wait` and `moat.run_at`: sleep until the spec's moment, or, with
 * `catch_up`, fire at once a firing due within the window that is not done;
 * never hand a firing to the script once the lease may have expired.
 */
async function scheduled(
  ctx: MethodContext,
  quota: StoreQuotas,
  kind: "wait" | "run_at",
  spec: TimeSpec,
  options: TimeOptions,
  signal: AbortSignal,
): Promise<Firing> {
  const { id, catch_up: catchUp } = options;
  const current = options.current ?? null;
  if (catchUp !== undefined && id === undefined) {
    throw new CapabilityError("bad_args", `Cannot call ${kind}: catch_up needs an id`);
  }
  if (catchUp !== undefined && (options.now !== undefined || current !== null)) {
    throw new CapabilityError(
      "bad_args",
      `Cannot call ${kind}: catch_up works only with the default current and without now`,
    );
  }
  const due = { clock: ctx.clock, zone: ctx.zone(), ...locationFor(ctx, spec) };
  const base = { ...due, ...(options.now !== undefined ? { now: options.now } : {}), current };
  const disarm = id === undefined ? undefined : ctx.schedules.arm(id);
  try {
    let target: number;
    let late = false;
    const done = id === undefined ? -Infinity : ctx.schedules.lastDone(id);
    try {
      const missed = catchUp ? latestDue(spec, ctx.clock.now() / 1000, catchUp, due) : undefined;
      if (missed !== undefined && missed > done) {
        target = missed;
        late = true;
      } else {
        target = waitTarget(spec, base);
        // A firing done already (by this run or one before) does not fire again.
        for (let i = 0; target <= done && i < 100; i++) {
          const next = waitTarget(spec, { ...base, now: target });
          if (next <= target) break;
          target = next;
        }
        if (target <= done) {
          // The schedule's only firing is done: it never fires again.
          await new Promise<never>((_, reject) => {
            signal.throwIfAborted();
            signal.addEventListener("abort", () => reject(signal.reason), { once: true });
          });
        }
        await waitUntilSpec([], { ...due, now: target, signal });
      }
    } catch (e) {
      if (signal.aborted) throw new CapabilityError("cancelled", "the wait was cancelled");
      return timeError(e);
    }
    if (id !== undefined) quota.write(utf8Length(id) + 200);
    // The fence, at the last moment before the script learns of the firing.
    ctx.schedules.guard();
    if (id !== undefined) {
      ctx.schedules.fire(id, target, {
        late,
        spec,
        catchUp: catchUp ?? 0,
        due,
      }, kind);
    }
    return { due: target, late };
  } finally {
    disarm?.();
  }
}

/**
 * What records one run's refusals by its manifest: one error record
 * (`denied.<capability>`) per capability and run, not one per call, so that
 * a script that retries in a loop does not turn its refusals into writes.
 */
export function deniedRecorder(
  ctx: Pick<MethodContext, "errors" | "task" | "quotas">,
): (e: DeniedError) => Promise<void> {
  const recorded = new Set<Capability>();
  return async (e) => {
    if (recorded.has(e.capability)) return;
    recorded.add(e.capability);
    await ctx.errors.set(ctx.task, DENIED_TAG_PREFIX + e.capability, e.message, {
      maxPerTask: ctx.quotas.errorRecords,
    }).catch(() => {});
  };
}

/** Build the method table of one script run. */
export function hostMethods(ctx: MethodContext): MethodTable {
  const table = capabilityMethods(ctx);
  const recordDenied = ctx.recordDenied ?? deniedRecorder(ctx);
  return mapMethods(table, (_name, handler) => async (args, call) => {
    try {
      return await handler(args, call);
    } catch (e) {
      if (e instanceof DeniedError) await recordDenied(e);
      throw toBridge(e);
    }
  });
}

/** The handlers, refusing with `CapabilityError`. */
function capabilityMethods(ctx: MethodContext): MethodTable {
  const quota = new StoreQuotas(ctx.quotas);
  return {
    // deno-lint-ignore require-await
    async time_at([spec, options]) {
      try {
        // The same target a wait with these arguments would sleep until.
        return waitTarget(spec, {
          clock: ctx.clock,
          zone: ctx.zone(),
          ...locationFor(ctx, spec),
          ...(options.now !== undefined ? { now: options.now } : {}),
          current: options.current ?? null,
        });
      } catch (e) {
        return timeError(e);
      }
    },
    async wait([spec, options], call) {
      return (await scheduled(ctx, quota, "wait", spec, options, call.signal)).due;
    },
    run_at([spec, options], call) {
      return scheduled(ctx, quota, "run_at", spec, options, call.signal);
    },
    // deno-lint-ignore require-await
    async fired([id, due]) {
      ctx.schedules.callbackReturned(id, due);
      return null;
    },
    async data_set([key, value]) {
      ctx.grants?.dataWrite(key);
      const bytes = jsonBytes(value);
      quota.value(bytes, `the value of "${key}"`);
      quota.write(bytes + utf8Length(key));
      await ctx.view.dataSet(key, value);
      return null;
    },
    tree_lookup([path]) {
      return quota.read(() => guarded("look up the tree", () => ctx.view.lookup(path)));
    },
    // deno-lint-ignore require-await
    async tree_watch([path]) {
      ctx.view.watch(path);
      return null;
    },
    async set_error([tag, message]) {
      const t = guardedTag(tag);
      const bytes = utf8Length(message);
      quota.value(bytes, "the error message");
      quota.write(bytes + utf8Length(t));
      await guarded(
        "record the error",
        // The task's secret values are masked here too (secret_mask.ts).
        () =>
          ctx.errors.set(ctx.task, t, maskText(message, ctx.view.secretValues()), {
            maxPerTask: ctx.quotas.errorRecords,
          }),
      );
      return null;
    },
    async clear_error([tag]) {
      const t = guardedTag(tag);
      quota.write(utf8Length(t));
      await guarded("clear the error", () => ctx.errors.clear(ctx.task, t));
      return null;
    },
    async load([name]) {
      try {
        checkName(name, "script");
      } catch (e) {
        throw new CapabilityError("bad_name", (e as Error).message);
      }
      if (name === ctx.script) {
        throw new CapabilityError("load_cycle", `script "${name}" cannot load itself`);
      }
      ctx.grants?.load(name);
      const loaded = await quota.read(() =>
        guarded(`load script "${name}"`, async () => {
          try {
            return await ctx.load(name);
          } catch (e) {
            // Missing scripts and failed checks are the script author's to see.
            if (e instanceof DefinitionError || e instanceof ScriptCheckError) {
              throw new CapabilityError("load_failed", e.message);
            }
            throw e;
          }
        })
      );
      return { script: loaded.script, code: loaded.js };
    },
    rpc_serve: ([name]) => ctx.bus.serve(name),
    // deno-lint-ignore require-await
    async rpc_reply([call, ok, value]) {
      try {
        quota.value(jsonBytes(value), "the RPC reply");
      } catch (e) {
        // The caller still gets one answer: an error that says why; the
        // script gets the quota error.
        ctx.bus.reply(call, false, { message: (e as Error).message, class: "QuotaError" });
        throw e;
      }
      ctx.bus.reply(call, ok, value);
      return null;
    },
    alert_listen: ([pattern]) => ctx.bus.listen(pattern),
    call: ([name, args, timeout]) => {
      quota.value(jsonBytes(args), `the arguments of call "${name}"`);
      return ctx.bus.call(name, args, timeout);
    },
    async alert([topic, data]) {
      quota.value(jsonBytes(data), `the data of alert "${topic}"`);
      await ctx.bus.alert(topic, data);
      return null;
    },
    // deno-lint-ignore require-await
    async debug_obj([value]) {
      quota.value(jsonBytes(value), "the debug object");
      ctx.debug.set(value);
      return null;
    },
  };
}
