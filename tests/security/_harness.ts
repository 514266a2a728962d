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
import { LocalBus } from "../../host/bus/local_bus.ts";

/**
 * The pool's limits: every one far out of reach, so that the neighbour and
 * each attempt meet only the limit the attempt sets on its task (see
 * {@linkcode CPU_BUDGET}, {@linkcode HEARTBEAT}). The heartbeat above all
 * is a wall-clock bound: on a busy machine a spinning script reaches it
 * long before it has used a CPU budget. Memory stays the pool's bound
 * (V8's heap limit and the RSS watch both count bytes, not time).
 */
export const TEST_LIMITS: Partial<SandboxLimits> = {
  cpu: 10_000,
  cpuWindow: 60,
  heartbeat: 3_600,
  memory: 160,
  callRate: 100,
};

/**
 * Task keys of an attempt that is to meet the CPU budget: one second of
 * CPU in a window so long that the second counts however slowly the
 * machine hands it out.
 */
export const CPU_BUDGET: Record<string, string> = { cpu: "1", cpu_window: "3600" };

/** Task keys of an attempt that is to meet the heartbeat (and no CPU budget). */
export const HEARTBEAT: Record<string, string> = { heartbeat: "2" };

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

/**
 * Assert that an attempt met the memory bounds: two bounds race, so either
 * the data size rlimit failed an allocation in the script (its error,
 * matching `refused`, ended the script), or the RSS sample (every 250 ms)
 * killed the process as out of memory.
 */
export function assertMemoryBound(out: Outcome, refused: RegExp = /allocation failed/i): void {
  assert(
    (out.state === "error" && refused.test(out.message)) ||
      (out.state === "fail" && /out of memory/.test(out.message)),
    `${out.state}: ${out.message}`,
  );
}

export const NEIGHBOUR_PATH = "sec/neighbour";

/** A host with a neighbour; see the module doc. */
export class SecurityHost {
  readonly store = new MemoryStore();
  readonly logger = new MemoryLogger();
  readonly pool: SandboxPool;
  readonly host: Host;
  readonly services = servicesOn(this.store, "/moat");
  /** The bus of the host's scripts: a test may call the RPCs they serve. */
  readonly bus = new LocalBus();
  /** The pool's own temporary folder (its sandboxes' folders). */
  readonly tmpDir = Deno.makeTempDirSync({ prefix: "moat-security-" });
  #n = 0;

  private constructor(limits: Partial<SandboxLimits>) {
    // A slow sandbox start on a busy machine is no failure here.
    this.pool = new SandboxPool({ warm: 2, limits, tmpDir: this.tmpDir, readyTimeoutMs: 120_000 });
    this.host = new Host({
      store: this.store,
      layout: new Layout("/moat"),
      hostName: "sec",
      isolation: this.pool,
      logger: this.logger,
      bus: this.bus,
    });
  }

  /**
   * Start a host and its neighbour; resolves once the neighbour answers.
   * `neighbour`: settings of the neighbour's task (e.g. its sandbox `group`).
   */
  static async open(
    limits: Partial<SandboxLimits> = TEST_LIMITS,
    neighbour: Record<string, string> = {},
  ): Promise<SecurityHost> {
    const h = new SecurityHost(limits);
    await h.services.scripts.add("neighbour", NEIGHBOUR, { language: "javascript" });
    await h.services.tasks.add("neighbour", NEIGHBOUR_PATH, {
      settings: Object.entries(neighbour),
    });
    await h.host.start();
    await withTimeout(h.#roundTrips(1), 60_000, "the neighbour's first round trip");
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
  async run(code: string, keys: Record<string, string> = {}, ms = 120_000): Promise<Outcome> {
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
    if (runner) await withTimeout(runner.done, 60_000, `the runner of ${path} to finish`);
    return out;
  }

  /**
   * The host and the neighbour are fine: the neighbour still runs its first
   * run and answers fresh round trips. How quickly is a figure of
   * `deno task bench` (security.round_trip_beside_2_runaways), not a test.
   */
  async assertHealthy(): Promise<void> {
    await withTimeout(this.#roundTrips(2), 60_000, "two fresh neighbour round trips");
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
      await this.bus.close();
      await this.store.close();
      await Deno.remove(this.tmpDir, { recursive: true }).catch(() => {});
    }
  }
}

/**
 * One test file's host, opened by the first test that needs it; close it
 * with a last test registered by {@linkcode closeShared}.
 */
export function sharedHost(
  limits?: Partial<SandboxLimits>,
  neighbour?: Record<string, string>,
): () => Promise<SecurityHost> {
  let h: Promise<SecurityHost> | undefined;
  return () => h ??= SecurityHost.open(limits, neighbour);
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
