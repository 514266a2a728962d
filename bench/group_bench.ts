/**
 * Sandbox groups (issue 19): a host restart with many idle tasks in groups,
 * against a private etcd, each figure beside its raw primitive measured in
 * the same run:
 *
 * - all tasks running after the host starts (their tasks written before),
 *   vs the same number of bare processes, each starting as many bare
 *   permission-less Workers as a group has members, spawned all at once;
 * - PSS per task (the sandbox processes' and the host's growth, over the
 *   tasks), vs the PSS per Worker of those bare processes;
 * - the host's RSS with every task running, vs before it started them;
 * - the bridge round trip and the script start of a grouped script with
 *   every task running, vs an ungrouped one in the same host;
 * - then, a host restart with ungrouped idle tasks (one process each):
 *   all running after the host starts, vs as many bare processes with one
 *   bare Worker each, spawned at once (the floor: spawn cost × count / cores),
 *   and their PSS per task (the host's growth included) vs the PSS of one
 *   of those bare processes.
 *
 * `BENCH_GROUP_TASKS` sets how many grouped tasks (default 1000; 0: none),
 * `BENCH_GROUP_SIZE` how many per group (default 50), `BENCH_IDLE_TASKS`
 * how many ungrouped ones (default 200; 0: none). Run alone:
 * `BENCH_GROUP_TASKS=100 deno run --allow-all bench/group_bench.ts`.
 *
 * @module
 */

import { type Figure, median, printFigures } from "./figure.ts";
import { IDLE, PROBE, startBenchHost } from "./_host.ts";
import { children, memory } from "./_proc.ts";

/** A bare process: `n` idle permission-less Workers, then "up" on stdout; exits when stdin closes. */
const BARE = `
const n = Number(Deno.args[0]);
const url = URL.createObjectURL(new Blob(["self.onmessage = () => {}; self.postMessage(1);"], { type: "text/javascript" }));
await Promise.all(Array.from({ length: n }, () => new Promise((r) => {
  const w = new Worker(url, { type: "module", deno: { permissions: "none" } });
  w.onmessage = r;
})));
console.log("up");
for await (const _ of Deno.stdin.readable) { /* until closed */ }
Deno.exit(0);
`;

/**
 * The raw primitive: `processes` bare processes with `workers` Workers each,
 * spawned at once. Returns the time until all are up (s) and the PSS per Worker (MiB).
 */
async function bareGroups(
  processes: number,
  workers: number,
): Promise<{ up: number; pss: number }> {
  const file = await Deno.makeTempFile({ suffix: ".js" });
  await Deno.writeTextFile(file, BARE);
  const heap = "--v8-flags=--max-old-space-size=64";
  const t0 = performance.now();
  const kids = Array.from({ length: processes }, () =>
    new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--quiet",
        "--no-config",
        "--unstable-worker-options",
        heap,
        file,
        `${workers}`,
      ],
      stdin: "piped",
      stdout: "piped",
      stderr: "null",
    }).spawn());
  const reader = async (c: Deno.ChildProcess) => {
    const r = c.stdout.getReader();
    const { value } = await r.read();
    r.releaseLock();
    return new TextDecoder().decode(value);
  };
  await Promise.all(kids.map(reader));
  const up = (performance.now() - t0) / 1000;
  let pss = 0;
  for (const c of kids) pss += (await memory(c.pid)).pss;
  for (const c of kids) {
    await c.stdin.close();
    await c.stdout.cancel();
    await c.status;
  }
  await Deno.remove(file);
  return { up, pss: pss / (processes * workers) };
}

/**
 * A host restart with `tasks` ungrouped idle tasks, written before it starts:
 * seconds until all run, beside as many bare processes with one Worker each.
 */
async function ungroupedRestart(tasks: number): Promise<Figure[]> {
  if (tasks <= 0) return [];
  const bare = await bareGroups(tasks, 1);
  const bench = await startBenchHost("bench-restart", 1);
  const { logger, s, host } = bench;
  try {
    await s.scripts.add("idle", IDLE, { language: "javascript" });
    for (let i = 0; i < tasks; i++) await s.tasks.add("idle", `bench/u/${i}`);
    let up = 0;
    const off = logger.subscribe((l) => {
      if (l.message === "up") up++;
    });
    const hostMem0 = await memory(Deno.pid);
    const t0 = performance.now();
    await host.start();
    await logger.waitFor(() => up >= tasks);
    const allUp = (performance.now() - t0) / 1000;
    off();
    // Default isolation's memory, beside the bare process with one Worker
    // it is made of: the sandboxes' PSS (spares are not tasks) and the
    // host's growth, per task.
    const kids = await children(Deno.pid);
    let pss = 0;
    for (const pid of kids) pss += (await memory(pid)).pss;
    const hostGrowth = ((await memory(Deno.pid)).pss - hostMem0.pss) / tasks;
    return [{
      name: `groups.${tasks}_ungrouped_restart_all_up`,
      value: allUp,
      unit: "s",
      rawName: `${tasks} bare processes × 1 Worker`,
      raw: bare.up,
      target: "value <= 5",
    }, {
      name: `groups.${tasks}_ungrouped_pss_per_task`,
      value: pss / Math.max(1, kids.length) + hostGrowth,
      unit: "MiB",
      rawName: "bare process × 1 Worker, PSS",
      raw: bare.pss,
      target: "value <= 15",
    }];
  } finally {
    await bench.close();
  }
}

