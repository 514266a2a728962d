/**
 * The security suite's host: a real `Host` on the embedded store with a
 * real `SandboxPool`, one per test file, and a neighbour task that keeps
 * doing `moat.time_at` round trips, so that every attempt can check that
 * the host and the neighbour stayed healthy.
 *
 * @module
 */

import { assert, assertEquals } from "../_util/assert.ts";
import { waitForKey } from "../_util/store_wait.ts";
import { withTimeout } from "../_util/wait.ts";
import { MemoryStore } from "../../host/store/memory_store.ts";
import { Layout } from "../../host/layout.ts";
import { MemoryLogger } from "../../host/log.ts";
import { type SandboxLimits, SandboxPool } from "../../host/bridge/sandbox.ts";
import { Host } from "../../host/tasks/host.ts";
import { servicesOn } from "../../host/cli/services.ts";

/** Short budgets so that runaways are caught fast in tests. */
export const TEST_LIMITS: Partial<SandboxLimits> = {
  cpu: 1,
  cpuWindow: 2,
  heartbeat: 2,
  memory: 160,
  callRate: 100,
};

/** The neighbour: a round trip to the host, logged, five times a second. */
const NEIGHBOUR = `
moat.setup();
for (;;) {
  const t0 = performance.now();
  await moat.time_at("12 hr");
  moat.logger.info("rt " + (performance.now() - t0).toFixed(3));
  await new Promise((r) => setTimeout(r, 200));
}
`;

/** How one attempt ended. */
export interface Outcome {
  state: string;
  message: string;
  debug: string;
  /** The task's log lines (script output and the runner's own). */
  logs: string[];
}

const NEIGHBOUR_PATH = "sec/neighbour";

/** A host with a neighbour; see the module doc. */
export class SecurityHost {
  readonly store = new MemoryStore();
  readonly logger = new MemoryLogger();
  readonly pool: SandboxPool;
  readonly host: Host;
  readonly services = servicesOn(this.store, "/moat");
  #n = 0;

  private constructor(limits: Partial<SandboxLimits>) {
    this.pool = new SandboxPool({ warm: 2, limits });
    this.host = new Host({
      store: this.store,
      layout: new Layout("/moat"),
      hostName: "sec",
      isolation: this.pool,
      logger: this.logger,
    });
  }

  /** Start a host and its neighbour; resolves once the neighbour answers. */
  static async open(limits: Partial<SandboxLimits> = TEST_LIMITS): Promise<SecurityHost> {
    const h = new SecurityHost(limits);
    await h.services.scripts.add("neighbour", NEIGHBOUR, { language: "javascript" });
    await h.services.tasks.add("neighbour", NEIGHBOUR_PATH);
    await h.host.start();
    await withTimeout(h.#roundTrips(1), 20_000, "the neighbour's first round trip");
    return h;
  }

  /** The neighbour's round-trip times so far, ms. */
  get neighbourTrips(): number[] {
    return this.logger.lines
      .filter((l) => l.source === NEIGHBOUR_PATH && l.message.startsWith("rt "))
      .map((l) => Number(l.message.slice(3)));
  }

  #roundTrips(more: number): Promise<void> {
    const want = this.neighbourTrips.length + more;
    return this.logger.waitFor(() => this.neighbourTrips.length >= want);
  }

  /**
   * Run `code` as a new script task (JavaScript) until its first run ends,
   * then delete the task. `keys` are set on the task first (failures are not
   * retried unless `keys` says otherwise).
   */
  async run(code: string, keys: Record<string, string> = {}, ms = 20_000): Promise<Outcome> {
    const name = `attempt${++this.#n}`;
    const path = `sec/${name}`;
    const dir = `/moat/task/${path}/:task/`;
    for (const [k, v] of Object.entries({ retry: "600", ...keys })) {
      await this.store.put(dir + k, v);
    }
    await this.services.scripts.add(name, code, { language: "javascript" });
    await this.services.tasks.add(name, path);
    const status = `/moat/status/run/${path}/:task/`;
    await waitForKey(this.store, status + "state", (v) => v !== undefined, ms);
    const out: Outcome = {
      state: (await this.store.get(status + "state"))?.value ?? "",
      message: (await this.store.get(status + "message"))?.value ?? "",
      debug: (await this.store.get(status + "debug"))?.value ?? "",
      logs: this.logger.lines.filter((l) => l.source === path).map((l) => l.message),
    };
    const runner = this.host.runner(path);
    await this.services.tasks.delete(path);
    if (runner) await withTimeout(runner.done, 10_000, `the runner of ${path} to finish`);
    return out;
  }

  /**
   * The host and the neighbour are fine: the neighbour still runs its first
   * run, answers fresh round trips, and they are quick (generously: timing
   * belongs in the benchmarks).
   */
  async assertHealthy(): Promise<void> {
    await withTimeout(this.#roundTrips(2), 10_000, "two fresh neighbour round trips");
    const trips = this.neighbourTrips;
    const last = trips[trips.length - 1]!;
    assert(last < 1000, `neighbour round trip took ${last} ms`);
    assert(this.host.running.includes(NEIGHBOUR_PATH), "the neighbour's runner is gone");
    assert(this.host.runner(NEIGHBOUR_PATH)?.runs === 1, "the neighbour was restarted");
    // deno-lint-ignore no-explicit-any
    assert(({} as any).polluted === undefined, "the host's Object.prototype was polluted");
  }

  async close(): Promise<void> {
    try {
      await this.host.close();
    } finally {
      await this.pool.close();
      await this.store.close();
    }
  }
}

/**
 * One test file's host, opened by the first test that needs it; close it
 * with a last test registered by {@linkcode closeShared}.
 */
export function sharedHost(limits?: Partial<SandboxLimits>): () => Promise<SecurityHost> {
  let h: Promise<SecurityHost> | undefined;
  return () => h ??= SecurityHost.open(limits);
}

/** Register the test that closes a shared host (last in its file). */
export function closeShared(get: () => Promise<SecurityHost>): void {
  Deno.test({
    name: "after every attempt the neighbour is still healthy and the host closes cleanly",
    ...SHARED,
    fn: async () => {
      const h = await get();
      await h.assertHealthy();
      await h.close();
      assertEquals(h.host.running, []);
    },
  });
}

/** Test options for tests sharing a host: its timers and processes outlive a single test. */
export const SHARED = { sanitizeOps: false, sanitizeResources: false } as const;
