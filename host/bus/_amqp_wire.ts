/**
 * AmqpBus on the wire: the content types and headers of MoaT's broker
 * conventions (qbroker), how reply errors and bodies are read, and how a
 * failure is put in words (TLS trouble, redacted URLs).
 *
 * @module
 */

import { decodeBody, type RemoteErrorInfo } from "./bus.ts";

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

/** The error a reply header `error` carries, if it reports a failure. */
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
  const m = str(o.m);
  const c = str(o.c);
  return {
    s,
    m: typeof m === "string" ? m : "unknown error",
    c: typeof c === "string" ? c : "Error",
  };
}

/** Whether a content type is one whose body we decode (missing means JSON). */
export function bodyKind(contentType: unknown): "json" | "text" | undefined {
  if (contentType === undefined || contentType === null || contentType === "") return "json";
  if (typeof contentType !== "string") return undefined;
  const base = contentType.split(";")[0]!.trim().toLowerCase();
  if (base === JSON_TYPE) return "json";
  // qbroker sends plain strings as text/plain.
  if (base === "text/plain") return "text";
  return undefined;
}

export function decodeAs(kind: "json" | "text", bytes: Uint8Array, what: string): unknown {
  if (kind === "json") return decodeBody(bytes, what);
  try {
    return TEXT.decode(bytes);
  } catch (e) {
    throw new SyntaxError(`${what} is not valid UTF-8 text`, { cause: e });
  }
}

export function isPreconditionFailed(e: unknown): boolean {
  return (e as { code?: unknown })?.code === 406;
}