/** Measure sandbox groups; see the module doc. */
export async function benchGroups(
  tasks = Number(Deno.env.get("BENCH_GROUP_TASKS") ?? "1000"),
  size = Number(Deno.env.get("BENCH_GROUP_SIZE") ?? "50"),
  ungrouped = Number(Deno.env.get("BENCH_IDLE_TASKS") ?? "200"),
): Promise<Figure[]> {
  // Grouped first: the host's RSS before its tasks is then this process's own.
  const figures = tasks > 0 ? await groupedRestart(tasks, size) : [];
  return [...figures, ...await ungroupedRestart(ungrouped)];
}

/** A host restart with `tasks` idle tasks in groups of `size`, and probes beside it. */
async function groupedRestart(tasks: number, size: number): Promise<Figure[]> {
  const groups = Math.ceil(tasks / size);
  const bare = await bareGroups(groups, size);
  const bench = await startBenchHost("bench-groups", 1);
  const { pool, logger, s, host } = bench;
  try {
    await s.scripts.add("idle", IDLE, { language: "javascript" });
    await s.scripts.add("probe", PROBE, { language: "javascript" });
    // The host's restart: every task is written before it starts.
    for (let i = 0; i < tasks; i++) {
      await s.tasks.add("idle", `bench/g/${i}`, { settings: [["group", `g${i % groups}`]] });
    }
    const hostMem0 = await memory(Deno.pid);
    let up = 0;
    const t0 = performance.now();
    const off = logger.subscribe((l) => {
      if (l.message === "up" && l.source.startsWith("bench/g/")) up++;
    });
    await host.start();
    await logger.waitFor(() => up >= tasks);
    const allUp = (performance.now() - t0) / 1000;
    off();
    let pss = 0;
    for (const pid of await children(Deno.pid)) pss += (await memory(pid)).pss;
    const hostMem = await memory(Deno.pid);
    // The spare (one process, no task) is in `pss`: a small overstatement.
    const pssPerTask = (pss + hostMem.pss - hostMem0.pss) / tasks;

    // A probe with every task running, grouped and not; and a start of each.
    const probe = async (path: string, settings: [string, string][]) => {
      await s.tasks.add("probe", path, { settings });
      await logger.waitFor((l) => l.source === path && l.message.startsWith("median "));
      const line = logger.lines.find((l) => l.source === path && l.message.startsWith("median "))!;
      await s.tasks.delete(path);
      return Number(line.message.slice(7));
    };
    const tripOwn = await probe("bench/probe/own", []);
    const tripGrouped = await probe("bench/probe/grouped", [["group", "g0"]]);
    const start = async (path: string, settings: [string, string][]) => {
      await pool.ready();
      const t = performance.now();
      await s.tasks.add("idle", path, { settings });
      await logger.waitFor((l) => l.source === path && l.message === "up");
      const took = performance.now() - t;
      await s.tasks.delete(path);
      return took;
    };
    const startsOwn: number[] = [];
    const startsGrouped: number[] = [];
    for (let i = 0; i < 5; i++) {
      startsOwn.push(await start(`bench/start/own${i}`, []));
      startsGrouped.push(await start(`bench/start/grouped${i}`, [["group", "g0"]]));
    }
    return [
      {
        name: `groups.${tasks}_idle_all_up`,
        value: allUp,
        unit: "s",
        rawName: `${groups} bare processes × ${size} Workers`,
        raw: bare.up,
        target: "value <= 30",
      },
      {
        name: `groups.${tasks}_idle_pss_per_task`,
        value: pssPerTask,
        unit: "MiB",
        rawName: "bare Worker's PSS",
        raw: bare.pss,
        target: "value <= 8",
      },
      {
        name: `groups.${tasks}_idle_host_rss`,
        value: hostMem.rss,
        unit: "MiB",
        rawName: "host RSS before the tasks",
        raw: hostMem0.rss,
        target: "(report)",
      },
      {
        name: `groups.round_trip_grouped`,
        value: tripGrouped,
        unit: "µs",
        rawName: "round trip ungrouped",
        raw: tripOwn,
        target: "ratio <= 2",
      },
      {
        name: `groups.script_start_grouped`,
        value: median(startsGrouped),
        unit: "ms",
        rawName: "script start ungrouped",
        raw: median(startsOwn),
        target: "(report)",
      },
    ];
  } finally {
    await bench.close();
  }
}

if (import.meta.main) printFigures(await benchGroups());
