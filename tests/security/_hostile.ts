/**
 * The hostile-script suite's host: a real `Host` on a private etcd and the
 * local RabbitMQ (exchanges of its own), with a real `SandboxPool`, and a
 * neighbour task that keeps writing its data and doing round trips. Each
 * attack then checks that it was refused or bounded, that the neighbour
 * stayed on time, and that the CLI and a new task still work.
 *
 * @module
 */

import { assert, assertEquals } from "../_util/assert.ts";
import { waitForKey } from "../_util/store_wait.ts";
import { withTimeout } from "../_util/wait.ts";
import { runMoat } from "../_util/cli.ts";
import { etcdctl, type EtcdServer, startEtcd } from "../_util/etcd_server.ts";
import { deleteExchanges, RABBIT_URL, rabbitmqctl, uniqueExchanges } from "../_util/rabbit.ts";
import { EtcdStore } from "../../host/store/etcd_store.ts";
import { Layout } from "../../host/layout.ts";
import { MemoryLogger } from "../../host/log.ts";
import { type SandboxLimits, SandboxPool } from "../../host/bridge/sandbox.ts";
import { Host } from "../../host/tasks/host.ts";
import { servicesOn } from "../../host/cli/services.ts";
import { AmqpBus } from "../../host/bus/amqp_bus.ts";
import { readQuotas } from "../../host/capabilities/quotas.ts";

/**
 * The sandbox limits of the suite: far out of reach, since the attacks here
 * are about quotas, not runaways (tests/security/runaway_test.ts has those),
 * and a busy machine must not turn a slow attack into a CPU-budget kill.
 */
export const HOSTILE_LIMITS: Partial<SandboxLimits> = {
  cpu: 10_000,
  cpuWindow: 60,
  heartbeat: 3_600,
  memory: 512,
  callRate: 100_000,
};

/** The host's name: tasks live below `/moat/task/hostile/`. */
export const HOST_NAME = "hostile";

/** The neighbour: a round trip and a data write, logged, five times a second. */
const NEIGHBOUR = `
moat.setup();
let n = 0;
for (;;) {
  const t0 = performance.now();
  await moat.time_at("12 hr");
  const t1 = performance.now();
  await moat.data.set("n", ++n);
  moat.logger.info("rt " + (t1 - t0).toFixed(3) + " w " + (performance.now() - t1).toFixed(3));
  await new Promise((r) => setTimeout(r, 200));
}
`;

const NEIGHBOUR_PATH = `${HOST_NAME}/neighbour`;

/** A short, harmless script: proves that a new task still starts and ends well. */
const FRESH = `moat.setup(); moat.run(async () => { await moat.time_at("1 min"); moat.end(); });`;

/** How one attempt ended. */
export interface Outcome {
  state: string;
  message: string;
  debug: string;
  /** The task's log lines (script output and the runner's own). */
  logs: string[];
}

/** Options of {@linkcode HostileHost.open}. */
export interface HostileOptions {
  /** Keys written under `/moat/config/run/` before the host starts. */
  config?: Record<string, string>;
  /** Sandbox limits of the pool. @default HOSTILE_LIMITS */
  limits?: Partial<SandboxLimits>;
}

/** A host on a private etcd and the local RabbitMQ, with a neighbour; see the module doc. */
export class HostileHost {
  readonly etcd: EtcdServer;
  readonly store: EtcdStore;
  readonly bus: AmqpBus;
  readonly exchanges: ReturnType<typeof uniqueExchanges>;
  readonly logger = new MemoryLogger();
  readonly pool: SandboxPool;
  readonly host: Host;
  readonly services;
  /** The pool's own temporary folder (its sandboxes' folders). */
  readonly tmpDir = Deno.makeTempDirSync({ prefix: "moat-hostile-" });
  /** The `/config/run` keys it was opened with. */
  readonly config: Record<string, string>;
  #n = 0;
  #closed = false;

  private constructor(
    etcd: EtcdServer,
    bus: AmqpBus,
    exchanges: ReturnType<typeof uniqueExchanges>,
    limits: Partial<SandboxLimits>,
    config: Record<string, string>,
  ) {
    this.etcd = etcd;
    this.config = config;
    this.store = new EtcdStore({ endpoints: [etcd.endpoint] });
    this.services = servicesOn(this.store, "/moat");
    this.bus = bus;
    this.exchanges = exchanges;
    // Its own temporary folder; a slow sandbox start on a busy machine is no failure here.
    this.pool = new SandboxPool({ warm: 2, limits, tmpDir: this.tmpDir, readyTimeoutMs: 120_000 });
    this.host = new Host({
      store: this.store,
      layout: new Layout("/moat"),
      hostName: HOST_NAME,
      isolation: this.pool,
      logger: this.logger,
      bus,
    });
  }

