/**
 * Gives the host's memory back after a burst of work.
 *
 * V8 grows its heap to match the allocation rate of a busy spell (many
 * tasks started and stopped at once) and shrinks it only lazily: after a
 * churn of 500 task operations the host's live heap was back at ~38 MiB
 * while V8 still held 90–170 MiB of pages, so its RSS swung between 165 and
 * 320 MiB with nothing leaked. A host that runs for years should return to
 * its working size when the burst is over, so the `MemoryReducer` runs one
 * full garbage collection once the host has been quiet for a whole check
 * interval and V8's heap (or the process's RSS) has grown well beyond its
 * size after the last such collection. After it, glibc's `malloc_trim`
 * hands back the native memory the burst freed. Both together take about
 * 0.1 s, and only when no task has started or stopped for an interval.
 *
 * @module
 */

import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";

/** The part of `Deno.memoryUsage()` the reducer looks at, in bytes. */
export interface HeapUsage {
  heapTotal: number;
  heapUsed: number;
  /** The resident set of the whole process (V8's heap and native memory). */
  rss: number;
}

/** What one collection did, for the log. */
export interface Collection {
  before: HeapUsage;
  after: HeapUsage;
  ms: number;
}

/** Options of a `MemoryReducer`. */
export interface MemoryReducerOptions {
  /**
   * How often to look, in ms; a collection needs one whole interval
   * without activity.
   * @default 5000
   */
  intervalMs?: number;
  /**
   * How much the heap held, or the process's RSS, must have grown beyond
   * its size after the last collection (and at least `growthRatio` of it),
   * in bytes.
   * @default 16 MiB
   */
  minGrowthBytes?: number;
  /** @default 0.25 */
  growthRatio?: number;
  /** @default () => Deno.memoryUsage() */
  usage?: () => HeapUsage;
  /**
   * A full garbage collection; `undefined` disables the reducer.
   * @default fullCollection()
   */
  collect?: (() => void) | undefined;
  /** @default Date.now */
  now?: () => number;
  /** Called after each collection. */
  onCollect?(c: Collection): void;
}

/**
 * V8's full garbage collection, made available to this process at run
 * time (`--expose-gc` for contexts created from now on), followed by
 * {@linkcode mallocTrim} where there is one; `undefined` when this runtime
 * does not allow the collection.
 */
export function fullCollection(): (() => void) | undefined {
  let gc: unknown;
  try {
    setFlagsFromString("--expose-gc");
    gc = runInNewContext("gc");
  } catch {
    return undefined;
  }
  if (typeof gc !== "function") return undefined;
  const trim = mallocTrim();
  return () => {
    gc();
    trim?.();
  };
}

/**
 * glibc's `malloc_trim(0)`, which returns the free pages of every malloc
 * arena to the system: Deno's own (native) allocations go through malloc,
 * and what a burst freed stays in the process otherwise (the host's malloc
 * heap stayed at 44–52 MiB after a churn; 19–20 MiB with it). `undefined`
 * without glibc or without FFI.
 */
export function mallocTrim(): (() => void) | undefined {
  try {
    const libc = Deno.dlopen("libc.so.6", {
      malloc_trim: { parameters: ["usize"], result: "i32" },
    });
    return () => void libc.symbols.malloc_trim(0n);
  } catch {
    return undefined;
  }
}

/** Runs a full garbage collection when the host is quiet and its memory has grown. */
export class MemoryReducer {
  #intervalMs: number;
  #minGrowth: number;
  #ratio: number;
  #usage: () => HeapUsage;
  #collect: (() => void) | undefined;
  #now: () => number;
  #onCollect: ((c: Collection) => void) | undefined;
  #busy = true;
  /** The usage after the last collection; none yet at the start. */
  #settled: HeapUsage | undefined;
  #timer: ReturnType<typeof setInterval> | undefined;
  #closed = false;

  constructor(options: MemoryReducerOptions = {}) {
    this.#intervalMs = options.intervalMs ?? 5000;
    this.#minGrowth = options.minGrowthBytes ?? 16 * 1024 * 1024;
    this.#ratio = options.growthRatio ?? 0.25;
    this.#usage = options.usage ?? (() => Deno.memoryUsage());
    this.#collect = "collect" in options ? options.collect : fullCollection();
    this.#now = options.now ?? Date.now;
    this.#onCollect = options.onCollect;
  }

  /** False when this runtime offers no full collection (the reducer then does nothing). */
  get enabled(): boolean {
    return this.#collect !== undefined;
  }

  /** Something happened (a task started, stopped or changed state): not quiet. */
  activity(): void {
    this.#busy = true;
  }

  /**
   * One look, as the timer takes it every interval: collects when nothing
   * happened since the last look and the heap held or the RSS has grown
   * beyond its size after the last collection. Returns what it did, if
   * anything.
   */
  check(): Collection | undefined {
    if (this.#closed || !this.#collect) return undefined;
    const busy = this.#busy;
    this.#busy = false;
    if (busy) return undefined;
    const before = this.#usage();
    if (this.#settled !== undefined) {
      const grown = (now: number, then: number) =>
        now > then + Math.max(this.#minGrowth, then * this.#ratio);
      const s = this.#settled;
      if (!grown(before.heapTotal, s.heapTotal) && !grown(before.rss, s.rss)) return undefined;
    }
    const t0 = this.#now();
    this.#collect();
    const after = this.#usage();
    this.#settled = after;
    const c = { before, after, ms: this.#now() - t0 };
    this.#onCollect?.(c);
    return c;
  }

  /** Look every interval until `close()`; the timer does not keep the process alive. */
  start(): void {
    if (this.#closed || this.#timer !== undefined || !this.#collect) return;
    const timer = setInterval(() => this.check(), this.#intervalMs);
    Deno.unrefTimer(Number(timer));
    this.#timer = timer;
  }

  /** Stop looking. Safe twice. */
  close(): void {
    this.#closed = true;
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
  }
}
