/**
 * TLS in front of the local RabbitMQ for tests: Debian's `stunnel4` on free
 * loopback ports, with a server certificate made by openssl. Two services:
 * one that accepts any client, one that wants a client certificate signed
 * by the CA. The broker itself is not touched.
 *
 * @module
 */

import { freePorts, logTail } from "./etcd_server.ts";
import type { CertFiles } from "./tls_certs.ts";

const STUNNEL = "/usr/bin/stunnel4";
/** Generous: a busy machine starts it slowly; this only catches one that never starts. */
const START_TIMEOUT_MS = 60_000;

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
  const child = new Deno.Command(STUNNEL, {
    args: [conf],
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  let exited = false;
  const status = child.status.then((s) => {
    exited = true;
    return s;
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
    await status;
    clearTimeout(timer);
  };
  const deadline = Date.now() + START_TIMEOUT_MS;
  while (Date.now() < deadline && !exited) {
    if (await accepts(port) && await accepts(mutualPort)) return { port, mutualPort, stop };
    await new Promise((r) => setTimeout(r, 50));
  }
  await stop();
  throw new Error(
    `stunnel did not listen on ${port} and ${mutualPort} within ${START_TIMEOUT_MS} ms; log:\n` +
      await logTail(log),
  );
}