  /** Start etcd, the bus, the host and its neighbour; resolves once the neighbour writes. */
  static async open(options: HostileOptions = {}): Promise<HostileHost> {
    const etcd = await startEtcd({ name: "hostile" });
    const exchanges = uniqueExchanges();
    let bus: AmqpBus | undefined;
    try {
      // Queue bounds from the config, as `moat run` reads them.
      const quotas = readQuotas(options.config ?? {}, {});
      bus = new AmqpBus({
        url: RABBIT_URL,
        exchanges,
        connectionName: `moat-hostile-${exchanges.prefix}`,
        queueLength: quotas.queueLength,
        queueBytes: quotas.queueBytes,
        queueTtlMs: quotas.queueTtl * 1000,
      });
      await bus.connect();
    } catch (e) {
      await bus?.close();
      await etcd.stop();
      throw e;
    }
    const h = new HostileHost(
      etcd,
      bus,
      exchanges,
      options.limits ?? HOSTILE_LIMITS,
      options.config ?? {},
    );
    try {
      for (const [k, v] of Object.entries(options.config ?? {})) {
        await h.store.put(`/moat/config/run/${k}`, v);
      }
      await h.services.scripts.add("neighbour", NEIGHBOUR, { language: "javascript" });
      await h.services.tasks.add("neighbour", NEIGHBOUR_PATH, { data: [["n", "0"]] });
      await h.host.start();
      await withTimeout(h.#roundTrips(1), 60_000, "the neighbour's first round trip");
    } catch (e) {
      await h.close();
      throw e;
    }
    return h;
  }

  /** The neighbour's round-trip and write times so far, ms. */
  get neighbourTrips(): { rt: number; w: number }[] {
    const out: { rt: number; w: number }[] = [];
    for (const l of this.logger.lines) {
      if (l.source !== NEIGHBOUR_PATH) continue;
      const m = /^rt ([\d.]+) w ([\d.]+)$/.exec(l.message);
      if (m) out.push({ rt: Number(m[1]), w: Number(m[2]) });
    }
    return out;
  }

  #roundTrips(more: number): Promise<void> {
    const want = this.neighbourTrips.length + more;
    return this.logger.waitFor(() => this.neighbourTrips.length >= want);
  }

  /** Lines a task logged so far. */
  lines(path: string): string[] {
    return this.logger.lines.filter((l) => l.source === path).map((l) => l.message);
  }

  /** Wait (at most `ms`) until `path` logged a line matching `pred`; the log is in the error. */
  waitLine(path: string, pred: (m: string) => boolean, ms = 60_000): Promise<void> {
    return withTimeout(
      this.logger.waitFor((l) => l.source === path && pred(l.message)),
      ms,
      `a matching line from ${path}`,
    ).catch((e) => {
      const log = this.logger.lines.slice(-60).map((l) => `${l.source} ${l.message}`).join("\n");
      throw new Error(`${(e as Error).message}; last lines:\n${log}`);
    });
  }

  /** Wait until a task of a {@linkcode registeringScript} logged "registered". */
  registered(path: string): Promise<void> {
    return this.waitLine(path, (m) => m === "registered", 30_000);
  }

  /**
   * Store `code` (JavaScript) as a new script and start a task of it, with
   * `keys` on the task (failures are not retried soon unless `keys` says
   * so) and `data` as its data values. Returns the task path.
   */
  async start(
    code: string,
    keys: Record<string, string> = {},
    data: [string, string][] = [],
  ): Promise<string> {
    const name = `attack${++this.#n}`;
    const path = `${HOST_NAME}/${name}`;
    // Run keys first: the host ignores a task without its taskdef, which
    // `add` writes last, so the task starts once, with its keys.
    for (const [k, v] of Object.entries({ retry: "600", ...keys })) {
      await this.store.put(`/moat/task/${path}/:task/${k}`, v);
    }
    await this.services.scripts.add(name, code, { language: "javascript" });
    await this.services.tasks.add(name, path, { data });
    return path;
  }

  /** Run `code` as a task until its first run ends, then delete the task. */
  async run(
    code: string,
    keys: Record<string, string> = {},
    ms = 60_000,
    data: [string, string][] = [],
  ): Promise<Outcome> {
    const path = await this.start(code, keys, data);
    const out = await this.outcome(path, ms);
    await this.stop(path);
    return out;
  }

  /** Wait until the task at `path` has a state (its first run ended), and read it. */
  async outcome(path: string, ms = 60_000): Promise<Outcome> {
    const status = `/moat/status/run/${path}/:task/`;
    await waitForKey(this.store, status + "state", (v) => v !== undefined, ms);
    return {
      state: (await this.store.get(status + "state"))?.value ?? "",
      message: (await this.store.get(status + "message"))?.value ?? "",
      debug: (await this.store.get(status + "debug"))?.value ?? "",
      logs: this.lines(path),
    };
  }

  /** Delete a task and wait for its runner to finish. */
  async stop(path: string): Promise<void> {
    const runner = this.host.runner(path);
    await this.services.tasks.delete(path);
    if (runner) await withTimeout(runner.done, 60_000, `the runner of ${path} to finish`);
  }

