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
  // What one script may make the installation spend (docs/security.md).
  "quota",
  "limit",
  "too_large",
  "reserved",
  "taken",
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
  /** Register the script's debug object (`moat.debug_obj`). */
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

/** Everything a sandbox sends to the host. All of it is untrusted. */
export type SandboxMessage =
  | ReadyMessage
  | CallMessage
  | CancelMessage
  | LogMessage
  | EndedMessage
  | PongMessage;

/** The `kind`s of {@linkcode SandboxMessage}, for validators. */
export const SANDBOX_KINDS: readonly SandboxMessage["kind"][] = [
  "ready",
  "call",
  "cancel",
  "log",
  "ended",
  "pong",
];

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
