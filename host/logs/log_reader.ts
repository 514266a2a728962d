/**
 * Reading task logs from anywhere (`moat log`, `moat web`): subscribe to the
 * live lines first, then ask every host for the lines it keeps
 * (`moat.logs.query`), merge the answers by time (a line that came both
 * ways counts once), and follow the live lines after them.
 *
 * @module
 */

import type { Bus, Registration } from "../bus/bus.ts";
import {
  asLogLine,
  compareLines,
  inTreePath,
  lineKey,
  LOG_QUERY_TOPIC,
  type LogLine,
  logPattern,
  logReplyTopic,
} from "./log_line.ts";
import type { LogQuery } from "./task_logs.ts";

/** How long a reader waits for unexpected answers once the expected ones are in, in ms. */
export const DEFAULT_SETTLE_MS = 300;

/** What a reader waits for: the hosts that should answer. */
export interface Expected {
  /** Host names of which at least one process should answer. */
  hosts: Iterable<string>;
  /** Processes (`host` and `pid`) that should answer: those running a task now. */
  processes: Iterable<{ host: string; pid: number }>;
}

/**
 * The hosts that should answer for some tasks, from their status rows
 * (`moat status`): the host name of each task, and each process holding
 * a task's `running` key (`runner` is "HOST pid PID").
 */
export function expectedHosts(
  rows: { path: string; state: string; runner?: string | undefined }[],
): Expected {
  const hosts = new Set<string>();
  const processes: { host: string; pid: number }[] = [];
  for (const r of rows) {
    hosts.add(r.path.split("/")[0]!);
    const m = r.state === "run" ? /^(.*) pid (\d+)$/.exec(r.runner ?? "") : null;
    if (m) processes.push({ host: m[1]!, pid: Number(m[2]) });
  }
  return { hosts, processes };
}

/** What `LogReader.history` found. */
export interface History {
  /** The kept lines, oldest first. */
  lines: LogLine[];
  /** Expected host names (or `host pid N`) that did not answer in time. */
  missing: string[];
  /** Lines hosts left out of their answers to keep them small. */
  cut: number;
}

/** Reads the lines of the tasks at and below one tree path. */
export class LogReader {
  #bus: Bus;
  #path: string;
  #id = crypto.randomUUID();
  #seen = new Set<string>();
  #live: LogLine[] = [];
  #onLine: ((l: LogLine) => void) | undefined;
  #regs: Registration[] = [];
  #answers: { host: string; pid: number; lines: LogLine[]; cut: number }[] = [];
  #answered: (() => void) | undefined;

  private constructor(bus: Bus, path: string) {
    this.#bus = bus;
    this.#path = path;
  }

  /** Subscribe to the live lines of the tasks at and below `path`, and to answers. */
  static async open(bus: Bus, path: string): Promise<LogReader> {
    const r = new LogReader(bus, path);
    try {
      r.#regs.push(await bus.onAlert(logPattern(path), (_t, data) => r.#liveLine(data)));
      r.#regs.push(await bus.onAlert(logReplyTopic(r.#id), (_t, data) => r.#answer(data)));
    } catch (e) {
      await r.close();
      throw e;
    }
    return r;
  }

  #liveLine(data: unknown): void {
    const l = asLogLine(data);
    // Topic words map odd characters to "_": check the task itself.
    if (l === undefined || !inTreePath(l.task, this.#path)) return;
    if (this.#onLine) {
      // Only a line `history` returned can come twice.
      if (this.#seen.has(lineKey(l))) return;
      this.#onLine(l);
    } else {
      this.#live.push(l);
    }
  }

  #answer(data: unknown): void {
    const a = data as { host?: unknown; pid?: unknown; lines?: unknown; cut?: unknown } | null;
    if (
      a === null || typeof a !== "object" || typeof a.host !== "string" ||
      typeof a.pid !== "number" || !Array.isArray(a.lines)
    ) return;
    const lines: LogLine[] = [];
    for (const v of a.lines) {
      const l = asLogLine(v);
      if (l !== undefined && inTreePath(l.task, this.#path)) lines.push(l);
    }
    this.#answers.push({
      host: a.host,
      pid: a.pid,
      lines,
      cut: typeof a.cut === "number" ? a.cut : 0,
    });
    this.#answered?.();
  }

  /**
   * Ask every host for its kept lines (at most `max` per task), wait until
   * every expected host answered (and `settleMs` longer, for processes
   * nobody expected: one that ran a task before it moved) or `timeoutMs`
   * passed, and return the last `max` lines of all, merged by time.
   */
  async history(
    expected: Expected,
    max: number,
    timeoutMs: number,
    settleMs = DEFAULT_SETTLE_MS,
  ): Promise<History> {
    const query: LogQuery = { id: this.#id, path: this.#path, lines: max };
    const hosts = new Set(expected.hosts);
    const procs = new Set([...expected.processes].map((p) => `${p.host} pid ${p.pid}`));
    const missing = () => {
      const h = new Set(hosts);
      const p = new Set(procs);
      for (const a of this.#answers) {
        h.delete(a.host);
        p.delete(`${a.host} pid ${a.pid}`);
      }
      return [...h, ...p].sort();
    };
    await this.#bus.alert(LOG_QUERY_TOPIC, query);
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      await new Promise<void>((resolve) => {
        timer = setTimeout(resolve, timeoutMs);
        let settling = false;
        const check = () => {
          if (settling || missing().length > 0) return;
          settling = true;
          setTimeout(resolve, settleMs);
        };
        this.#answered = check;
        check();
      });
    } finally {
      clearTimeout(timer);
      this.#answered = undefined;
    }
    const byKey = new Map<string, LogLine>();
    let cut = 0;
    for (const a of this.#answers) {
      cut += a.cut;
      for (const l of a.lines) byKey.set(lineKey(l), l);
    }
    for (const l of this.#live) byKey.set(lineKey(l), l);
    const all = [...byKey.values()].sort(compareLines);
    for (const k of byKey.keys()) this.#seen.add(k);
    this.#live = [];
    return {
      lines: max < all.length ? all.slice(all.length - max) : all,
      missing: missing(),
      cut,
    };
  }

  /** Call `fn` with every later live line not returned by `history`. */
  follow(fn: (l: LogLine) => void): void {
    this.#onLine = fn;
    const pending = this.#live;
    this.#live = [];
    for (const l of pending) this.#liveLine(l);
  }

  /** End the subscriptions. Safe twice. */
  async close(): Promise<void> {
    const regs = this.#regs;
    this.#regs = [];
    await Promise.all(regs.map((r) => r.close()));
  }
}
