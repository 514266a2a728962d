/**
 * The `Bus` interface: RPC calls and alerts between scripts (and any other
 * MoaT peer), after MoaT's AMQP conventions (`docs/amqp.md`).
 *
 * Two implementations pass one contract suite (`bus_contract.ts`): `AmqpBus`
 * (RabbitMQ, via npm:amqplib) and `LocalBus` (the embedded default, in one
 * process). This module also holds what both share: the error classes, name
 * and pattern validation, topic matching with RabbitMQ's semantics, and the
 * JSON body codec with its size limit.
 *
 * @module
 */

/** A registration made by `serve` or `onAlert`; `close()` ends it (safe twice). */
export interface Registration {
  /** Stop delivery to this handler and remove what the registration made. */
  close(): Promise<void>;
}

/** What an RPC handler learns about the call besides its arguments. */
export interface RpcInfo {
  /** The RPC name that was called. */
  name: string;
  /**
   * Aborted when the bus gives up on this call (handler timeout, bus
   * closed); a handler that can stop early should listen to it.
   */
  signal: AbortSignal;
}

/** Serves one RPC name: gets the decoded arguments, returns the result. */
export type RpcHandler = (args: unknown, info: RpcInfo) => Promise<unknown>;

/** Receives alerts whose topic matches the registered pattern. */
export type AlertHandler = (topic: string, data: unknown) => void | Promise<void>;

/** Options of `Bus.call`. */
export interface CallOptions {
  /**
   * How long to wait for the reply, in milliseconds.
   * @default 15000
   */
  timeoutMs?: number;
}

/** Options of `Bus.serve`. */
export interface ServeOptions {
  /**
   * How many requests this registration handles at once; more wait in the
   * shared queue (and go to other servers of the name).
   * @default the bus's `maxInFlight`
   */
  maxInFlight?: number;
}

/** Options of `Bus.group`. */
export interface GroupOptions {
  /**
   * The most broker channels the group's registrations share (AMQP: each
   * channel of the bus's one connection; the embedded bus has none and only
   * checks the number).
   * @default 2
   */
  channels?: number;
}

/**
 * Registrations that belong together (those of one script run): they share
 * at most `channels` broker channels, and `close()` ends all of them at
 * once. A registration's own `close()` ends just that one.
 */
export interface BusGroup {
  /** `Bus.serve`, on the group's channels. */
  serve(name: string, handler: RpcHandler, options?: ServeOptions): Promise<Registration>;
  /** `Bus.onAlert`, on the group's channels. */
  onAlert(pattern: string, handler: AlertHandler): Promise<Registration>;
  /** Registrations of the group that are open now. */
  readonly size: number;
  /**
   * End every registration of the group; later `serve` and `onAlert`
   * calls on it reject with `BusUnavailableError`. Safe twice.
   */
  close(): Promise<void>;
}

/** How many channels a group shares by default. */
export const DEFAULT_GROUP_CHANNELS = 2;

/** Connection state of a bus, as reported to `Bus.onState` listeners. */
export type BusState = "connected" | "disconnected" | "closed";

