/**
 * A host of the benchmarks: a private etcd, a sandbox pool and a host on
 * them, with the idle and probing scripts several benchmarks run.
 *
 * @module
 */

import { type EtcdServer, startEtcd } from "../tests/_util/etcd_server.ts";
import { EtcdStore } from "../host/store/etcd_store.ts";
import { Layout } from "../host/layout.ts";
import { MemoryLogger } from "../host/log.ts";
import { SandboxPool } from "../host/bridge/sandbox.ts";
import { Host } from "../host/tasks/host.ts";
import { SystemClock } from "../host/time/clock.ts";
import { type Services, servicesOn } from "../host/cli/services.ts";

/** A script that logs "up" once it runs, then idles. */
export const IDLE = 'moat.setup();\nmoat.on_start(() => moat.logger.info("up"));\n';

/** A script that logs the median of 500 `time_at` round trips (µs), then ends. */
export const PROBE = `moat.setup();
moat.run(async () => {
  const times = [];
  for (let i = 0; i < 700; i++) {
    const t0 = performance.now();
    await moat.time_at("12 hr", {});
    if (i >= 200) times.push((performance.now() - t0) * 1000);
  }
  times.sort((a, b) => a - b);
  moat.logger.info("median " + times[times.length >> 1]);
  moat.end();
});
`;

/** A benchmark's host and what it stands on; `close` ends them all. */
export interface BenchHost {
  etcd: EtcdServer;
  store: EtcdStore;
  pool: SandboxPool;
  logger: MemoryLogger;
  clock: SystemClock;
  s: Services;
  host: Host;
  close(): Promise<void>;
}

/** A host named "bench" below `/moat` on a private etcd named `name`, not started yet. */
export async function startBenchHost(name: string, warm: number): Promise<BenchHost> {
  const etcd = await startEtcd({ name });
  const store = new EtcdStore({ endpoints: [etcd.endpoint] });
  const pool = new SandboxPool({ warm });
  const logger = new MemoryLogger();
  const clock = new SystemClock();
  const host = new Host({
    store,
    layout: new Layout("/moat"),
    hostName: "bench",
    isolation: pool,
    logger,
    clock,
  });
  return {
    etcd,
    store,
    pool,
    logger,
    clock,
    s: servicesOn(store, "/moat"),
    host,
    async close() {
      await host.close();
      await pool.close();
      await store.close();
      await etcd.stop();
    },
  };
}
