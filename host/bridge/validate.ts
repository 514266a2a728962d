/**
 * Checks on everything a sandbox sends. The sandbox is untrusted: every
 * message is parsed JSON of unknown shape until these functions say
 * otherwise, and none of them throws on bad input except the per-method
 * argument validators, which throw {@linkcode BridgeError} (answered to the
 * script as `{ code: "bad_args", message }`).
 *
 * @module
 */

import {
  type ErrorCode,
  type Json,
  LOG_LEVELS,
  type LogLevel,
  MAX_END_TEXT_CHARS,
  MAX_LOG_CHARS,
  MAX_TIMER_FIRINGS,
  type MethodName,
  type Methods,
  type SandboxMessage,
  type TimeOptions,
  type TimerFiring,
  type TimeSpec,
} from "../../sandbox/protocol.ts";

/**
 * An error a method handler throws to tell the *script* what went wrong.
 * Only `code` and `message` cross the bridge. Any other exception from a
 * handler reaches the script as `{ code: "internal", message: "internal error" }`.
 */
export class BridgeError extends Error {
  /** Machine-readable code, e.g. "bad_args", "no_such_key", "quota". */
  readonly code: ErrorCode;
  /** An error with `code` and `message` for the script; `options.cause` stays on the host. */
  constructor(code: ErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "BridgeError";
    this.code = code;
  }
}

/** Validates the raw `args` of one method; throws `BridgeError("bad_args", …)`. */
export type ArgValidator<M extends MethodName> = (args: unknown[]) => Methods[M]["args"];

/** One validator per method: a method without one fails `deno check`. */
export type ArgValidators = { readonly [M in MethodName]: ArgValidator<M> };

const MAX_SPEC_CHARS = 1000;
const MAX_SPEC_ITEMS = 100;

function quote(v: unknown): string {
  try {
    const s = typeof v === "string" ? JSON.stringify(v) : String(JSON.stringify(v) ?? typeof v);
    return s.length > 60 ? `${s.slice(0, 60)}…` : s;
  } catch {
    return typeof v;
  }
}

