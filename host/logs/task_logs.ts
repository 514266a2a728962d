/**
 * The task logs of one host: a `Logger` that passes every line on to the
 * host's log and, for lines of a task, keeps them in the task's ring and
 * publishes them on the bus (`moat.log.<path>`). `serve` answers readers'
 * queries (`moat.logs.query`) with the kept lines.
 *
 * Publishing never blocks or slows a script: `log` only queues the line;
 * one pump sends the queue, and when the queue is full (the broker is slow
 * or away) new lines are dropped from publishing and counted — the ring and
 * the host's log still have them.
 *
 * @module
 */

import type { Logger, LogLevel } from "../log.ts";
import type { Bus, Registration } from "../bus/bus.ts";
import { TaskLogRing } from "./task_log_ring.ts";
import {
  LOG_QUERY_TOPIC,
  type LogLine,
  logReplyTopic,
  logTopic,
  MAX_LOG_MESSAGE,
} from "./log_line.ts";

const ORDER: Record<LogLevel, number> = { debug: 0, info: 1, warn: 2, error: 3 };

/** How many lines wait for the broker at most by default; more are dropped and counted. */
export const DEFAULT_PUBLISH_QUEUE = 1000;
/** The largest answer to a query, in bytes of JSON (under the bus's 1 MiB body limit). */
export const MAX_REPLY_BYTES = 768 * 1024;

/** Options of `TaskLogs`. */
export interface TaskLogsOptions {
  /** The host name of this process. */
  host: string;
  /** Where every line goes too (the host's log). */
  inner: Logger;
  /** The rings. @default new TaskLogRing() */
  ring?: TaskLogRing;
  /**
   * The lowest level kept and published (the host log's level).
   * @default "info"
   */
  level?: LogLevel;
  /** This process's id. @default Deno.pid */
  pid?: number;
  /** Unix milliseconds now. @default Date.now */
  now?: () => number;
  /**
   * How many lines wait to be published at most.
   * @default DEFAULT_PUBLISH_QUEUE
   */
  queue?: number;
}

/** A query for the kept lines, as a reader publishes it on `moat.logs.query`. */
export interface LogQuery {
  /** The reader's id: the answer goes to `moat.logs.reply.<id>`. */
  id: string;
  /** A tree path: the tasks at and below it ("" every task). */
  path: string;
  /** At most this many lines per task. */
  lines: number;
}

/** One host's answer to a query. */
export interface LogReply {
  host: string;
  pid: number;
  lines: LogLine[];
  /** Lines of the answer left out to keep it under the body limit (the oldest). */
  cut: number;
}

/** Task lines into rings and onto the bus; every line into the host's log. */
export class TaskLogs implements Logger {
  #o: TaskLogsOptions;
  #ring: TaskLogRing;
  #min: number;
  #pid: number;
  #now: () => number;
  #seq = 0;
  #bus: Bus | undefined;
  #reg: Registration | undefined;
  #queue: LogLine[] = [];
  #max: number;
  #pumping = false;
  #dropped = 0;
  #reported = 0;
  #closed = false;

  /** Task logs of the host `options.host`. */
  constructor(options: TaskLogsOptions) {
    this.#o = options;
    this.#ring = options.ring ?? new TaskLogRing();
    this.#min = ORDER[options.level ?? "info"];
    this.#pid = options.pid ?? Deno.pid;
    this.#now = options.now ?? Date.now;
    this.#max = options.queue ?? DEFAULT_PUBLISH_QUEUE;
  }

  /** The rings. */
  get ring(): TaskLogRing {
    return this.#ring;
  }

  /** Lines not published so far because the queue was full or the broker refused them. */
  get dropped(): number {
    return this.#dropped;
  }

  /** Log one message (see `Logger.log`); a task's line is also kept and published. */
  log(level: LogLevel, source: string, message: string): void {
    this.#o.inner.log(level, source, message);
    // Task paths are "<host>/<name…>"; the host's own sources ("host",
    // "amqp") have no "/".
    if (ORDER[level] < this.#min || !source.includes("/")) return;
    const line: LogLine = {
      task: source,
      level,
      time: this.#now(),
      message: message.length > MAX_LOG_MESSAGE ? message.slice(0, MAX_LOG_MESSAGE) + "…" : message,
      host: this.#o.host,
      pid: this.#pid,
      seq: ++this.#seq,
    };
    this.#ring.add(line);
    if (this.#bus === undefined || this.#closed) return;
    // Bounded: a slow broker costs lines on the bus, never a script's time.
    if (this.#queue.length >= this.#max) {
      this.#dropped++;
      return;
    }
    this.#queue.push(line);
    if (!this.#pumping) void this.#pump();
  }

  /** Publish lines on `bus` and answer queries there; resolves once subscribed. */
  async serve(bus: Bus): Promise<void> {
    this.#bus = bus;
    this.#reg = await bus.onAlert(LOG_QUERY_TOPIC, (_topic, data) => this.#answer(bus, data));
  }

  async #answer(bus: Bus, data: unknown): Promise<void> {
    const q = data as Partial<LogQuery> | null;
    // Any peer may send a query: check it before use.
    if (
      q === null || typeof q !== "object" || typeof q.id !== "string" || q.id === "" ||
      typeof q.path !== "string"
    ) return;
    const max = typeof q.lines === "number" && q.lines >= 1 ? q.lines : Infinity;
    let lines = this.#ring.lines(q.path, max);
    let cut = 0;
    let size = JSON.stringify(lines).length * 3;
    while (size > MAX_REPLY_BYTES && lines.length > 0) {
      // Leave out the oldest half of what is over, then measure again.
      const n = Math.max(1, Math.ceil(lines.length * (1 - MAX_REPLY_BYTES / size)));
      lines = [...lines].sort((a, b) => a.time - b.time).slice(n);
      cut += n;
      size = JSON.stringify(lines).length * 3;
    }
    const reply: LogReply = { host: this.#o.host, pid: this.#pid, lines, cut };
    await bus.alert(logReplyTopic(q.id), reply).catch((e) =>
      this.#o.inner.log("warn", "host", `cannot answer a task log query: ${(e as Error).message}`)
    );
  }

  async #pump(): Promise<void> {
    this.#pumping = true;
    try {
      while (this.#queue.length > 0 && !this.#closed) {
        const line = this.#queue.shift()!;
        const bus = this.#bus!;
        if (!bus.connected) {
          this.#dropped += 1 + this.#queue.length;
          this.#queue.length = 0;
          break;
        }
        try {
          await bus.alert(logTopic(line.task), line);
        } catch {
          this.#dropped++;
          continue;
        }
        if (this.#dropped > this.#reported) {
          // Said once the broker takes lines again, not once per lost line.
          this.#o.inner.log(
            "warn",
            "host",
            `task logs: ${this.#dropped - this.#reported} lines were not published ` +
              `(the broker was slow or away; ${this.#dropped} in all)`,
          );
          this.#reported = this.#dropped;
        }
      }
    } finally {
      this.#pumping = false;
    }
  }

  /** Stop publishing and answering; lines still queued are dropped. Safe twice. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#queue.length = 0;
    await this.#reg?.close();
  }
}
