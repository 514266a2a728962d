/**
 * Host benchmarks against a private etcd, each beside its raw primitives
 * measured in the same run:
 *
 * - script start: task keys written → the script's first `on_start` runs,
 *   vs a raw Worker spawn plus one raw etcd put→watch event;
 * - many idle script tasks on one host: RSS and PSS per task, and the
 *   bridge round trip with them all running vs with one;
 * - `moat.data.set` round trip (quotas checked, none refusing) vs the raw
 *   etcd transaction it makes, and what the quota checks alone cost per
 *   write vs that round trip (the quotas' share of it).
 *
 * Run alone: `deno run --allow-all --unstable-worker-options bench/host_bench.ts` (`BENCH_IDLE_TASKS`
 * sets how many idle tasks; default 200).
 *
 * @module
 */

import { type Figure, median, printFigures } from "./figure.ts";
import { IDLE, PROBE, startBenchHost } from "./_host.ts";
import type { EtcdStore } from "../host/store/etcd_store.ts";
import { children, memory } from "./_proc.ts";
import { DEFAULT_QUOTAS, jsonBytes, StoreQuotas, utf8Length } from "../host/capabilities/quotas.ts";

const STARTS = 10;

/** A raw permission-less Worker from a blob: spawn → first message, ms. */
async function rawWorkerSpawn(): Promise<number> {
  const url = URL.createObjectURL(
    new Blob(["self.postMessage('up');"], { type: "text/javascript" }),
  );
  const t0 = performance.now();
  const w = new Worker(url, { type: "module", deno: { permissions: "none" } });
  await new Promise<void>((r) => w.onmessage = () => r());
  const took = performance.now() - t0;
  w.terminate();
  URL.revokeObjectURL(url);
  return took;
}

/** One raw etcd put → watch event on the same client, ms. */
export async function rawPutWatch(store: EtcdStore, key: string): Promise<number> {
  let got!: () => void;
  const seen = new Promise<void>((r) => got = r);
  const w = await store.watch(key, () => got());
  const t0 = performance.now();
  await store.put(key, String(t0));
  await seen;
  const took = performance.now() - t0;
  await w.close();
  return took;
}

const WRITER = `moat.setup();
moat.run(async () => {
  const times = [];
  for (let i = 0; i < 400; i++) {
    const t0 = performance.now();
    await moat.data.set("n", { i, at: "2026-11-30T12:00:00Z", on: true });
    if (i >= 100) times.push((performance.now() - t0) * 1000);
  }
  times.sort((a, b) => a - b);
  moat.logger.info("median " + times[times.length >> 1]);
  moat.end();
});
`;

/** The raw primitive of `data.set`: the guarded etcd put it makes, median µs. */
async function rawGuardedPut(store: EtcdStore): Promise<number> {
  await store.put("/bench/guard", "token");
  const times: number[] = [];
  for (let i = 0; i < 400; i++) {
    const t0 = performance.now();
    await store.txn(
      [{ key: "/bench/guard", target: "value", op: "==", value: "token" }],
      [{ type: "put", key: "/bench/data/n", value: JSON.stringify({ i }) }],
    );
    if (i >= 100) times.push((performance.now() - t0) * 1000);
  }
  return median(times);
}

/** µs the quota checks of one `data.set` of a small value cost (value size, rate, volume). */
function quotaChecks(): number {
  const q = new StoreQuotas({ ...DEFAULT_QUOTAS, writeRate: 1e12, writeVolume: 1e15 });
  const value = { i: 1, at: "2026-11-30T12:00:00Z", on: true };
  const n = 200_000;
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    const bytes = jsonBytes(value);
    q.value(bytes, "v");
    q.write(bytes + utf8Length("n"));
  }
  return (performance.now() - t0) * 1000 / n;
}

