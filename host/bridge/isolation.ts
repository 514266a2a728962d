/**
 * What a task runner needs to run one script in isolation: `start()` a
 * script with a method table and a log sink, get a {@linkcode ScriptHandle},
 * and await `ended` (or `stop()` / `kill()` it). `SandboxPool` is the real
 * implementation; host/testing/fake_isolation.ts is the test double.
 *
 * @module
 */

import type { LogLevel, ScriptEvent, TimerFiring } from "../../sandbox/protocol.ts";
import type { MethodTable } from "./method_table.ts";
import type { SandboxLimits } from "./limits.ts";

/** How a script ended. */
export interface ScriptEnd {
  /** ok: normal end or stopped; error: the script threw; fail: the host ended it. */
  state: "ok" | "error" | "fail";
  /** Why it ended; "" after a normal end. */
  message: string;
  /** A stack trace or other detail; "" when none. */
  debug: string;
}

/** Everything needed to run one script. */
export interface StartOptions {
  /** The task's path (for messages and `CallContext.task`). */
  task: string;
  /** The script's name (for stack traces). */
  script: string;
  /** JavaScript: the body of an async function with one parameter, `moat`. */
  code: string;
  /** Events applied, in order, before the script's first line runs (e.g. `data`). */
  initial?: ScriptEvent[];
  /** The bridge methods the script's `moat` calls, one handler per method. */
  methods: MethodTable;
  /** Script output (`moat.logger`, `console`) and sandbox warnings. Must not throw. */
  onLog(level: LogLevel, message: string): void;
  /**
   * Host-side failures the script must not see (a handler's unexpected
   * exception). @default logs with `console.error`
   */
  onInternalError?(error: unknown, method: string): void;
  /** After `stop()`, SIGKILL if not ended within this many ms. @default 4000 */
  stopGraceMs?: number;
  /** Bound for all `on_stop` functions together, in ms. @default 3000 */
  onStopBudgetMs?: number;
  /** Calls the script may have in flight; more are refused. @default 1000 */
  maxCallsInFlight?: number;
  /** Sandbox warnings (stray output, refused messages) passed to `onLog`. @default 100 */
  maxWarnings?: number;
  /**
   * Resource and traffic limits of this script, over the pool's
   * (`calls_in_flight` yields to `maxCallsInFlight`). See docs/security.md.
   */
  limits?: Partial<SandboxLimits>;
  /**
   * The sandbox group (the task's `group` run setting): scripts of one
   * group share one sandbox process, one Worker each, and are one crash
   * domain (docs/security.md). Absent: a process of its own.
   */
  group?: string;
  /**
   * Asked before each `moat.thread` Worker starts: a message refuses it
   * (the script gets a `MoatError` with code `denied` and that message).
   * Absent, or `undefined` returned: threads may start.
   */
  threadRefusal?(): string | undefined;
  /**
   * Only for `moat script try`: run the script's own clock and timers on
   * virtual time (see {@linkcode VirtualTimeLink}). Absent: real time.
   */
  virtualTime?: VirtualTimeLink;
}

/** What the script's Worker said when it settled (see `SettledMessage` in sandbox/protocol.ts). */
export interface Settled {
  /** When its earliest pending timer is due, ms since the epoch; null: none. */
  nextMs: number | null;
}

/**
 * The virtual clock of a `moat script try` run as one script sees it: where
 * it starts, and how the script reports. Move it with
 * {@linkcode ScriptHandle.setVirtualTime}.
 */
export interface VirtualTimeLink {
  /** The virtual time at start, ms since the Unix epoch. */
  startMs: number;
  /** The script has settled since the last message the host sent it. Must not throw. */
  onSettled(settled: Settled): void;
  /** Timer callbacks the script ran (at the current virtual time). Must not throw. */
  onFired(fired: TimerFiring[]): void;
  /** The host sent the script a message (other than a heartbeat): it may have work again. */
  onSent(): void;
}

/** A running script. */
export interface ScriptHandle {
  /** Resolves once the script has ended and its process is gone. Never rejects. */
  readonly ended: Promise<ScriptEnd>;
  /** The sandbox process id. */
  readonly pid: number;
  /**
   * Ask the script to end: `moat.stopping` resolves, `on_stop` functions run,
   * then the process is killed. State as the script reported (`ok` after a
   * clean stop); `fail` if it has not ended after `stopGraceMs`.
   */
  stop(reason: string): Promise<ScriptEnd>;
  /** SIGKILL now. State `fail`, message `reason` (unless it had ended already). */
  kill(reason: string): Promise<ScriptEnd>;
  /** Deliver an event into the script (its data, monitors, alerts, RPC requests). */
  sendEvent(event: ScriptEvent): void;
  /**
   * Only on scripts started with `virtualTime`: the virtual time is now
   * `nowMs` (ms since the epoch); the script's due timers fire.
   */
  setVirtualTime?(nowMs: number): void;
}

/** Runs scripts in isolation. */
export interface Isolation {
  /** Start one script; resolves once it runs (its first line is about to run). */
  start(options: StartOptions): Promise<ScriptHandle>;
  /** Kill every script and spare process. Safe to call twice. */
  close(): Promise<void>;
}
