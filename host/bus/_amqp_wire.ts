/**
 * AmqpBus on the wire: the content types and headers of MoaT's broker
 * conventions (qbroker), how reply errors and bodies are read, how a
 * failure is put in words (TLS trouble, redacted URLs), and how a message
 * that cannot be used is dropped (dead-lettered).
 *
 * @module
 */

import { decodeBody, type RemoteErrorInfo } from "./bus.ts";
import type { LogLevel } from "../log.ts";
import type { Channel, Message } from "./_amqp_state.ts";
import { JSON_OBJ_TYPE, untag } from "./_amqp_json_obj.ts";

export { JSON_OBJ_TYPE };

export const JSON_TYPE = "application/json";
export const NULL_BODY = new TextEncoder().encode("null");
/** The request header carrying the caller's deadline (Unix time, ms). */
export const DEADLINE_HEADER = "deadline";
/** Channels the bus keeps besides its registrations' (the main and the declaring one). */
export const OWN_CHANNELS = 2;
/** How many handled alerts one ack frame confirms at most. */
export const ACK_BATCH = 32;
export const TEXT = new TextDecoder("utf-8", { fatal: true });

/**
 * Why a TLS connection failed, when the error says it did; `undefined`
 * otherwise. A broker closing the connection during the handshake of an
 * amqps:// connection is refusing the client's certificate (or its lack).
 */
export function tlsFailure(e: unknown): string | undefined {
  const text = errorText(e);
  // AMQP's own handshake (a refused login) is no TLS failure.
  if (/Handshake terminated by server|ACCESS.REFUSED/i.test(text)) return undefined;
  if (
    /certificate|self[- ]signed|altname|unable to verify|issuer|handshake|wrong version number|ssl|tls|UnknownIssuer|NotValidForName|InvalidCertificate/i
      .test(text)
  ) {
    return text;
  }
  if (/EPIPE|ECONNRESET|socket hang up|disconnected before secure/i.test(text)) {
    return `${text} (the broker closed the connection during the handshake: ` +
      "it may want a client certificate, --amqp-cert and --amqp-key)";
  }
  return undefined;
}

/** Remove the password from an AMQP URL, for messages. */
export function redactUrl(url: string): string {
  return url.replace(/^([a-z+]+:\/\/[^:@/]*):[^@/]*@/i, "$1@");
}

export function errorText(e: unknown): string {
  const text = e instanceof Error ? e.message : String(e);
  return text.split("\n")[0]!.slice(0, 200);
}

/**
 * The error a reply header `error` carries, if it reports a failure. Read
 * in both shapes: qbroker's `{_o: "m_err", s, m, c, e: {_o: "exc", …}}`
 * and the bare `{s, m, c}` (also as a JSON string). A missing `m` or `c` is
 * taken from the `exc` member (its `s`, and its class without the module).
 */
export function failureOf(header: unknown): RemoteErrorInfo | undefined {
  let h = header;
  if (h instanceof Uint8Array) h = new TextDecoder().decode(h);
  if (typeof h === "string") {
    try {
      h = JSON.parse(h);
    } catch {
      return { s: "error", m: h as string, c: "Error" };
    }
  }
  if (h === null || typeof h !== "object") return undefined;
  const o = h as Record<string, unknown>;
  const str = (v: unknown) => v instanceof Uint8Array ? new TextDecoder().decode(v) : v;
  const s = typeof str(o.s) === "string" ? str(o.s) as string : "error";
  // qbroker: "ok" and "warn" are not failures.
  if (s === "ok" || s === "warn") return undefined;
  const exc = o.e !== null && typeof o.e === "object" ? o.e as Record<string, unknown> : {};
  const m = str(o.m) ?? str(exc.s);
  const excClass = str(exc.e);
  const c = str(o.c) ?? (typeof excClass === "string" ? excClass.split(".").pop() : undefined);
  return {
    s,
    m: typeof m === "string" ? m : "unknown error",
    c: typeof c === "string" && c !== "" ? c : "Error",
  };
}

/** The Python class a qbroker peer raises for an error of JavaScript class `c`. */
function pythonClass(c: string): string {
  switch (c) {
    case "TypeError":
      return "builtins.TypeError";
    case "RangeError":
    case "SyntaxError":
      return "builtins.ValueError";
    case "TimeoutError":
      return "builtins.TimeoutError";
    default:
      return "builtins.RuntimeError";
  }
}

/**
 * The reply header `error` in qbroker's shape: `{_o: "m_err", s, m, c}`
 * plus an `exc` member (`e`) that qbroker's `raise_if_error` turns into a
 * Python exception (`RuntimeError(m)`, or `TypeError`, `ValueError`,
 * `TimeoutError` for those classes). `e` must already be bounded.
 */