/** RPC calls and alerts. Every method fails with a clear error rather than hang. */
export interface Bus {
  /**
   * Serve an RPC name. Several servers of one name share the load (one
   * shared queue per name). The returned registration's `close()` removes
   * the consumer (and the queue when no one else serves the name).
   * Throws `RangeError` for a bad name.
   */
  serve(name: string, handler: RpcHandler, options?: ServeOptions): Promise<Registration>;
  /**
   * Call an RPC and resolve with its result. Rejects with `RpcTimeoutError`
   * after `timeoutMs`, `RpcRemoteError` (carrying `{s, m, c}`) if the handler
   * threw, `BusUnavailableError` when not connected, `RangeError` for a bad
   * name or arguments over the size limit, `TypeError` for arguments that
   * are not JSON. Never hangs.
   */
  call(name: string, args: unknown, options?: CallOptions): Promise<unknown>;
  /**
   * Subscribe to alerts whose topic matches `pattern` (dot-separated words;
   * `*` matches one word, `#` zero or more). Every subscriber gets its own
   * copy; one subscriber's alerts reach its handler one at a time, in order.
   */
  onAlert(pattern: string, handler: AlertHandler): Promise<Registration>;
  /** Publish an alert to every subscriber whose pattern matches `topic`. */
  alert(topic: string, data: unknown): Promise<void>;
  /**
   * A group of registrations sharing at most `options.channels` broker
   * channels (see `BusGroup`). Throws `RangeError` for a channel count that
   * is not a whole number ≥ 1.
   */
  group(options?: GroupOptions): BusGroup;
  /** Whether calls and alerts can be sent right now. */
  readonly connected: boolean;
  /** Listen to connection state changes; returns a function that stops listening. */
  onState(listener: (state: BusState) => void): () => void;
  /** Fail calls in flight, end every registration and disconnect. Safe twice. */
  close(): Promise<void>;
}

/** The base class of every bus failure a caller may want to catch. */
export class BusError extends Error {
  /** Always `BusError`. */
  override name = "BusError";
  /** Make the error; `options.cause` is the underlying error. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
  }
}

/**
 * The bus refused a registration because a bus-wide limit is reached (e.g.
 * the AMQP channels one connection may open); nothing was registered.
 */
export class BusLimitError extends BusError {
  override name = "BusLimitError";
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
  }
}

