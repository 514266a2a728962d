/**
 * TLS in front of the local RabbitMQ for tests: Debian's `stunnel4` on free
 * loopback ports, with a server certificate made by openssl. Two services:
 * one that accepts any client, one that wants a client certificate signed
 * by the CA. The broker itself is not touched.
 *
 * @module
 */

import { freePorts, spawnReady } from "./etcd_server.ts";
import type { CertFiles } from "./tls_certs.ts";

const STUNNEL = "/usr/bin/stunnel4";

/** A running stunnel in front of 127.0.0.1:5672. */
export interface Stunnel {
  /** Port of the service that accepts any client (TLS only). */
  readonly port: number;
  /** Port of the service that wants a client certificate signed by the CA. */
  readonly mutualPort: number;
  /** Stop it (SIGTERM, then SIGKILL after 5 s). Safe to call twice. */
  stop(): Promise<void>;
}

async function accepts(port: number): Promise<boolean> {
  try {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    conn.close();
    return true;
  } catch {
    return false;
  }
}

/** Start stunnel in `dir` with `server` as its certificate and `ca` for client certificates. */
export async function startStunnel(
  dir: string,
  server: CertFiles,
  ca: string,
  options: { target?: number } = {},
): Promise<Stunnel> {
  const [port, mutualPort] = freePorts(2) as [number, number];
  const target = options.target ?? 5672;
  const log = `${dir}/stunnel.log`;
  const conf = `${dir}/stunnel.conf`;
  await Deno.writeTextFile(
    conf,
    [
      "foreground = yes",
      "pid =",
      `output = ${log}`,
      "debug = 5",
      "[tls]",
      `accept = 127.0.0.1:${port}`,
      `connect = 127.0.0.1:${target}`,
      `cert = ${server.cert}`,
      `key = ${server.key}`,
      "[mutual]",
      `accept = 127.0.0.1:${mutualPort}`,
      `connect = 127.0.0.1:${target}`,
      `cert = ${server.cert}`,
      `key = ${server.key}`,
      `CAfile = ${ca}`,
      "verifyChain = yes",
      "requireCert = yes",
      "",
    ].join("\n"),
  );
  const child = await spawnReady(STUNNEL, [conf], {
    ready: async () => await accepts(port) && await accepts(mutualPort),
    what: `stunnel on ${port} and ${mutualPort}`,
    logPath: log,
    intervalMs: 50,
  });
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    try {
      child.kill("SIGTERM");
    } catch {
      // Gone already.
    }
    const timer = setTimeout(() => {
      try {
        child.kill("SIGKILL");
      } catch { /* gone */ }
    }, 5_000);
    await child.status;
    clearTimeout(timer);
  };
  return { port, mutualPort, stop };
}