  /** Run `moat ARGS…` against this etcd. */
  moat(...args: string[]) {
    return runMoat(["--etcd", this.etcd.endpoint, ...args]);
  }

  /** etcd's database size in bytes (`etcdctl endpoint status`). */
  async dbSize(): Promise<number> {
    const out = JSON.parse(await etcdctl(this.etcd.endpoint, "endpoint", "status", "-w", "json"));
    return Number(out[0].Status.dbSize);
  }

  /** Messages waiting in each queue of this host's exchanges, by queue name. */
  async queueDepths(): Promise<Map<string, number>> {
    const rows = JSON.parse(
      await rabbitmqctl("list_queues", "name", "messages", "--formatter", "json"),
    ) as { name: string; messages: number }[];
    return new Map(
      rows.filter((r) => r.name.startsWith(this.exchanges.prefix)).map((r) => [r.name, r.messages]),
    );
  }

  /**
   * The installation is fine: the neighbour still runs its first run, wrote
   * and answered twice more (how quickly is a figure of `deno task bench`,
   * not a test); `moat script list`, `moat status` and `moat errors` work;
   * and a new task starts and ends `ok`.
   */
  async assertHealthy(): Promise<void> {
    await withTimeout(this.#roundTrips(2), 60_000, "two fresh neighbour round trips and writes");
    assert(this.host.running.includes(NEIGHBOUR_PATH), "the neighbour's runner is gone");
    assertEquals(this.host.runner(NEIGHBOUR_PATH)?.runs, 1, "the neighbour was restarted");
    for (const args of [["script", "list"], ["status"], ["errors"]]) {
      const r = await this.moat(...args);
      assertEquals(r.code, 0, `moat ${args.join(" ")} failed: ${r.stderr}`);
    }
    const fresh = await this.run(FRESH, {}, 60_000);
    assertEquals(fresh.state, "ok", `a new task did not end ok: ${fresh.message}`);
  }

  /** Stop everything; remove the exchanges and the etcd data. Safe twice. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    try {
      await this.host.close();
    } finally {
      await this.pool.close();
      await this.bus.close();
      await this.store.close();
      await deleteExchanges(this.exchanges).catch(() => {});
      await this.etcd.stop();
      await Deno.remove(this.tmpDir, { recursive: true }).catch(() => {});
    }
  }
}

/**
 * One test file's hostile host, opened by the first test that needs it;
 * close it with a last test registered by {@linkcode closeHostile}.
 */
export function sharedHostile(options?: HostileOptions): () => Promise<HostileHost> {
  let h: Promise<HostileHost> | undefined;
  return () => h ??= HostileHost.open(options);
}

/** Register the test that checks and closes a shared hostile host (last in its file). */
export function closeHostile(get: () => Promise<HostileHost>): void {
  Deno.test({
    name: "after every attack the neighbour is on time, the CLI works and etcd stayed small",
    ...SHARED,
    fn: async () => {
      const h = await get();
      try {
        await h.assertHealthy();
        const size = await h.dbSize();
        assert(size < 64 * 1024 * 1024, `etcd's database grew to ${size} bytes`);
        const max = readQuotas(h.config, {}).queueLength;
        for (const [queue, n] of await h.queueDepths()) {
          assert(n <= max, `queue ${queue} holds ${n} messages, more than ${max}`);
        }
      } finally {
        await h.close();
      }
      assertEquals(h.host.running, []);
    },
  });
}

/**
 * A script that sets up, runs `body` (statements of an async function) and
 * ends: `moat.setup(); moat.run(async () => { BODY; moat.end(); });`.
 */
export function runScript(body: string): string {
  return `moat.setup();\nmoat.run(async () => {\n${body}\nmoat.end();\n});\n`;
}

/**
 * A script that sets up, makes `registrations` (statements run at set-up,
 * such as `moat.rpc(…)(…)`), logs "registered" a second later and stays up
 * (see {@linkcode HostileHost.registered}).
 */
export function registeringScript(registrations: string): string {
  return `moat.setup();\n${registrations}\nmoat.run(async () => {
  await moat.time_at("1 sec");
  moat.logger.info("registered");
  await new Promise(() => {});
});\n`;
}

/** The lines of `lines` that start with `prefix`. */
export function linesStarting(lines: string[], prefix: string): string[] {
  return lines.filter((l) => l.startsWith(prefix));
}

/** The first line of `lines` that starts with `prefix`; fails, showing them all, if none does. */
export function lineStarting(lines: string[], prefix: string): string {
  const line = lines.find((l) => l.startsWith(prefix));
  assert(line !== undefined, `no line starts with "${prefix}":\n${lines.join("\n")}`);
  return line;
}

/** Test options for tests sharing a host: its timers and processes outlive a single test. */
export const SHARED = { sanitizeOps: false, sanitizeResources: false } as const;
