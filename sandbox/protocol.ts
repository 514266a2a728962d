/**
 * The wire protocol between the host, a sandbox process and the script's
 * Worker inside it. This file imports nothing and holds only types and a few
 * constants, so that both sides (and `deno check`) share one definition.
 *
 * Framing: host ⇄ sandbox process is one JSON object per line (UTF-8, `\n`)
 * over the process's stdin/stdout. Sandbox process ⇄ Worker is `postMessage`
 * carrying the same JSON text as a string; the sandbox process is a
 * validating relay and adds no messages of its own except `ready` (once its
 * Worker is up) and `ended` (when the Worker dies of an error it could not
 * handle itself).
 *
 * Adding a bridge method is: one entry in {@linkcode Methods} here, one
 * argument validator in `host/bridge/validate.ts` and one handler in the
 * host's method table. `deno check` fails until all three exist.
 *
 * @module
 */

/** Bumped on any incompatible change; `ready` carries it and the host checks it. */
export const PROTOCOL_VERSION = 1;

/** Longest accepted line (= message), in bytes of UTF-8 including the `\n`. */
export const MAX_LINE_BYTES = 1024 * 1024;

/** Log messages longer than this (in UTF-16 code units) are cut. */
export const MAX_LOG_CHARS = 64 * 1024;

/** `ended.message` / `ended.debug` longer than this are cut. */
export const MAX_END_TEXT_CHARS = 16 * 1024;

/** A JSON value, as it travels on the wire. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** Levels of `moat.logger` and of the script's `console`. */
export type LogLevel = "debug" | "info" | "warn" | "error";

/** Every valid `LogLevel`, for validators. */
export const LOG_LEVELS: readonly LogLevel[] = ["debug", "info", "warn", "error"];

/**
 * Every code an error of a host call can carry: what the host answers and
 * what the Worker itself rejects with. Written out again as `MoatErrorCode`
 * in types/moat.d.ts (which stands alone); `sandbox/protocol_test.ts` checks
 * that the two lists are equal.
 */
export const ERROR_CODES = [
  // The call itself.
  "bad_args",
  "bad_message",
  "unknown_method",
  "cancelled",
  "ended",
  "internal",
  "unavailable",
  "unsupported",
  "timeout",
  // What it names.
  "bad_key",
  "bad_name",
  "bad_path",
  "bad_type",
  "no_such_key",
  "not_running",
  "time_spec",
  "load_cycle",
  "load_failed",
  "rpc_error",
  "no_server",
  // What one script may make the installation spend (docs/security.md).
  "quota",
  "limit",
  "too_large",
  "reserved",
  "taken",
  // Outside the script's capability manifest (host/capabilities/manifest.ts).
  "denied",
] as const;

/** A machine-readable error code: one of {@linkcode ERROR_CODES}. */
export type ErrorCode = typeof ERROR_CODES[number];

/** An error as it crosses the bridge: a code and a message, never a stack. */
export interface ErrorInfo {
  /** Machine-readable, e.g. "bad_args", "unknown_method", "cancelled", "internal". */
  code: ErrorCode;
  /** Human-readable, safe to show to the script author. */
  message: string;
}

// ---------------------------------------------------------------------------
// The closed method table

/** A time specification: `"12 hr"` or `["12", "hr", 10, "min"]` (see times.md). */
export type TimeSpec = string | (string | number)[];

/** Options of `moat.time_at` / `moat.wait` / `moat.run_at`. */
export interface TimeOptions {
  /** Base time, Unix seconds. Default: now. */
  now?: number;
  /** `true`: match now if it matches; `false`: until it stops matching; `null`: next start. */
  current?: boolean | null;
  /**
   * The schedule's id, unique per task: its completed firings are recorded
   * in etcd (docs/time.md, "Catch-up").
   */
  id?: string;
  /** Seconds: a firing due this long ago and not recorded as done fires at once, late. */
  catch_up?: number;
}

/** One firing of a `run_at` schedule, as its callback receives it. */
export interface Firing {
  /** The Unix time (seconds) the firing was due. */
  due: number;
  /** True for a catch-up: a firing due before the call, not yet recorded as done. */
  late: boolean;
}

/**
 * Every method a script may call on the host, with its argument tuple and
 * result type. Closed: the host's method table must have exactly these keys.
 */
