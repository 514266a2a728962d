/**
 * Type-check scripts in a short-lived Worker of the host process: what the
 * host does with a `new_code` written by hand before it promotes it
 * (host/scripts/versions.ts), the same check `moat script def add` runs.
 *
 * @module
 */

import type { Diagnostic } from "./check.ts";
import type { TypeCheckInput } from "./typecheck.ts";

/** The checker could not run (not: the script has type errors). */
export class TypeCheckUnavailableError extends Error {
  /** Always `TypeCheckUnavailableError`. */
  override name = "TypeCheckUnavailableError";
}

/**
 * Each input's type problems (an empty list when it is clean), computed in a
 * Worker that ends when it has answered.
 * @throws {TypeCheckUnavailableError} when the checker cannot run (e.g. the
 *   moat API types cannot be read)
 */
export function typeCheckApart(inputs: TypeCheckInput[]): Promise<Diagnostic[][]> {
  return new Promise((resolve, reject) => {
    let worker: Worker;
    try {
      worker = new Worker(new URL("./_typecheck_worker.ts", import.meta.url), {
        type: "module",
      });
    } catch (e) {
      reject(new TypeCheckUnavailableError((e as Error).message, { cause: e }));
      return;
    }
    const done = () => worker.terminate();
    worker.onmessage = (e: MessageEvent<{ diagnostics?: Diagnostic[][]; error?: string }>) => {
      done();
      if (e.data.diagnostics) resolve(e.data.diagnostics);
      else reject(new TypeCheckUnavailableError(e.data.error ?? "no answer"));
    };
    worker.onerror = (e: ErrorEvent) => {
      e.preventDefault();
      done();
      reject(new TypeCheckUnavailableError(e.message));
    };
    worker.postMessage(inputs);
  });
}