/** The bus is not connected (or closed): nothing was sent. */
export class BusUnavailableError extends BusError {
  /** Always `BusUnavailableError`. */
  override name = "BusUnavailableError";
  /** Make the error; `options.cause` is the underlying error. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
  }
}

/** No reply to an RPC call arrived in time. */
export class RpcTimeoutError extends BusError {
  /** Always `RpcTimeoutError`. */
  override name = "RpcTimeoutError";
  /** The RPC name called. */
  readonly rpc: string;
  /** The timeout that passed, in milliseconds. */
  readonly timeoutMs: number;
  /** No reply from `rpc` came within `timeoutMs`. */
  constructor(rpc: string, timeoutMs: number) {
    super(`no reply from "${rpc}" within ${timeoutMs} ms`);
    this.rpc = rpc;
    this.timeoutMs = timeoutMs;
  }
}

/** The error a server reports, as carried in the reply header `error`. */
export interface RemoteErrorInfo {
  /** Status, e.g. "error" or "fail". */
  s: string;
  /** Message. */
  m: string;
  /** Class name of the error, e.g. "TypeError". */
  c: string;
}

/**
 * The RPC handler failed, or its reply could not be read; `remote` says
 * how (for a bad reply: `c` is `SyntaxError`, `RangeError` or `TypeError`
 * and `m` the reason).
 */
export class RpcRemoteError extends BusError {
  /** `RpcRemoteError` (or a subclass's name). */
  override name = "RpcRemoteError";
  /** The RPC name called. */
  readonly rpc: string;
  /** The error as the server reported it. */
  readonly remote: RemoteErrorInfo;
  /** The machine-readable code a script sees: `rpc_error`, or `no_server` for `RpcNoServerError`. */
  readonly code: "rpc_error" | "no_server" = "rpc_error";
  /** `rpc`'s handler failed as `remote` says. */
  constructor(rpc: string, remote: RemoteErrorInfo, options?: ErrorOptions) {
    super(`${rpc} failed: ${remote.m} (${remote.c})`, options);
    this.rpc = rpc;
    this.remote = remote;
  }
}

/**
 * Nobody took the request: no queue was bound to its name (the `rpc`
 * exchange sent it to its alternate exchange `dead`), or it waited in its
 * queue until the queue's TTL dead-lettered it, or a qbroker peer's
 * dead-letter handler reported it (`DeadLettered`). `remote.c` is `no_server`.
 */
export class RpcNoServerError extends RpcRemoteError {
  /** Always `RpcNoServerError`. */
  override name = "RpcNoServerError";
  override readonly code = "no_server";
  /** Nobody took the request to `rpc`; `why` says how that was found. */
  constructor(rpc: string, why: string) {
    super(rpc, { s: "error", m: why, c: "no_server" });
  }
}

/** The largest message body either backend sends or accepts by default: 1 MiB. */
export const DEFAULT_MAX_MESSAGE_BYTES = 1024 * 1024;
/** How long a call waits for its reply by default, in ms. */
export const DEFAULT_CALL_TIMEOUT_MS = 15_000;
/** How long a server lets one handler run by default, in ms. */
export const DEFAULT_HANDLER_TIMEOUT_MS = 60_000;
/** How many requests one `serve` registration handles at once by default. */
export const DEFAULT_MAX_IN_FLIGHT = 16;
/** AMQP's limit on routing keys, in bytes. */
export const MAX_NAME_BYTES = 255;

const WORD = /^[A-Za-z0-9_-]+$/;
const ENCODER = new TextEncoder();
const DECODER = new TextDecoder("utf-8", { fatal: true, ignoreBOM: false });
const DECODER_LOOSE = new TextDecoder("utf-8");

function checkWords(kind: string, name: unknown, wild: boolean): string {
  if (typeof name !== "string") {
    throw new TypeError(`${kind} must be a string, not ${typeof name}`);
  }
  if (name === "") throw new RangeError(`${kind} must not be empty`);
  // Words are ASCII, so a valid name's length is its byte count.
  if (name.length > MAX_NAME_BYTES) {
    throw new RangeError(
      `${kind} ${JSON.stringify(name.slice(0, 40))}… is longer than ${MAX_NAME_BYTES} bytes`,
    );
  }
  for (const word of name.split(".")) {
    if (WORD.test(word) || (wild && (word === "*" || word === "#"))) continue;
    const why = word === ""
      ? "has an empty word"
      : `has the word ${JSON.stringify(word)}; words are letters, digits, "_" and "-"${
        wild ? ', or "*" or "#"' : ""
      }`;
    throw new RangeError(`${kind} ${JSON.stringify(name)} ${why}`);
  }
  return name;
}

/** Check an RPC name (dot-separated words of `[A-Za-z0-9_-]`); throws `RangeError`. */
export function checkRpcName(name: string): string {
  return checkWords("RPC name", name, false);
}

/** Check an alert topic (dot-separated words of `[A-Za-z0-9_-]`); throws `RangeError`. */
export function checkTopic(topic: string): string {
  return checkWords("alert topic", topic, false);
}

/** Check an alert pattern (words as in topics, or `*` or `#`); throws `RangeError`. */
export function checkPattern(pattern: string): string {
  return checkWords("alert pattern", pattern, true);
}

/**
 * Whether `topic` matches `pattern` the way a RabbitMQ topic exchange
 * decides it: `*` matches exactly one word, `#` zero or more words.
 */
export function topicMatches(pattern: string, topic: string): boolean {
  const p = pattern.split(".");
  const t = topic.split(".");
  // seen[i][j]: pattern words from i matched against topic words from j failed before.
  const failed = new Set<number>();
  const match = (i: number, j: number): boolean => {
    const key = i * (t.length + 1) + j;
    if (failed.has(key)) return false;
    let ok: boolean;
    if (i === p.length) ok = j === t.length;
    else if (p[i] === "#") ok = match(i + 1, j) || (j < t.length && match(i, j + 1));
    else ok = j < t.length && (p[i] === "*" || p[i] === t[j]) && match(i + 1, j + 1);
    if (!ok) failed.add(key);
    return ok;
  };
  return match(0, 0);
}

/** The JSON text of `value` as UTF-8 bytes (`undefined` becomes `null`); throws `TypeError`. */
export function encodeBody(value: unknown, what: string): Uint8Array {
  let text: string | undefined;
  try {
    text = JSON.stringify(value ?? null);
  } catch (e) {
    throw new TypeError(`${what} cannot be sent as JSON: ${(e as Error).message}`, { cause: e });
  }
  if (text === undefined) throw new TypeError(`${what} cannot be sent as JSON`);
  return ENCODER.encode(text);
}

/** Throw `RangeError` when a body of `size` bytes exceeds `limit`. */
export function checkSize(size: number, limit: number, what: string): void {
  if (size > limit) {
    throw new RangeError(`${what} is ${size} bytes, over the limit of ${limit} bytes`);
  }
}

/**
 * Check a call before it is sent: its RPC name, its timeout and its
 * arguments (JSON of at most `maxBytes`). Returns the request body and the
 * timeout; throws what `Bus.call` rejects with.
 */
export function prepareCall(
  name: string,
  args: unknown,
  options: CallOptions,
  maxBytes: number,
): { body: Uint8Array; timeoutMs: number } {
  checkRpcName(name);
  const timeoutMs = checkPositive(options.timeoutMs ?? DEFAULT_CALL_TIMEOUT_MS, "timeoutMs");
  const body = encodeBody(args, `the arguments of "${name}"`);
  checkSize(body.length, maxBytes, `the request to "${name}"`);
  return { body, timeoutMs };
}

/** Parse a JSON body; throws `SyntaxError` naming `what`. */
export function decodeBody(bytes: Uint8Array, what: string): unknown {
  try {
    return JSON.parse(DECODER.decode(bytes));
  } catch (e) {
    throw new SyntaxError(`${what} is not valid JSON: ${(e as Error).message}`, { cause: e });
  }
}

/** The `{s, m, c}` of an error thrown by a handler (no stack: it crosses to other peers). */
export function remoteErrorOf(e: unknown): RemoteErrorInfo {
  if (e instanceof Error) {
    return boundedError({ s: "error", m: e.message, c: e.name || e.constructor.name || "Error" });
  }
  let m: string;
  try {
    m = String(e);
  } catch {
    m = "error";
  }
  return boundedError({ s: "error", m, c: "Error" });
}

/** Check a channel count of `Bus.group` (a whole number ≥ 1); throws `RangeError`. */
export function checkChannels(value: number): number {
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new RangeError(`channels must be a whole number of at least 1, not ${String(value)}`);
  }
  return value;
}

