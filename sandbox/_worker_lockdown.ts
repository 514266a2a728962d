/**
 * The first thing the script's Worker does: capture what the bootstrap
 * needs from the scope, then take away everything a script could use to
 * make new code from text or to reach the process (see the module doc of
 * sandbox/worker.ts for the list and why).
 *
 * Like every `sandbox/_worker_*.ts` module, the function here is copied
 * into the Worker as source text: it may use globals and its parameter,
 * nothing else from this module.
 *
 * @module
 */

import type { RealTimers } from "./_worker_timers.ts";

/** What the bootstrap keeps from the Worker's scope before the lockdown. */
export interface Captured {
  /** The raw channel to the sandbox process (JSON text, or a structured clone for threads). */
  post(message: string | object): void;
  /** `addEventListener` of the Worker scope. */
  listen(type: string, fn: (e: Event) => void): void;
  stringify: typeof JSON.stringify;
  parse: typeof JSON.parse;
  /** `Deno.inspect`. */
  inspect(value: unknown, options: object): string;
  /** The runtime's timers. */
  timers: RealTimers;
  /**
   * `Function.prototype.toString` of a function, and `String.prototype.includes`,
   * as they were before the script could replace them (`moat.thread` checks
   * with these what it sends to a thread).
   */
  sourceOf(fn: unknown): string;
  includes(text: string, part: string): boolean;
  /** The `AsyncFunction` constructor: the only way the bootstrap makes code. */
  // deno-lint-ignore no-explicit-any
  AsyncFunction: new (...a: string[]) => (...a: any[]) => Promise<unknown>;
}

/** Capture what the bootstrap needs from `g` (the Worker scope), then lock `g` down. */
export function captureAndLockDown(
  // deno-lint-ignore no-explicit-any
  g: any,
): Captured {
  // ---- 1. capture --------------------------------------------------------
  // Deno makes its timer globals on first use: reading `setTimeout` loads
  // its timers module, which costs a Worker about 18 ms of CPU and 3 MiB
  // (measured on Deno 2.9.6), and many scripts never set a timer. So the
  // getter is captured, not called, and called on the first timer. A bound
  // function looks nothing up when called: a script cannot redirect it.
  const lazyTimer = (name: string): (a: unknown, b?: unknown) => unknown => {
    let d: PropertyDescriptor | undefined;
    for (let o = g; d === undefined && o !== null; o = Object.getPrototypeOf(o)) {
      d = Object.getOwnPropertyDescriptor(o, name);
    }
    if (d?.get === undefined) return d?.value;
    const get = Function.prototype.call.bind(d.get, g) as () => (
      a: unknown,
      b?: unknown,
    ) => unknown;
    let real: ((a: unknown, b?: unknown) => unknown) | undefined;
    return (a, b) => (real ??= get())(a, b);
  };
  const captured: Captured = {
    post: g.postMessage.bind(g),
    listen: g.addEventListener.bind(g),
    stringify: JSON.stringify,
    parse: JSON.parse,
    inspect: g.Deno.inspect,
    timers: {
      setTimeout: lazyTimer("setTimeout"),
      clearTimeout: lazyTimer("clearTimeout"),
      setInterval: lazyTimer("setInterval"),
      clearInterval: lazyTimer("clearInterval"),
    } as RealTimers,
    // Bound now: a script may replace the prototypes' methods later.
    sourceOf: Function.prototype.call.bind(Function.prototype.toString) as (f: unknown) => string,
    includes: Function.prototype.call.bind(String.prototype.includes) as (
      t: string,
      p: string,
    ) => boolean,
    AsyncFunction: Object.getPrototypeOf(async function () {}).constructor,
  };
  const AsyncFunction = captured.AsyncFunction;

  // ---- 2. neutralise -----------------------------------------------------
  const deny = function () {
    throw new EvalError("code generation from strings is disabled in scripts");
  };
  // `x instanceof Function` keeps working.
  deny.prototype = Function.prototype;
  const codeProtos = [
    Function.prototype,
    AsyncFunction.prototype,
    Object.getPrototypeOf(function* () {}),
    Object.getPrototypeOf(async function* () {}),
  ];
  for (const proto of codeProtos) {
    Object.defineProperty(proto, "constructor", {
      value: deny,
      writable: false,
      enumerable: false,
      configurable: false,
    });
  }
  const removed = [
    "eval",
    "Function",
    "Deno",
    "Worker",
    "process",
    "Buffer",
    "global",
    "setImmediate",
    "clearImmediate",
    "WebAssembly",
    "caches",
    "BroadcastChannel",
    "Lock",
    "LockManager",
  ];
  for (const name of removed) delete g[name];
  Object.defineProperty(g, "Function", { value: deny, writable: false, configurable: false });
  // No WebGPU: `navigator.gpu.requestAdapter()` loads the system's graphics
  // drivers into the sandbox process (native code no permission covers, and
  // memory outside the V8 heap), and Mesa writes its shader cache into the
  // home folder of the host's user (it asks the password database, not
  // $HOME). The getter lives on WorkerNavigator.prototype: delete it on every
  // object of navigator's chain, so that no prototype or descriptor brings
  // it back. The `GPU…` interfaces and constants (`GPUBufferUsage`, …) are
  // found by name on the whole scope chain, so that a Deno version adding
  // one does not widen the sandbox; tests/security/globals_test.ts holds
  // the complete list of what stays.
  // No Web Locks either: `navigator.locks` is one lock table per process,
  // which the scripts of a sandbox group would share (one could see and
  // hold another's locks).
  for (let o = g.navigator; o !== null && o !== Object.prototype; o = Object.getPrototypeOf(o)) {
    if (Object.hasOwn(o, "gpu")) delete o.gpu;
    if (Object.hasOwn(o, "locks")) delete o.locks;
  }
  for (let o = g; o !== null && o !== Object.prototype; o = Object.getPrototypeOf(o)) {
    for (const name of Object.getOwnPropertyNames(o)) {
      if (/^(GPU|WGSL)/.test(name)) delete o[name];
    }
  }
  // OffscreenCanvas is the other door to WebGPU: its getContext("webgpu")
  // hands out a GPUCanvasContext (whose prototype leads back to the
  // interfaces removed above). Deno gives it no "2d" context, so a script
  // loses nothing it could use.
  delete g.OffscreenCanvas;
  delete g.ImageBitmapRenderingContext;
  // No `blob:` URLs: they are a way to name code for the module loader (and
  // to keep data alive outside the script's reach). `data:` imports are
  // refused by the host's code check, and no code can be made from text.
  for (const name of ["createObjectURL", "revokeObjectURL"]) delete g.URL[name];
  // The raw channel to the sandbox process lives on the scope's prototypes.
  for (const name of ["postMessage", "close", "onmessage", "onmessageerror", "onerror"]) {
    for (let o = g; o !== null && o !== Object.prototype; o = Object.getPrototypeOf(o)) {
      if (Object.hasOwn(o, name)) delete o[name];
    }
  }

  return captured;
}
