/**
 * A method table where every method refuses with `unsupported`, with the
 * methods given overridden: for running the sandbox without a host behind
 * it (benchmarks, sandbox tests).
 *
 * @module
 */

import type { MethodName } from "../../sandbox/protocol.ts";
import { BridgeError, type MethodTable } from "./sandbox.ts";
import { argValidators } from "./validate.ts";

/** Every method refuses, except those in `overrides`. */
export function stubMethods(overrides: Partial<MethodTable> = {}): MethodTable {
  const table: Record<string, unknown> = {};
  for (const name of Object.keys(argValidators) as MethodName[]) {
    table[name] = Object.hasOwn(overrides, name)
      ? overrides[name]
      : () => Promise.reject(new BridgeError("unsupported", `${name} is not available here`));
  }
  return table as MethodTable;
}