export function errorHeader(e: RemoteErrorInfo): Record<string, unknown> {
  const py = pythonClass(e.c);
  return {
    _o: "m_err",
    s: e.s,
    m: e.m,
    c: e.c,
    e: { _o: "exc", e: py, a0: e.m, s: e.m, r: `${py.slice(9)}(${JSON.stringify(e.m)})` },
  };
}

/** What a content type names: the body's codec, or why it is refused. */
export type BodyKind = "json" | "jsonobj" | "text";

/**
 * The codec of a content type (a missing one means JSON), or a message
 * saying why it is refused. Matching follows RFC 9110: the type is compared
 * without case, parameters after `;` are allowed, and a `charset` parameter
 * must name UTF-8 (`utf-8` or `utf8`, any case).
 */
export function bodyKind(contentType: unknown): BodyKind | string {
  if (contentType === undefined || contentType === null || contentType === "") return "json";
  const shown = JSON.stringify(contentType);
  if (typeof contentType !== "string") return `has the unsupported content type ${shown}`;
  const [base, ...params] = contentType.split(";");
  for (const p of params) {
    const [k, v] = p.split("=").map((x) => x.trim().toLowerCase().replace(/^"(.*)"$/, "$1"));
    if (k === "charset" && v !== "utf-8" && v !== "utf8") {
      return `has the unsupported charset in content type ${shown} (only UTF-8)`;
    }
  }
  const type = base!.trim().toLowerCase();
  if (type === JSON_TYPE) return "json";
  if (type === JSON_OBJ_TYPE) return "jsonobj";
  // qbroker sends plain strings as text/plain.
  if (type === "text/plain") return "text";
  return `has the unsupported content type ${shown}`;
}

/**
 * Why a content encoding is refused, or `undefined` when the body is as it
 * is: none, `identity`, or a UTF-8 name (some peers put the charset here).
 * A compressed body (`gzip`, …) is refused rather than read as garbage.
 */
export function encodingProblem(encoding: unknown): string | undefined {
  if (encoding === undefined || encoding === null || encoding === "") return undefined;
  if (typeof encoding === "string" && /^(identity|utf-?8)$/i.test(encoding.trim())) {
    return undefined;
  }
  return `has the unsupported content encoding ${JSON.stringify(encoding)}`;
}

/**
 * Decode a body of the given kind. An empty body is `null` for the JSON
 * kinds; `application/json+obj` tags become plain values (`_amqp_json_obj.ts`).
 */
export function decodeAs(kind: BodyKind, bytes: Uint8Array, what: string): unknown {
  if (kind === "text") {
    try {
      return TEXT.decode(bytes);
    } catch (e) {
      throw new SyntaxError(`${what} is not valid UTF-8 text`, { cause: e });
    }
  }
  if (bytes.length === 0) return null;
  const value = decodeBody(bytes, what);
  if (kind === "json") return value;
  try {
    return untag(value);
  } catch (e) {
    throw new SyntaxError(`${what} is not valid application/json+obj: ${(e as Error).message}`, {
      cause: e,
    });
  }
}

export function isPreconditionFailed(e: unknown): boolean {
  return (e as { code?: unknown })?.code === 406;
}

/** Reject a message we cannot use: it goes to the dead-letter exchange. */
export function dropMessage(
  log: (level: LogLevel, message: string) => void,
  ch: Channel,
  msg: Message,
  why: string,
): void {
  log("warn", `dropped a message for "${msg.fields.routingKey}": ${why}`);
  try {
    ch.nack(msg, false, false);
  } catch {
    // The channel is gone: the broker has released the message already.
  }
}

/**
 * The decoded body of a delivered message, after the checks every message
 * gets: size (`RangeError`), content encoding and type (`TypeError`), and
 * the body itself (`SyntaxError`). Messages start with `what`, e.g.
 * `the request to "x" has the unsupported content type "text/xml"`.
 */
export function readBody(msg: Message, what: string, maxBytes: number): unknown {
  if (msg.content.length > maxBytes) {
    throw new RangeError(
      `${what} is ${msg.content.length} bytes, over the limit of ${maxBytes} bytes`,
    );
  }
  const encoding = encodingProblem(msg.properties.contentEncoding);
  if (encoding) throw new TypeError(`${what} ${encoding}`);
  const kind = bodyKind(msg.properties.contentType);
  if (kind !== "json" && kind !== "jsonobj" && kind !== "text") {
    throw new TypeError(`${what} ${kind}`);
  }
  return decodeAs(kind, msg.content, what);
}

/** The error class name to report for a failure of `readBody`. */
export function errorClass(e: unknown): string {
  return e instanceof RangeError
    ? "RangeError"
    : e instanceof TypeError
    ? "TypeError"
    : e instanceof SyntaxError
    ? "SyntaxError"
    : "Error";
}
