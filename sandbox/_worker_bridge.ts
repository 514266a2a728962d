/**
 * The Worker's end of the bridge: sending messages (within the size
 * limit), calls with exactly one answer each, log lines, and the `console`
 * that turns script output into log lines.
 *
 * Like every `sandbox/_worker_*.ts` module, the function here is copied
 * into the Worker as source text: it may use globals and its parameters,
 * nothing else from this module.
 *
 * @module
 */

import type { ErrorInfo, LogLevel, MethodName, Methods, SandboxMessage } from "./protocol.ts";
import type { MoatApiErrorCode } from "./moat_api.ts";
import type { Captured } from "./_worker_lockdown.ts";

/** Settings baked into the Worker's source. */
export interface WorkerConfig {
  /** `PROTOCOL_VERSION`, sent back in `ready`. */
  version: number;
  /** Longest message the Worker may send, in UTF-8 bytes. */
  maxLineBytes: number;
  /** Log messages are cut to this many characters. */
  maxLogChars: number;
  /** `ended.message`/`ended.debug` are cut to this many characters. */
  maxEndTextChars: number;
  /** `MAX_THREADS`: most `moat.thread` functions running at once. */
  maxThreads: number;
  /** `MAX_THREADS_WAITING`: most `moat.thread` calls waiting for a thread. */
  maxThreadsWaiting: number;
}

/** A call in flight: how to settle the script's promise. */
export interface PendingCall {
  resolve(v: unknown): void;
  reject(e: unknown): void;
}

/** What {@linkcode bridgeClient} gives the rest of the bootstrap. */
export interface BridgeClient {
  /** Send one message; a RangeError when it is too large for the bridge. */
  send(msg: SandboxMessage): void;
  /** How many messages the script's work sent (all but `pong` and `settled`). */
  sentCount(): number;
  /** Send a call; its id and a promise of the answer. Throws when too many are in flight. */
  call<M extends MethodName>(
    method: M,
    args: Methods[M]["args"],
  ): { id: number; result: Promise<Methods[M]["result"]> };
  /** Calls in flight by id (a `reply` settles and removes one). */
  pending: Map<number, PendingCall>;
  /** Most calls in flight (from `start`). */
  setMaxCallsInFlight(n: number): void;
  /** Settle call `id` with the host's answer (a `MoatError` for an error). */
  answer(id: number, ok: boolean, value: unknown, error: ErrorInfo | undefined): void;
  /** One log line of `args` (strings as they are, other values inspected). */
  log(level: LogLevel, args: unknown[]): void;
  /** `s` cut to `max` characters, saying how many more there were. */
  cut(s: string, max: number): string;
  /** Arguments as one line of text, as `console.log` would show them. */
  format(args: unknown[]): string;
  /** A message and a stack for anything thrown. */
  describe(err: unknown): { message: string; debug: string };
  /** The `MoatError` a script gets for a refusal with this code and message. */
  error(info: ErrorInfo): Error;
  /** The `console` a script gets: its output becomes log lines. */
  console(original: Record<string, unknown>): Record<string, (...args: unknown[]) => void>;
}

/** The Worker's end of the bridge, over the captured channel `c`. */
export function bridgeClient(c: Captured, config: WorkerConfig): BridgeClient {
  const encoder = new TextEncoder();
  let sent = 0;
  const send = (msg: SandboxMessage): void => {
    if (msg.kind !== "pong" && msg.kind !== "settled") sent++;
    const text = c.stringify(msg);
    if (
      text.length > config.maxLineBytes ||
      (text.length * 3 >= config.maxLineBytes && encoder.encode(text).length >= config.maxLineBytes)
    ) {
      throw new RangeError(`message of ${text.length} characters is too large for the bridge`);
    }
    c.post(text);
  };
  const cut = (s: string, max: number): string =>
    s.length <= max ? s : `${s.slice(0, max)}… [${s.length - max} more characters]`;
  const format = (args: unknown[]): string => {
    const parts: string[] = [];
    for (const a of args) {
      if (typeof a === "string") parts.push(a);
      else {
        try {
          parts.push(c.inspect(a, { depth: 4, colors: false, iterableLimit: 100 }));
        } catch {
          parts.push("[uninspectable value]");
        }
      }
    }
    return parts.join(" ");
  };
  const log = (level: LogLevel, args: unknown[]): void => {
    send({ kind: "log", level, message: cut(format(args), config.maxLogChars) });
  };
  const describe = (err: unknown): { message: string; debug: string } => {
    try {
      if (err instanceof Error) {
        return { message: String(err.message), debug: String(err.stack ?? "") };
      }
      return { message: `non-error thrown: ${format([err])}`, debug: "" };
    } catch {
      return { message: "an unprintable value was thrown", debug: "" };
    }
  };

  /** Error a host call failed with: the host's code and message only. */
  class MoatError extends Error {
    // The host's codes must be ones scripts are told of (types/moat.d.ts).
    code: MoatApiErrorCode;
    constructor(info: ErrorInfo) {
      super(info.message);
      this.name = "MoatError";
      this.code = info.code;
    }
  }

  const pending = new Map<number, PendingCall>();
  let lastId = 0;
  let maxCallsInFlight = 1000;
  const call = <M extends MethodName>(
    method: M,
    args: Methods[M]["args"],
  ): { id: number; result: Promise<Methods[M]["result"]> } => {
    if (pending.size >= maxCallsInFlight) {
      throw new RangeError(`too many calls in flight (limit ${maxCallsInFlight})`);
    }
    const id = ++lastId;
    const result = new Promise<Methods[M]["result"]>((resolve, reject) => {
      pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
    });
    try {
      send({ kind: "call", id, method, args } as SandboxMessage);
    } catch (err) {
      pending.delete(id);
      throw err;
    }
    return { id, result };
  };

  const consoleLevels: Record<string, LogLevel> = {
    debug: "debug",
    trace: "debug",
    log: "info",
    info: "info",
    dir: "info",
    dirxml: "info",
    table: "info",
    warn: "warn",
    error: "error",
  };

  return {
    send,
    sentCount: () => sent,
    call,
    pending,
    setMaxCallsInFlight(n: number): void {
      maxCallsInFlight = n;
    },
    answer(id: number, ok: boolean, value: unknown, error: ErrorInfo | undefined): void {
      const p = pending.get(id);
      if (p === undefined) return;
      pending.delete(id);
      if (ok) p.resolve(value);
      else p.reject(new MoatError(error ?? { code: "internal", message: "internal error" }));
    },
    log,
    cut,
    format,
    describe,
    error: (info: ErrorInfo) => new MoatError(info),
    console(original: Record<string, unknown>) {
      const out: Record<string, (...args: unknown[]) => void> = {};
      const noop = () => {};
      for (const name of Object.keys(original)) out[name] = noop;
      for (const [name, level] of Object.entries(consoleLevels)) {
        out[name] = (...args: unknown[]) => log(level, args);
      }
      out.assert = (cond?: unknown, ...args: unknown[]) => {
        if (!cond) log("error", ["Assertion failed", ...args]);
      };
      return out;
    },
  };
}
