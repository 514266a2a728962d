/**
 * The recent log lines of each task a host runs: one bounded ring per task,
 * kept across the task's runs, and at most a bounded number of tasks (the
 * one written to least recently goes first).
 *
 * @module
 */

import type { LogLine } from "./log_line.ts";
import { inTreePath } from "./log_line.ts";

/** How many lines a host keeps per task by default (`moat run --log-lines`). */
export const DEFAULT_RING_LINES = 500;
/** How many tasks' rings a host keeps at most by default. */
export const DEFAULT_RING_TASKS = 2000;

/** Options of a `TaskLogRing`. */
export interface TaskLogRingOptions {
  /**
   * Lines kept per task.
   * @default DEFAULT_RING_LINES
   */
  lines?: number;
  /**
   * Tasks kept at most.
   * @default DEFAULT_RING_TASKS
   */
  tasks?: number;
}

/** The recent lines of every task. */
export class TaskLogRing {
  #lines: number;
  #tasks: number;
  /** Insertion order = least recently written first. */
  #rings = new Map<string, { buf: LogLine[]; next: number }>();

  /** Rings of `options.lines` lines for up to `options.tasks` tasks. */
  constructor(options: TaskLogRingOptions = {}) {
    this.#lines = checkCount(options.lines ?? DEFAULT_RING_LINES, "lines");
    this.#tasks = checkCount(options.tasks ?? DEFAULT_RING_TASKS, "tasks");
  }

  /** How many lines are kept per task. */
  get size(): number {
    return this.#lines;
  }

  /** Keep `line` (the oldest line of its task goes when the ring is full). */
  add(line: LogLine): void {
    let ring = this.#rings.get(line.task);
    if (ring) {
      this.#rings.delete(line.task);
    } else {
      ring = { buf: [], next: 0 };
      if (this.#rings.size >= this.#tasks) {
        const oldest = this.#rings.keys().next().value;
        if (oldest !== undefined) this.#rings.delete(oldest);
      }
    }
    this.#rings.set(line.task, ring);
    if (ring.buf.length < this.#lines) {
      ring.buf.push(line);
    } else {
      ring.buf[ring.next] = line;
      ring.next = (ring.next + 1) % this.#lines;
    }
  }

  /**
   * The kept lines of the tasks at and below the tree path `prefix`, oldest
   * first, at most the last `max` of each task.
   */
  lines(prefix: string, max = Infinity): LogLine[] {
    const out: LogLine[] = [];
    for (const [task, ring] of this.#rings) {
      if (!inTreePath(task, prefix)) continue;
      const ordered = [...ring.buf.slice(ring.next), ...ring.buf.slice(0, ring.next)];
      out.push(...(max < ordered.length ? ordered.slice(ordered.length - max) : ordered));
    }
    return out;
  }
}

function checkCount(n: number, what: string): number {
  if (!Number.isSafeInteger(n) || n < 1) {
    throw new RangeError(`${what} must be a whole number of at least 1, not ${String(n)}`);
  }
  return n;
}
