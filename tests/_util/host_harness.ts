/**
 * A real Host on the embedded store with real sandbox processes, for tests
 * that run scripts: its log, and waiting for lines with a bounded timeout
 * that prints the whole log when it fails.
 *
 * @module
 */

import { withTimeout } from "./wait.ts";
import { MemoryStore } from "../../host/store/memory_store.ts";
import { Layout } from "../../host/layout.ts";
import { MemoryLogger } from "../../host/log.ts";
import { SandboxPool } from "../../host/bridge/sandbox.ts";
import { Host } from "../../host/tasks/host.ts";
import { servicesOn } from "../../host/cli/services.ts";
import type { Bus } from "../../host/bus/bus.ts";
import type { Clock } from "../../host/time/clock.ts";

/** Options of {@linkcode hostHarness}. */
export interface HostHarnessOptions {
  /** The host's bus (the caller closes it). @default the host's own LocalBus */
  bus?: Bus;
  /** The clock of the host and the store. @default new SystemClock() */
  clock?: Clock;
  /** Run each task once, without restarts. @default false */
  once?: boolean;
  /** The host's name. @default "h" */
  hostName?: string;
}

/** Build a host (named "h" unless told) on a fresh MemoryStore; close it with `close()`. */
export function hostHarness(options: HostHarnessOptions = {}) {
  const store = new MemoryStore(options.clock ? { clock: options.clock } : {});
  const logger = new MemoryLogger();
  const pool = new SandboxPool({ warm: 1 });
  const s = servicesOn(store, "/moat");
  const host = new Host({
    store,
    layout: new Layout("/moat"),
    hostName: options.hostName ?? "h",
    isolation: pool,
    logger,
    ...(options.bus ? { bus: options.bus } : {}),
    ...(options.clock ? { clock: options.clock } : {}),
    ...(options.once ? { once: true } : {}),
  });
  /** The messages a task logged, in order. */
  const lines = (task: string) =>
    logger.lines.filter((l) => l.source === task).map((l) => l.message);
  /** Wait (20 s at most) until `task` has logged a line matching `pred`. */
  const waitLine = (task: string, pred: (m: string) => boolean, what = "a log line") =>
    withTimeout(logger.waitFor((l) => l.source === task && pred(l.message)), 20_000, what)
      .catch((e) => {
        const log = logger.lines.map((l) => `${l.source} ${l.message}`).join("\n");
        throw new Error(`${e.message}; log:\n${log}`);
      });
  const close = async () => {
    await host.close();
    await pool.close();
    await store.close();
  };
  return { store, logger, pool, s, host, lines, waitLine, close };
}
