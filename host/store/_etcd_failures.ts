/**
 * What went wrong with etcd, in words a user can act on: the errors an
 * EtcdStore reports, and how it tells an unreachable cluster, a TLS problem
 * and a refused user apart.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { GRPCDeadlineExceededError, GRPCUnavailableError } from "etcd3";
import { StoreUnavailableError } from "./store.ts";
import tls from "node:tls";
import type { EtcdTlsOptions } from "./etcd_store.ts";

/**
 * etcd could be reached but refused this client for a reason the client
 * knows: the TLS handshake failed, or etcd refused the user. Unlike a plain
 * `StoreUnavailableError`, waiting will not help: the configuration must
 * change. The message says which.
 */
export class EtcdAccessError extends StoreUnavailableError {
  override name = "EtcdAccessError";
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
  }
}

/** etcd refused an operation: the user's roles do not allow it. */
export class EtcdPermissionError extends Error {
  override name = "EtcdPermissionError";
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
  }
}

export const RETRY_STEP_MS = 50;
export const RETRY_MAX_MS = 250;

/**
 * Whether the call failed before it reached etcd (no connection), so that
 * sending it again cannot apply it twice. gRPC says so only in its message.
 */
export function wasNotSent(error: unknown): boolean {
  return error instanceof GRPCUnavailableError &&
    error.message.includes("No connection established");
}

/**
 * Errors that mean "etcd could not be reached (in time)", not "etcd said no".
 * A connection torn down under a call (etcd stopping) reaches grpc-js as an
 * INTERNAL error about the stream or socket: that is unreachable too.
 */
export function isUnreachable(error: unknown): boolean {
  if (error instanceof GRPCUnavailableError || error instanceof GRPCDeadlineExceededError) {
    return true;
  }
  const message = error instanceof Error ? error.message : "";
  return /RST_STREAM|socket has been ended|ECONNRESET|ECONNREFUSED|EPIPE|Connection dropped/
    .test(message);
}

/** The innermost gRPC "Last error: …" of an unreachable error, or its message. */
export function lastErrorText(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error ?? "");
  const m = /Last error: (?:[A-Za-z]*Error(?: \[[A-Z_]+\])?: )?(.*?)(?:\. Resolution note:.*)?$/s
    .exec(message);
  return (m ? m[1]! : message).replace(/ \(\d{4}-\d\d-\d\dT[^)]*\)$/, "").trim();
}

/**
 * Why a TLS connection failed, when the error says it did; `undefined` for
 * anything else (etcd down, a timeout). With TLS in use, a connection that
 * etcd closes during the handshake is the server refusing the client's
 * certificate (or the lack of one).
 */
export function tlsFailure(error: unknown, usingTls: boolean): string | undefined {
  const text = lastErrorText(error);
  if (
    /BadCertificate|bad certificate|CertificateRequired|certificate required|UnknownCA|unknown ca/i
      .test(text)
  ) {
    return `${text} (etcd refused the client certificate, or its lack: ` +
      "--etcd-cert and --etcd-key must be given and signed by a CA etcd trusts)";
  }
  if (
    /certificate|self[- ]signed|altname|unable to verify|issuer|handshake|wrong version number|ssl|tls|UnknownIssuer|NotValidForName|BadCertificate|InvalidCertificate/i
      .test(text)
  ) {
    return text;
  }
  if (usingTls && /EPIPE|ECONNRESET|socket hang up|disconnected before secure/i.test(text)) {
    return `${text} (etcd closed the connection during the handshake: ` +
      "it may want a client certificate, --etcd-cert and --etcd-key, signed by a CA it trusts)";
  }
  return undefined;
}

/** How long a TLS probe may take, and how long it listens after the handshake. */
export const PROBE_MS = 2_000;
export const PROBE_LISTEN_MS = 500;

/**
 * Connect to `endpoint` with TLS as the gRPC client would, to learn why it
 * fails when gRPC does not say (its token exchange opens channels of its
 * own, whose errors are lost). Resolves with the reason, or `undefined`
 * when the handshake succeeds and the server keeps the connection open.
 * A server refusing the client's certificate (or its lack) may only close
 * the connection after the handshake, hence the short listen.
 */
export function probeTls(
  endpoint: string,
  material: EtcdTlsOptions | undefined,
): Promise<string | undefined> {
  const url = new URL(endpoint);
  return new Promise((resolve) => {
    let done = false;
    let socket: tls.TLSSocket | undefined;
    const finish = (reason: string | undefined) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket?.destroy();
      resolve(reason);
    };
    const timer = setTimeout(() => finish(undefined), PROBE_MS);
    try {
      socket = tls.connect({
        host: url.hostname.replace(/^\[|\]$/g, ""),
        port: Number(url.port || 2379),
        servername: url.hostname.replace(/^\[|\]$/g, ""),
        ALPNProtocols: ["h2"],
        ...(material?.ca ? { ca: Buffer.from(material.ca) } : {}),
        ...(material?.cert ? { cert: Buffer.from(material.cert) } : {}),
        ...(material?.key ? { key: Buffer.from(material.key) } : {}),
      }, () => {
        setTimeout(() => finish(undefined), PROBE_LISTEN_MS);
        socket?.once("close", () =>
          finish(
            "etcd closed the connection after the handshake (it may want a client certificate, " +
              "--etcd-cert and --etcd-key, signed by a CA it trusts)",
          ));
      });
      socket.on("error", (e: Error) => {
        const text = tlsFailure(e, true);
        finish(text ?? (/ECONNREFUSED/.test(e.message) ? undefined : e.message));
      });
    } catch (e) {
      finish((e as Error).message);
    }
  });
}

/** The text etcd (gRPC) sent, without gRPC's status prefix. */
export function etcdText(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return message.replace(/^\d+ [A-Z_]+: /, "").replace(/^etcdserver: /, "");
}

/**
 * A single-address target per endpoint, or one gRPC target holding every
 * address when all endpoints are plain-HTTP IPv4 literals. With one target,
 * gRPC itself fails over between members (pick_first), so a call waiting
 * for a ready connection is not stuck on one dead member.
 */
export function grpcHosts(endpoints: string[]): string[] {
  const ipv4 = /^http:\/\/(\d{1,3}(?:\.\d{1,3}){3}:\d+)\/?$/;
  const addresses = endpoints.map((e) => ipv4.exec(e)?.[1]);
  if (endpoints.length > 1 && addresses.every((a) => a !== undefined)) {
    return [`ipv4:${addresses.join(",")}`];
  }
  return endpoints;
}