export interface Methods {
  /** The Unix time (seconds) at which `spec` next matches. */
  time_at: { args: [spec: TimeSpec, options: TimeOptions]; result: number };
  /** Resolves at the time `time_at` would return; the result is that time. */
  wait: { args: [spec: TimeSpec, options: TimeOptions]; result: number };
  /**
   * `moat.run_at`: resolves like `wait`, with the firing; a firing of a
   * schedule with an id is recorded only once `fired` reports that its
   * callback returned.
   */
  run_at: { args: [spec: TimeSpec, options: TimeOptions]; result: Firing };
  /** The `run_at` callback of schedule `id` for the firing due at `due` returned. */
  fired: { args: [id: string, due: number]; result: null };
  /** Write an existing key of the task's `data/` (type-checked by the host). */
  data_set: { args: [key: string, value: Json]; result: null };
  /** Load the node at a root-relative path; `null` when it does not exist. */
  tree_lookup: { args: [path: string]; result: NodeSnapshot | null };
  /** Start delivering `tree` events for keys below a node the script holds. */
  tree_watch: { args: [path: string]; result: null };
  /** Record (or count again) an error condition of the task under `tag`. */
  set_error: { args: [tag: string, message: string]; result: null };
  /** Clear the error condition `tag` of the task. */
  clear_error: { args: [tag: string]; result: null };
  /** The JavaScript of another script, for `moat.load`. */
  load: { args: [name: string]; result: { script: string; code: string } };
  /** Serve an RPC name; requests arrive as `rpc` events. Returns the registration id. */
  rpc_serve: { args: [name: string]; result: number };
  /** Answer the RPC request `call` of an `rpc` event. */
  rpc_reply: { args: [call: number, ok: boolean, value: Json]; result: null };
  /** Listen to alerts matching a pattern; they arrive as `alert` events. */
  alert_listen: { args: [pattern: string]; result: number };
  /** Call an RPC (timeout in seconds); the result is the server's answer. */
  call: { args: [name: string, args: Json, timeout: number]; result: Json };
  /** Publish an alert. */
  alert: { args: [topic: string, data: Json]; result: null };
  /**
   * The script's debug object (`moat.debug_obj`): when registered, and as
   * it is now in answer to a `debug` event.
   */
  debug_obj: { args: [value: Json]; result: null };
}

/** Payload of the `rpc` event: a request for a handler the script registered. */
export interface RpcEvent {
  /** The registration id `rpc_serve` returned. */
  id: number;
  /** Answer with `rpc_reply(call, …)`. */
  call: number;
  /** The RPC name called. */
  name: string;
  /** The caller's arguments. */
  args: Json;
}

/** Payload of the `alert` event. */
export interface AlertEvent {
  /** The registration id `alert_listen` returned. */
  id: number;
  /** The alert's topic. */
  topic: string;
  /** Its payload. */
  data: Json;
}

/**
 * A node of the MoaT tree as the sandbox receives it: its root-relative
 * path and every value at or below it, by path relative to the node
 * ("" is the node's own value). Values are decoded (JSON, else text).
 */
export interface NodeSnapshot {
  /** The node's path, as asked for. */
  path: string;
  /** Every value below the node, by its path relative to the node. */
  entries: { [rel: string]: Json };
}

/** Payload of the `data` event: the task's whole `moat.data` view. */
export interface DataEvent {
  /** Every key with its decoded value and declared type (null: untyped). */
  values: { [key: string]: { value: Json; type: string | null } };
  /** For `str/ref` keys: the referenced node, or null when it does not exist. */
  refs: { [key: string]: NodeSnapshot | null };
}

/** Payload of the `debug` event. */
export interface DebugEvent {
  /** Counts the host's requests (for traces; the answer is any `debug_obj` call). */
  request: number;
}

/** Payload of the `tree` event: changes below watched nodes, one etcd revision. */
export interface TreeEvent {
  /** The etcd revision of the changes. */
  revision: number;
  /** Root-relative keys with their new value, or null when deleted. */
  changes: { key: string; value: Json | null }[];
}

/** Name of a bridge method. */
export type MethodName = keyof Methods;

/**
 * Every event the host delivers into the script, with its payload. Closed
 * like {@linkcode Methods}: an event without a payload type here cannot be
 * sent, and the Worker's dispatch needs no cast.
 */
export interface Events {
  /** The task's whole `moat.data` view (at start and after each change). */
  data: DataEvent;
  /** Changes below the nodes the script monitors. */
  tree: TreeEvent;
  /** A request for an RPC name the script serves. */
  rpc: RpcEvent;
  /** An alert matching a pattern the script listens to. */
  alert: AlertEvent;
  /** `moat debug` asks for the debug object as it is now (a `debug_obj` call answers). */
  debug: DebugEvent;
}

/** Name of an event. */
export type EventName = keyof Events;

/** One event `E` with its payload. */
export interface ScriptEventOf<E extends EventName> {
  /** Which event: the key of {@linkcode Events}. */
  event: E;
  /** Its payload. */
  data: Events[E];
}

/** Any one event with its payload; checking `event` narrows `data`. */
export type ScriptEvent = { [E in EventName]: ScriptEventOf<E> }[EventName];