/** The longest error message (`m`) a reply header carries, in UTF-8 bytes. */
export const MAX_ERROR_MESSAGE_BYTES = 4096;
const CLASS_NAME = /^[A-Za-z_$][A-Za-z0-9_$.-]{0,99}$/;

/** `text` cut to at most `max` UTF-8 bytes (on a character boundary, "…" marking the cut). */
export function truncateUtf8(text: string, max: number): string {
  const bytes = ENCODER.encode(text);
  if (bytes.length <= max) return text;
  let end = max - 3; // room for "…"
  // Step back to the start of a UTF-8 sequence.
  while (end > 0 && (bytes[end]! & 0xc0) === 0x80) end--;
  return DECODER_LOOSE.decode(bytes.subarray(0, end)) + "…";
}

/**
 * An error as it may travel in a reply header: the message at most
 * `MAX_ERROR_MESSAGE_BYTES`, the class and status short identifiers
 * ("Error" / "error" when they are not). A peer or a script chooses these
 * strings, and the header must stay far below AMQP's frame limits.
 */
export function boundedError(e: RemoteErrorInfo): RemoteErrorInfo {
  const s = typeof e.s === "string" && CLASS_NAME.test(e.s) ? e.s : "error";
  const c = typeof e.c === "string" && CLASS_NAME.test(e.c) ? e.c : "Error";
  const m = truncateUtf8(typeof e.m === "string" ? e.m : String(e.m), MAX_ERROR_MESSAGE_BYTES);
  return { s, m, c };
}

/** Check a positive whole number of milliseconds (or a count); throws `RangeError`. */
export function checkPositive(value: number, what: string): number {
  if (!Number.isFinite(value) || value <= 0) {
    throw new RangeError(`${what} must be a positive number, not ${String(value)}`);
  }
  return value;
}
