/**
 * The host's log: one line per message on standard error, with the time,
 * the level and where it comes from (a task path, or "host"). Messages and
 * sources come from scripts (and task paths from etcd): `LineLogger` shows
 * their control characters escaped (host/text.ts).
 *
 * @module
 */

import { escapeControl } from "./text.ts";
import type { LogLevel } from "../sandbox/protocol.ts";

/** Log levels, lowest first: the same four as a script's `moat.logger`. */
export type { LogLevel };

const ORDER: Record<LogLevel, number> = { debug: 0, info: 1, warn: 2, error: 3 };

/** Where log lines go. */
export interface Logger {
  /** Log `message` from `source` (a task path or `host`) at `level`. */
  log(level: LogLevel, source: string, message: string): void;
}

/** Whether `s` is a log level. */
export function isLogLevel(s: string): s is LogLevel {
  return Object.hasOwn(ORDER, s);
}

/**
 * A sink writing whole lines to standard error. When nobody reads it any
 * more (a closed pipe: `moat run 2>&1 | head`, a log collector that went
 * away), later lines are dropped: the host goes on running its scripts, as
 * a service must, rather than failing in whatever code logged.
 */
export function stderrLines(
  stderr: { writeSync(b: Uint8Array): number } = Deno.stderr,
): (line: string) => void {
  const enc = new TextEncoder();
  let closed = false;
  return (line) => {
    if (closed) return;
    let buf = enc.encode(line + "\n");
    try {
      while (buf.length > 0) buf = buf.subarray(stderr.writeSync(buf));
    } catch (e) {
      if (!(e instanceof Deno.errors.BrokenPipe)) throw e;
      closed = true;
    }
  };
}

/**
 * Writes `TIME LEVEL [source] message` lines to a sink (stderr by default),
 * with control characters in the source and message escaped.
 */
export class LineLogger implements Logger {
  #min: number;
  #write: (line: string) => void;
  #now: () => number;

  /** A logger writing lines at `level` and above (default `info`) through `write` (default: standard error). */
  constructor(
    options: { level?: LogLevel; write?: (line: string) => void; now?: () => number } = {},
  ) {
    this.#min = ORDER[options.level ?? "info"];
    this.#write = options.write ?? stderrLines();
    this.#now = options.now ?? Date.now;
  }

  /** Log one message (see `Logger.log`). */
  log(level: LogLevel, source: string, message: string): void {
    if (ORDER[level] < this.#min) return;
    const time = new Date(this.#now()).toISOString();
    // The message and source come from scripts: escaped, a message is one
    // line ("\n" shows as \n) and cannot forge other lines or drive the terminal.
    this.#write(
      `${time} ${level.toUpperCase().padEnd(5)} [${escapeControl(source)}] ${
        escapeControl(message)
      }`,
    );
  }
}

/** Keeps log lines in memory (tests, `moat script try`). */
export class MemoryLogger implements Logger {
  /** Every line, with `at` = `performance.now()` when it was logged. */
  readonly lines: { level: LogLevel; source: string; message: string; at: number }[] = [];
  #listeners = new Set<() => void>();

  log(level: LogLevel, source: string, message: string): void {
    this.lines.push({ level, source, message, at: performance.now() });
    for (const l of this.#listeners) l();
  }

  /** Call `fn` with every later line; returns a function that stops it. */
  subscribe(
    fn: (line: { level: LogLevel; source: string; message: string; at: number }) => void,
  ): () => void {
    const check = () => fn(this.lines[this.lines.length - 1]!);
    this.#listeners.add(check);
    return () => void this.#listeners.delete(check);
  }

  /** Resolve when a line matching `pred` has been logged (also one logged before). */
  waitFor(
    pred: (l: { level: LogLevel; source: string; message: string }) => boolean,
  ): Promise<void> {
    if (this.lines.some(pred)) return Promise.resolve();
    return new Promise((resolve) => {
      const check = () => {
        if (this.lines.some(pred)) {
          this.#listeners.delete(check);
          resolve();
        }
      };
      this.#listeners.add(check);
    });
  }
}