// ---------------------------------------------------------------------------
// host → sandbox

/** Per-script settings sent with `start`. */
export interface ScriptOptions {
  /** Upper bound for running all `on_stop` functions together, in ms. */
  onStopBudgetMs: number;
  /** Most calls the script may have in flight; more throw at the call site. */
  maxCallsInFlight: number;
  /**
   * Only under `moat script try`: the script's own clock (`Date`,
   * `performance.now()`) and timers follow the host's virtual clock, which
   * moves only by {@linkcode ClockMessage}s; the Worker says when it has
   * settled ({@linkcode SettledMessage}). Absent, the script runs on real
   * time and the Worker installs none of this.
   */
  virtualTime?: VirtualTimeOptions;
}

/** The virtual clock of a `moat script try` run, as the Worker starts it. */
export interface VirtualTimeOptions {
  /** The virtual time at start, ms since the Unix epoch. */
  startMs: number;
}

/** Run this script in the (already created) Worker. Sent once. */
export interface StartMessage {
  kind: "start";
  /** The task's path, for messages. */
  task: string;
  /** The script's name, for messages and stack traces. */
  script: string;
  /** JavaScript: the body of an async function with one parameter, `moat`. */
  code: string;
  options: ScriptOptions;
  /**
   * Events to apply, in order, before the script's first line runs (e.g.
   * `data`), so that synchronous reads see them.
   */
  initial?: ScriptEvent[];
}

/** A successful answer to `call` number `id`. */
export interface ReplyOk {
  kind: "reply";
  id: number;
  ok: true;
  value: Json;
}

/** A failed answer to `call` number `id`. */
export interface ReplyError {
  kind: "reply";
  id: number;
  ok: false;
  error: ErrorInfo;
}

/** The one answer to a `call`. */
export type ReplyMessage = ReplyOk | ReplyError;

/** End the script: resolve `moat.stopping`, run `on_stop`, send `ended`. */
export interface StopMessage {
  kind: "stop";
  reason: string;
}

/**
 * Only under `moat script try` (see {@linkcode ScriptOptions.virtualTime}):
 * the virtual time is now `nowMs`; the Worker fires its timers due by then,
 * in time order.
 */
export interface ClockMessage {
  kind: "clock";
  /** ms since the Unix epoch; never less than the previous one. */
  nowMs: number;
}

/**
 * The answer to {@linkcode ThreadsMessage} with `need`: a thread Worker may
 * start now, or, with `denied`, it may not start at all (the script's
 * capability manifest says `"thread": false`; the message says so).
 */
export interface ThreadRoomMessage {
  kind: "thread_room";
  denied?: string;
}

/** Address space the host allows for starting one thread Worker, bytes. */
export const THREAD_ROOM_BYTES = 768 * 2 ** 20;

/** One event `E` delivered into the script. */
export interface EventMessageOf<E extends EventName> extends ScriptEventOf<E> {
  /** Always `event`. */
  kind: "event";
}

/**
 * Something delivered into the script (monitor changes, alerts, RPC
 * requests, …): one member per entry of {@linkcode Events}, so that a check
 * of `event` narrows `data`.
 */
export type EventMessage = { [E in EventName]: EventMessageOf<E> }[EventName];

/** Everything the host sends to a sandbox. */
export type HostMessage =
  | StartMessage
  | ReplyMessage
  | StopMessage
  | EventMessage
  | ClockMessage
  | ThreadRoomMessage
  | PingMessage;

// ---------------------------------------------------------------------------
// sandbox → host

/** The sandbox process and its Worker are up and waiting for `start`. */
export interface ReadyMessage {
  kind: "ready";
  version: number;
}

/** Call a host method. The host answers with exactly one `reply`. */
export interface CallMessage<M extends MethodName = MethodName> {
  kind: "call";
  /** Unique among the script's calls in flight; a safe integer ≥ 0. */
  id: number;
  method: M;
  args: Methods[M]["args"];
}

/** The script no longer wants the answer to call `id` (e.g. `run_at(…).cancel()`). */
export interface CancelMessage {
  kind: "cancel";
  id: number;
}

/** A line of script output (`moat.logger`, `console`). */
export interface LogMessage {
  kind: "log";
  level: LogLevel;
  message: string;
}

/** How the script itself ended; sent exactly once, after `on_stop` ran. */
export interface EndedMessage {
  kind: "ended";
  state: "ok" | "error";
  message: string;
  /** A stack trace or other detail; "" when none. */
  debug: string;
}

/** Timer callbacks of one kind and delay that ran at one virtual time. */
export interface TimerFiring {
  /** `setInterval` (true) or `setTimeout` (false). */
  repeat: boolean;
  /** The delay the timer was set with, ms. */
  delayMs: number;
  /** How many callbacks of this kind and delay ran. */
  count: number;
}