function badArgs(method: string, what: string): BridgeError {
  return new BridgeError("bad_args", `Cannot call ${method}: ${what}`);
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (v === null || typeof v !== "object" || Array.isArray(v)) return false;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

/** The longest schedule id (`options.id` of `wait` and `run_at`). */
export const MAX_SCHEDULE_ID_CHARS = 100;
/** A schedule id: one segment of an etcd key, like a variable name. */
export const SCHEDULE_ID = new RegExp(`^[A-Za-z_][A-Za-z0-9_.-]{0,${MAX_SCHEDULE_ID_CHARS - 1}}$`);
/** The longest catch-up window (`options.catch_up`): 366 days, in seconds. */
export const MAX_CATCH_UP_S = 366 * 86400;

/** `[spec, options?]` of `time_at`, `wait` and `run_at`. */
function timeArgs(method: string, args: unknown[]): [TimeSpec, TimeOptions] {
  if (args.length < 1 || args.length > 2) {
    throw badArgs(method, `expected (spec, options), got ${args.length} arguments`);
  }
  const [spec, opts = {}] = args;
  if (typeof spec === "string") {
    if (spec.length > MAX_SPEC_CHARS) {
      throw badArgs(method, `time spec is longer than ${MAX_SPEC_CHARS} characters`);
    }
  } else if (Array.isArray(spec)) {
    if (spec.length > MAX_SPEC_ITEMS) {
      throw badArgs(method, `time spec has more than ${MAX_SPEC_ITEMS} items`);
    }
    for (const [i, item] of spec.entries()) {
      const ok = (typeof item === "string" && item.length <= MAX_SPEC_CHARS) ||
        (typeof item === "number" && Number.isFinite(item));
      if (!ok) {
        throw badArgs(
          method,
          `time spec item ${i} must be a string or a number, got ${quote(item)}`,
        );
      }
    }
  } else {
    throw badArgs(method, `time spec must be a string or an array, got ${quote(spec)}`);
  }
  if (!isPlainObject(opts)) throw badArgs(method, `options must be an object, got ${quote(opts)}`);
  const options: TimeOptions = {};
  for (const key of Object.keys(opts)) {
    const v = opts[key];
    if (key === "now") {
      if (typeof v !== "number" || !Number.isFinite(v)) {
        throw badArgs(method, `options.now must be Unix seconds, got ${quote(v)}`);
      }
      options.now = v;
    } else if (key === "current") {
      if (v !== null && typeof v !== "boolean") {
        throw badArgs(method, `options.current must be true, false or null, got ${quote(v)}`);
      }
      options.current = v;
    } else if (key === "id" && method !== "time_at") {
      if (typeof v !== "string" || !SCHEDULE_ID.test(v)) {
        throw badArgs(
          method,
          `options.id must be 1 to ${MAX_SCHEDULE_ID_CHARS} letters, digits, "_", "." or "-", ` +
            `starting with a letter or "_", got ${quote(v)}`,
        );
      }
      options.id = v;
    } else if (key === "catch_up" && method !== "time_at") {
      if (typeof v !== "number" || !(v >= 0 && v <= MAX_CATCH_UP_S)) {
        throw badArgs(
          method,
          `options.catch_up must be seconds from 0 to ${MAX_CATCH_UP_S}, got ${quote(v)}`,
        );
      }
      options.catch_up = v;
    } else {
      throw badArgs(method, `unknown option ${quote(key)}`);
    }
  }
  return [spec as TimeSpec, options];
}

const MAX_NAME_CHARS = 1000;
const MAX_MESSAGE_CHARS = 16 * 1024;

/** A fixed number of string arguments, each at most `max` characters. */
function strings(method: string, args: unknown[], names: string[], max: number[]): string[] {
  if (args.length !== names.length) {
    throw badArgs(method, `expected (${names.join(", ")}), got ${args.length} arguments`);
  }
  args.forEach((a, i) => {
    if (typeof a !== "string") {
      throw badArgs(method, `${names[i]} must be a string, got ${quote(a)}`);
    }
    if (a.length > max[i]!) {
      throw badArgs(method, `${names[i]} is longer than ${max[i]} characters`);
    }
  });
  return args as string[];
}

/** The argument validators of the closed method table. */
export const argValidators: ArgValidators = Object.freeze({
  time_at: (args: unknown[]) => timeArgs("time_at", args),
  wait: (args: unknown[]) => timeArgs("wait", args),
  run_at: (args: unknown[]) => timeArgs("run_at", args),
  fired: (args: unknown[]): [string, number] => {
    if (args.length !== 2) {
      throw badArgs("fired", `expected (id, due), got ${args.length} arguments`);
    }
    const [id, due] = args;
    if (typeof id !== "string" || !SCHEDULE_ID.test(id)) {
      throw badArgs("fired", `id must be a schedule id, got ${quote(id)}`);
    }
    if (typeof due !== "number" || !Number.isFinite(due)) {
      throw badArgs("fired", `due must be Unix seconds, got ${quote(due)}`);
    }
    return [id, due];
  },
  data_set: (args: unknown[]): [string, Json] => {
    if (args.length !== 2) {
      throw badArgs("data_set", `expected (key, value), got ${args.length} arguments`);
    }
    const [key, value] = args;
    if (typeof key !== "string" || key.length > MAX_NAME_CHARS) {
      throw badArgs("data_set", `key must be a string, got ${quote(key)}`);
    }
    // The message was parsed from JSON: the value is JSON already.
    return [key, value as Json];
  },
  tree_lookup: (args: unknown[]): [string] => {
    const [path] = strings("tree_lookup", args, ["path"], [MAX_NAME_CHARS]);
    return [path!];
  },
  tree_watch: (args: unknown[]): [string] => {
    const [path] = strings("tree_watch", args, ["path"], [MAX_NAME_CHARS]);
    return [path!];
  },
  set_error: (args: unknown[]): [string, string] => {
    const [tag, message] = strings("set_error", args, ["tag", "message"], [
      MAX_NAME_CHARS,
      MAX_MESSAGE_CHARS,
    ]);
    return [tag!, message!];
  },
  clear_error: (args: unknown[]): [string] => {
    const [tag] = strings("clear_error", args, ["tag"], [MAX_NAME_CHARS]);
    return [tag!];
  },
  load: (args: unknown[]): [string] => {
    const [name] = strings("load", args, ["name"], [MAX_NAME_CHARS]);
    return [name!];
  },
  rpc_serve: (args: unknown[]): [string] => {
    const [name] = strings("rpc_serve", args, ["name"], [MAX_NAME_CHARS]);
    return [name!];
  },
  alert_listen: (args: unknown[]): [string] => {
    const [pattern] = strings("alert_listen", args, ["pattern"], [MAX_NAME_CHARS]);
    return [pattern!];
  },
  rpc_reply: (args: unknown[]): [number, boolean, Json] => {
    if (args.length !== 3) {
      throw badArgs("rpc_reply", `expected (call, ok, value), got ${args.length} arguments`);
    }
    const [call, ok, value] = args;
    if (typeof call !== "number" || !Number.isSafeInteger(call) || call < 0) {
      throw badArgs("rpc_reply", `call must be a request number, got ${quote(call)}`);
    }
    if (typeof ok !== "boolean") {
      throw badArgs("rpc_reply", `ok must be a boolean, got ${quote(ok)}`);
    }
    return [call, ok, value as Json];
  },
  call: (args: unknown[]): [string, Json, number] => {
    if (args.length !== 3) {
      throw badArgs("call", `expected (name, args, timeout), got ${args.length} arguments`);
    }
    const [name, a, timeout] = args;
    if (typeof name !== "string" || name.length > MAX_NAME_CHARS) {
      throw badArgs("call", `name must be a string, got ${quote(name)}`);
    }
    if (typeof timeout !== "number" || !(timeout > 0) || timeout > 3600) {
      throw badArgs("call", `timeout must be seconds between 0 and 3600, got ${quote(timeout)}`);
    }
    return [name, a as Json, timeout];
  },
  alert: (args: unknown[]): [string, Json] => {
    if (args.length !== 2) {
      throw badArgs("alert", `expected (topic, data), got ${args.length} arguments`);
    }
    const [topic, data] = args;
    if (typeof topic !== "string" || topic.length > MAX_NAME_CHARS) {
      throw badArgs("alert", `topic must be a string, got ${quote(topic)}`);
    }
    return [topic, data as Json];
  },
  debug_obj: (args: unknown[]): [Json] => {
    if (args.length !== 1) {
      throw badArgs("debug_obj", `expected (value), got ${args.length} arguments`);
    }
    return [args[0] as Json];
  },
});

/** Result of {@linkcode checkMessage}. */
export type Checked =
  | { ok: true; message: SandboxMessage }
  /** Refused; `id` is set when it was a call that must still be answered. */
  | { ok: false; why: string; id?: number };

function isId(v: unknown): v is number {
  return typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
}

/**
 * Check the shape of one parsed line from a sandbox. Method names are not
 * checked here (the caller looks them up with `Object.hasOwn` on its table),
 * and arguments are checked by {@linkcode argValidators}.
 */
export function checkMessage(value: unknown): Checked {
  if (!isPlainObject(value)) return { ok: false, why: "message is not an object" };
  const kind = value.kind;
  switch (kind) {
    case "ready":
      if (!isId(value.version)) return { ok: false, why: "ready without a version" };
      return { ok: true, message: { kind, version: value.version } };
    case "call": {
      if (!isId(value.id)) return { ok: false, why: "call without a valid id" };
      const id = value.id;
      if (typeof value.method !== "string" || value.method.length > 100) {
        return { ok: false, why: "call without a method name", id };
      }
      if (!Array.isArray(value.args)) return { ok: false, why: "call args is not an array", id };
      // The method name is checked against the table by the caller.
      return {
        ok: true,
        message: { kind, id, method: value.method as MethodName, args: value.args as never },
      };
    }
    case "cancel":
      if (!isId(value.id)) return { ok: false, why: "cancel without a valid id" };
      return { ok: true, message: { kind, id: value.id } };
    case "log": {
      const level = value.level;
      if (typeof level !== "string" || !(LOG_LEVELS as readonly string[]).includes(level)) {
        return { ok: false, why: `log with unknown level ${quote(level)}` };
      }
      if (typeof value.message !== "string") return { ok: false, why: "log without a message" };
      return {
        ok: true,
        message: {
          kind,
          level: level as LogLevel,
          message: value.message.slice(0, MAX_LOG_CHARS + 100),
        },
      };
    }
    case "ended": {
      const state = value.state;
      if (state !== "ok" && state !== "error") {
        return { ok: false, why: `ended with unknown state ${quote(state)}` };
      }
      const text = (v: unknown) =>
        typeof v === "string" ? v.slice(0, MAX_END_TEXT_CHARS + 100) : "";
      return {
        ok: true,
        message: { kind, state, message: text(value.message), debug: text(value.debug) },
      };
    }
    case "pong":
      if (!isId(value.id)) return { ok: false, why: "pong without a valid id" };
      return { ok: true, message: { kind, id: value.id } };
    case "settled":
      return checkSettled(value);
    case "threads":
      if (typeof value.need !== "boolean") return { ok: false, why: "threads without need" };
      return { ok: true, message: { kind, need: value.need } };
    default:
      return { ok: false, why: `unknown message kind ${quote(kind)}` };
  }
}

/** `settled` (only under `moat script try`): its counts and times, each checked. */
function checkSettled(value: Record<string, unknown>): Checked {
  if (!isId(value.seen)) return { ok: false, why: "settled without a valid seen count" };
  const next = value.nextMs;
  if (next !== null && (typeof next !== "number" || !Number.isFinite(next))) {
    return { ok: false, why: `settled with a bad nextMs ${quote(next)}` };
  }
  const list = value.fired;
  if (!Array.isArray(list) || list.length > MAX_TIMER_FIRINGS) {
    return { ok: false, why: "settled with a bad list of fired timers" };
  }
  const fired: TimerFiring[] = [];
  for (const f of list) {
    if (
      !isPlainObject(f) || typeof f.repeat !== "boolean" || typeof f.delayMs !== "number" ||
      !Number.isFinite(f.delayMs) || f.delayMs < 0 || !isId(f.count)
    ) {
      return { ok: false, why: "settled with a bad fired timer entry" };
    }
    fired.push({ repeat: f.repeat, delayMs: f.delayMs, count: f.count });
  }
  if (typeof value.ending !== "boolean") return { ok: false, why: "settled without ending" };
  return {
    ok: true,
    message: { kind: "settled", seen: value.seen, nextMs: next, fired, ending: value.ending },
  };
}
