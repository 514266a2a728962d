/**
 * One line of a task's log as the hosts keep and publish it, the bus names
 * that carry task logs, and the check a reader applies to lines from the bus.
 *
 * The names (docs/amqp.md, "Task logs"):
 *
 * - `moat.log.<dotted task path>`: every line a task logs, as it is logged;
 * - `moat.logs.query`: a reader asks every host for the lines it keeps;
 * - `moat.logs.reply.<id>`: each host's answer to the query `id`.
 *
 * @module
 */

import type { LogLevel } from "../log.ts";
import { isLogLevel } from "../log.ts";

/** One log line of a task. */
export interface LogLine {
  /** The task path below `/task/` (`h1/porch`). */
  task: string;
  /** Its level. */
  level: LogLevel;
  /** When it was logged, Unix milliseconds. */
  time: number;
  /** The text, as the script wrote it (escaped only when shown). */
  message: string;
  /** The host name of the process that logged it. */
  host: string;
  /** That process's pid: with `host` it names the process. */
  pid: number;
  /** The line's number in that process (from 1): with `host` and `pid` it names the line. */
  seq: number;
}

/** The topic asking every host for the lines it keeps. */
export const LOG_QUERY_TOPIC = "moat.logs.query";

/** The longest message a host keeps or publishes, in UTF-16 units; longer ones are cut. */
export const MAX_LOG_MESSAGE = 4000;

/** A name as one word of an AMQP topic: letters, digits, "_" and "-". */
function word(s: string): string {
  return s.replace(/[^A-Za-z0-9_-]/g, "_") || "_";
}

/** The alert topic carrying a task's log lines: `moat.log.<dotted path>`. */
export function logTopic(path: string): string {
  return `moat.log.${path.split("/").map(word).join(".")}`;
}

/**
 * The pattern of the lines of the tasks at and below the tree path
 * `prefix` (every task for ""). Words that are not topic words are mapped
 * to "_", so a reader still checks `task` of what arrives (`inTreePath`).
 */
export function logPattern(prefix: string): string {
  const p = prefix.replace(/\/+$/, "");
  return p === "" ? "moat.log.#" : `${logTopic(p)}.#`;
}

/** The topic of the answers to the query `id`. */
export function logReplyTopic(id: string): string {
  return `moat.logs.reply.${word(id)}`;
}

/** Whether `task` is the tree path `prefix` or below it ("" holds every task). */
export function inTreePath(task: string, prefix: string): boolean {
  const p = prefix.replace(/\/+$/, "");
  return p === "" || task === p || task.startsWith(p + "/");
}

/**
 * `value` as a log line, or undefined when it is not one. Lines come from
 * any peer on the bus: every field is checked before it is shown.
 */
export function asLogLine(value: unknown): LogLine | undefined {
  if (value === null || typeof value !== "object") return undefined;
  const v = value as Record<string, unknown>;
  if (
    typeof v.task !== "string" || typeof v.level !== "string" || !isLogLevel(v.level) ||
    typeof v.time !== "number" || !Number.isFinite(v.time) || typeof v.message !== "string" ||
    typeof v.host !== "string" || typeof v.pid !== "number" || typeof v.seq !== "number"
  ) return undefined;
  return {
    task: v.task,
    level: v.level,
    time: v.time,
    message: v.message,
    host: v.host,
    pid: v.pid,
    seq: v.seq,
  };
}

/** The identity of a line (its process and number), for merging copies. */
export function lineKey(l: LogLine): string {
  return `${l.host}\u0000${l.pid}\u0000${l.seq}`;
}

/** Order lines by time, then by process and number. */
export function compareLines(a: LogLine, b: LogLine): number {
  return a.time - b.time || (a.host < b.host ? -1 : a.host > b.host ? 1 : 0) ||
    a.pid - b.pid || a.seq - b.seq;
}