/**
 * Only under `moat script try`: the script has settled. After the last host
 * message it received (a `seen`-th one, `ping`s not counted) and every timer
 * then due, the Worker let its microtask queue drain in a macrotask turn:
 * nothing more happens in the script until a host message or a virtual
 * timer. The host moves its virtual clock only while the latest `settled`
 * is current (its `seen` equals the number of messages the host sent).
 */
export interface SettledMessage {
  kind: "settled";
  /** How many host messages other than `ping` the Worker had received. */
  seen: number;
  /** When the Worker's earliest pending timer is due, ms since the epoch; null: none. */
  nextMs: number | null;
  /** The timer callbacks run since the previous `settled` (all at the current virtual time). */
  fired: TimerFiring[];
  /**
   * The script is ending (its `ended` follows): this reports `fired` only,
   * and the clock must not move for it.
   */
  ending: boolean;
}

/**
 * The sandbox process is about to start a `moat.thread` Worker (`need`:
 * the host answers with {@linkcode ThreadRoomMessage} once the process may
 * map room for it), or its threads changed (`need` false: no answer). Each
 * new V8 isolate reserves about 512 MiB of address space for its code,
 * which the process's data-size rlimit (docs/security.md) must allow; the
 * host raises the soft limit for the start only and sets it back to what is
 * mapped plus `memory` afterwards.
 */
export interface ThreadsMessage {
  kind: "threads";
  need: boolean;
}

/** Most entries in {@linkcode SettledMessage.fired}. */
export const MAX_TIMER_FIRINGS = 100;

/** Everything a sandbox sends to the host. All of it is untrusted. */
export type SandboxMessage =
  | ReadyMessage
  | CallMessage
  | CancelMessage
  | LogMessage
  | EndedMessage
  | SettledMessage
  | ThreadsMessage
  | PongMessage;

/** The `kind`s of {@linkcode SandboxMessage}, for validators. */
export const SANDBOX_KINDS: readonly SandboxMessage["kind"][] = [
  "ready",
  "call",
  "cancel",
  "log",
  "ended",
  "settled",
  "threads",
  "pong",
];

// ---------------------------------------------------------------------------
// Threads (`moat.thread`): inside the sandbox process only. These messages
// never reach the host; they travel between the script's Worker, the
// sandbox process and the thread Workers as structured clones, not as JSON
// text (arguments and results are structured-cloned).

/**
 * Most `moat.thread` functions of one script that run at once. Each is a
 * Worker of its own in the script's sandbox process (about 9 MiB of RSS,
 * and its own V8 heap of the pool's `heapMb`), counted against the
 * script's `memory` and `cpu` limits like the script itself.
 */
export const MAX_THREADS = 4;

/** Most `moat.thread` calls waiting for a free thread; more are refused. */
export const MAX_THREADS_WAITING = 1000;

/** Script Worker → sandbox process: run `source` (a function's text) in a thread. */
export interface ThreadStartMessage {
  kind: "thread_start";
  /** Unique among the script's threads. */
  id: number;
  /** The script's name, for stack traces. */
  script: string;
  /** The function's source text, checked by the Worker to be part of the script's code. */
  source: string;
  /** Its arguments. */
  args: unknown[];
}

/** Sandbox process → script Worker: thread `id` is done; `value` or `error` is cloned. */
export type ThreadDoneMessage =
  | { kind: "thread_done"; id: number; ok: true; value: unknown }
  | {
    kind: "thread_done";
    id: number;
    ok: false;
    error: unknown;
    /** Set when the host refused the thread: the script gets a `MoatError` of it. */
    moat?: ErrorInfo;
  };

/** Sandbox process → thread Worker: what to run. Its first and only message. */
export interface ThreadRunMessage {
  kind: "thread_run";
  script: string;
  source: string;
  args: unknown[];
}

/**
 * Thread Worker → sandbox process: the function's result, the thread's
 * last word. (Its `console` output travels as JSON text, a {@linkcode LogMessage}.)
 */
export type ThreadResultMessage =
  | { kind: "thread_result"; ok: true; value: unknown }
  | { kind: "thread_result"; ok: false; error: unknown };

// ---------------------------------------------------------------------------
// Heartbeat (see docs/security.md)

/**
 * host → sandbox: "are you there?". The script's Worker answers each ping
 * from its message loop, so a Worker that spins or blocks (`Atomics.wait`)
 * stops answering even when it burns no CPU.
 */
export interface PingMessage {
  kind: "ping";
  id: number;
}

/** sandbox → host: the answer to `ping` number `id`. */
export interface PongMessage {
  kind: "pong";
  id: number;
}
