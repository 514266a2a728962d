/**
 * The host's side of the closed method table: one handler per bridge
 * method of `sandbox/protocol.ts`, so that a method without a handler fails
 * `deno check`.
 *
 * @module
 */

import type { MethodName, Methods } from "../../sandbox/protocol.ts";

/** What a method handler gets besides the arguments. */
export interface CallContext {
  /** Aborts when the script cancels the call or ends. */
  signal: AbortSignal;
  /** The calling task's path. */
  task: string;
}

/** The handler of method `M`: validated arguments in, the method's result out. */
export type MethodHandler<M extends MethodName> = (
  args: Methods[M]["args"],
  ctx: CallContext,
) => Promise<Methods[M]["result"]>;

/**
 * The host's implementation of every bridge method. Arguments arrive
 * validated. Throw `BridgeError` for errors the script should see;
 * anything else reaches the script as `internal error`.
 */
export type MethodTable = { readonly [M in MethodName]: MethodHandler<M> };

/**
 * A table whose every handler is `wrap(name, handler)` of `table`'s: for
 * what applies to every call (mapping errors, watching activity).
 */
export function mapMethods(
  table: MethodTable,
  wrap: <M extends MethodName>(name: M, handler: MethodHandler<M>) => MethodHandler<M>,
): MethodTable {
  const one = <M extends MethodName>(name: M): MethodHandler<M> => wrap(name, table[name]);
  const out: Partial<Record<MethodName, unknown>> = {};
  for (const name of Object.keys(table) as MethodName[]) out[name] = one(name);
  // Every key of `table`, each wrapped with its own type.
  return out as MethodTable;
}