/** Measure the host; see the module doc. */
export async function benchHost(
  idleTasks = Number(Deno.env.get("BENCH_IDLE_TASKS") ?? "200"),
): Promise<Figure[]> {
  const bench = await startBenchHost("bench", 2);
  const { store, pool, logger, s, host } = bench;
  try {
    await host.start();
    const ups = (src: string) => logger.lines.filter((l) => l.source === src && l.message === "up");

    // --- script start vs raw Worker spawn + raw put→watch -----------------
    await s.scripts.add("idle", IDLE, { language: "javascript" });
    const rawSpawn: number[] = [];
    const rawWatch: number[] = [];
    const starts: number[] = [];
    for (let i = 0; i < STARTS; i++) {
      rawSpawn.push(await rawWorkerSpawn());
      rawWatch.push(await rawPutWatch(store, `/bench/raw/${i}`));
      await pool.ready();
      const path = `bench/start${i}`;
      const t0 = performance.now();
      await s.tasks.add("idle", path);
      await logger.waitFor((l) => l.source === path && l.message === "up");
      starts.push(performance.now() - t0);
      await s.tasks.delete(path);
    }
    const rawStart = median(rawSpawn) + median(rawWatch);

    // --- bridge round trip with one task, then with many idle -------------
    await s.scripts.add("probe", PROBE, { language: "javascript" });
    const probe = async (n: number) => {
      const path = `bench/probe${n}`;
      await s.tasks.add("probe", path);
      await logger.waitFor((l) => l.source === path && l.message.startsWith("median "));
      const line = logger.lines.find((l) => l.source === path && l.message.startsWith("median "))!;
      await s.tasks.delete(path);
      return Number(line.message.slice(7));
    };
    const tripOne = await probe(1);
    const hostMem0 = await memory(Deno.pid);
    const t0 = performance.now();
    for (let i = 0; i < idleTasks; i++) await s.tasks.add("idle", `bench/idle/${i}`);
    await logger.waitFor(() => {
      let n = 0;
      for (let i = 0; i < idleTasks; i++) if (ups(`bench/idle/${i}`).length) n++;
      return n === idleTasks;
    });
    const allUp = performance.now() - t0;
    let rss = 0, pss = 0;
    const kids = await children(Deno.pid);
    for (const pid of kids) {
      const m = await memory(pid);
      rss += m.rss;
      pss += m.pss;
    }
    const hostMem = await memory(Deno.pid);
    // Spares are not tasks: leave them out of the per-task figure.
    const perTask = (x: number) => x / Math.max(1, kids.length);
    const tripMany = await probe(2);

    // --- data.set round trip, and the quota checks' share of it -----------
    await s.scripts.add("writer", WRITER, { language: "javascript" });
    // Quotas are checked but set out of reach: the figure is their cost.
    await store.put("/moat/task/bench/writer/:task/write_rate", "100000");
    await store.put("/moat/task/bench/writer/:task/write_volume", "100000000");
    await s.tasks.add("writer", "bench/writer", { data: [["n", "0"]] });
    await logger.waitFor((l) => l.source === "bench/writer" && l.message.startsWith("median "));
    const dataSet = Number(
      logger.lines.find((l) => l.source === "bench/writer" && l.message.startsWith("median "))!
        .message.slice(7),
    );
    await s.tasks.delete("bench/writer");
    const rawPut = await rawGuardedPut(store);
    const checks = quotaChecks();
    return [
      {
        name: "host.script_start",
        value: median(starts),
        unit: "ms",
        rawName: "Worker spawn + etcd put→watch",
        raw: rawStart,
        target: "ratio <= 3",
      },
      {
        name: `host.idle_tasks_rss_per_task`,
        value: perTask(rss) + (hostMem.rss - hostMem0.rss) / idleTasks,
        unit: "MiB",
        rawName: "",
        raw: NaN,
      },
      {
        name: `host.idle_tasks_pss_per_task`,
        value: perTask(pss) + (hostMem.pss - hostMem0.pss) / idleTasks,
        unit: "MiB",
        rawName: "",
        raw: NaN,
      },
      {
        name: `host.idle_tasks_all_up`,
        value: allUp / 1000,
        unit: "s",
        rawName: "",
        raw: NaN,
      },
      {
        name: `host.round_trip_with_${idleTasks}_idle`,
        value: tripMany,
        unit: "µs",
        rawName: "round trip with 1 task",
        raw: tripOne,
        target: "ratio <= 2",
      },
      {
        name: "host.data_set_round_trip",
        value: dataSet,
        unit: "µs",
        rawName: "etcd guarded put (txn)",
        raw: rawPut,
        target: "(report)",
      },
      {
        name: "host.quota_checks_per_write",
        value: checks,
        unit: "µs",
        rawName: "data.set round trip",
        raw: dataSet,
        target: "ratio <= 0.1",
      },
    ];
  } finally {
    await bench.close();
  }
}

if (import.meta.main) printFigures(await benchHost());
