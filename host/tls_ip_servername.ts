/**
 * TLS to an IP address through `node:tls` under Deno.
 *
 * Node ignores a `servername` that is an IP address (RFC 6066 forbids it in
 * SNI) and checks the server's certificate against the host it connects
 * to. Deno's `node:tls` throws on such a `servername` instead, and both
 * npm clients we use (grpc-js under etcd3, amqplib) always pass the host
 * they connect to as `servername`: so `https://10.0.0.1:2379` or
 * `amqps://10.0.0.1` could never connect. `allowIpServername()` wraps
 * `tls.connect` once, dropping an IP `servername`: the certificate is then
 * checked against the IP address (its IP SAN), exactly as Node does.
 *
 * @module
 */

import tls from "node:tls";
import { isIP } from "node:net";

let installed = false;

/** Make `tls.connect` accept an IP address as `servername` (see the module doc). Idempotent. */
export function allowIpServername(): void {
  if (installed) return;
  installed = true;
  const original = tls.connect;
  const patched = function (this: unknown, ...args: unknown[]) {
    const options = args[0];
    if (
      options !== null && typeof options === "object" &&
      typeof (options as { servername?: unknown }).servername === "string" &&
      isIP((options as { servername: string }).servername) !== 0
    ) {
      // Verification still happens: against `host`, the same IP address.
      const { servername: _ip, ...rest } = options as Record<string, unknown>;
      args[0] = rest;
    }
    return (original as (...a: unknown[]) => tls.TLSSocket).apply(this, args);
  };
  (tls as { connect: unknown }).connect = patched;
}
