/**
 * The services a test gives the `moat` child processes it runs over the
 * real RabbitMQ: an etcd of its own, exchanges of its own, a temporary
 * folder, and every `moat` process it spawned, stopped together.
 *
 * @module
 */

import { type MoatProcess, spawnMoat } from "./cli.ts";
import { type EtcdServer, startEtcd } from "./etcd_server.ts";
import { deleteExchanges, uniqueExchanges } from "./rabbit.ts";

/** What `startMoatServices` started. */
export interface MoatServices {
  readonly etcd: EtcdServer;
  /** The test's exchanges (`ex.prefix` starts each of their names). */
  readonly ex: ReturnType<typeof uniqueExchanges>;
  /** A temporary folder for the test's files. */
  readonly dir: string;
  /** The environment of a `moat` process that runs as host `host`. */
  env(host: string): Record<string, string>;
  /** Start `moat ARGS…` as host `host`; `stop` kills it if it still runs. */
  spawn(host: string, ...args: string[]): MoatProcess;
  /**
   * Kill every spawned process that still runs (SIGCONT first, for a
   * stopped one) and await its exit, then delete the exchanges and the
   * folder, and stop etcd. Safe to call twice.
   */
  stop(): Promise<void>;
}

/** Start an etcd, make exchanges and a folder (named `prefix…`) for one test. */
export async function startMoatServices(prefix: string): Promise<MoatServices> {
  const etcd = await startEtcd();
  const ex = uniqueExchanges();
  const dir = await Deno.makeTempDir({ prefix });
  const exchanges = JSON.stringify({
    alert: ex.alert,
    rpc: ex.rpc,
    reply: ex.reply,
    dead: ex.dead,
  });
  const env = (host: string) => ({
    MOAT_ETCD: etcd.endpoint,
    MOAT_HOST: host,
    MOAT_AMQP_EXCHANGES: exchanges,
  });
  const procs: MoatProcess[] = [];
  let stopped = false;
  return {
    etcd,
    ex,
    dir,
    env,
    spawn(host, ...args) {
      const p = spawnMoat(args, { env: env(host) });
      procs.push(p);
      return p;
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      for (const p of procs) p.kill("SIGCONT");
      for (const p of procs) p.kill("SIGKILL");
      for (const p of procs) await p.status;
      await deleteExchanges(ex);
      await Deno.remove(dir, { recursive: true });
      await etcd.stop();
    },
  };
}
