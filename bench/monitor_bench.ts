/**
 * Monitor benchmarks against a private etcd:
 *
 * - an etcd put by another client → the monitoring script's callback,
 *   vs a put by one client seen by another client's watch, at the same pace;
 * - many scripts each monitoring several nodes: the number of etcd watch
 *   streams the host uses (from etcd's own metrics), and the callback
 *   latency while the nodes change at a fixed rate, with nothing lost, and
 *   the CPU time the host and the sandbox processes spend per 1,000 changes.
 *
 * Run alone: `deno run --allow-all --unstable-worker-options bench/monitor_bench.ts`
 * (`BENCH_MONITOR_SCRIPTS`, default 100; `BENCH_MONITOR_NODES`, default 10;
 * `BENCH_MONITOR_RATE` changes per second, default 1000).
 *
 * @module
 */

import { type Figure, median, printFigures } from "./figure.ts";
import { startBenchHost } from "./_host.ts";
import { EtcdStore } from "../host/store/etcd_store.ts";
import process from "node:process";

/**
 * CPU time (ms) used so far by this process and by its child processes
 * other than etcd (the sandboxes; read from /proc, Linux only: NaN
 * elsewhere). On a shared, busy machine these vary less than latencies.
 */
function cpuMs(): { host: number; sandboxes: number } {
  const { user, system } = process.cpuUsage();
  let sandboxes = 0;
  try {
    for (const entry of Deno.readDirSync("/proc")) {
      if (!/^\d+$/.test(entry.name)) continue;
      let stat: string;
      try {
        stat = Deno.readTextFileSync(`/proc/${entry.name}/stat`);
      } catch {
        continue; // gone meanwhile
      }
      const comm = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
      const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      // Fields after the name: state, ppid, … utime (12th), stime (13th), in 1/100 s.
      if (Number(f[1]) !== Deno.pid || comm === "etcd") continue;
      sandboxes += (Number(f[11]) + Number(f[12])) * 10;
    }
  } catch {
    sandboxes = NaN;
  }
  return { host: (user + system) / 1000, sandboxes };
}

/**
 * A script that monitors `nodes` nodes below `base`. A value is the wall
 * time (ms) it was written at; the script keeps the latencies itself (its
 * log is rate-limited) and reports them when a node is set to "report".
 */
const MONITOR = `moat.setup();
const base = moat.data.get("base");
const n = moat.data.get("nodes");
const lat = [];
const now = () => performance.timeOrigin + performance.now();
for (let i = 0; i < n; i++) {
  const node = await moat.tree.lookup(base, String(i));
  moat.monitor(node)((c) => {
    if (c.is_new) return;
    const v = c.node.value;
    if (v === "report") {
      lat.sort((a, b) => a - b);
      moat.logger.info("stats " + JSON.stringify(lat));
    } else if (typeof v === "number" && v > 1e12) lat.push(now() - v);
  });
}
moat.logger.info("ready");
`;

/**
 * `total` puts at `rate` per second from a separate process (see
 * _paced_writer.ts); returns how long the writing took, in ms.
 */
async function pacedPuts(
  endpoint: string,
  total: number,
  rate: number,
  scripts: number,
  nodes: number,
): Promise<number> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-all",
      new URL("./_paced_writer.ts", import.meta.url).pathname,
      endpoint,
      String(total),
      String(rate),
      String(scripts),
      String(nodes),
    ],
    stdout: "piped",
    stderr: "inherit",
  }).output();
  if (!out.success) throw new Error("the paced writer failed");
  return Number(new TextDecoder().decode(out.stdout).trim());
}

/**
 * `count` puts by `writer`, one every 20 ms, each carrying its wall time;
 * the latencies (ms) until a watch of `watcher` sees them.
 */
async function pacedPutWatch(
  writer: EtcdStore,
  watcher: EtcdStore,
  key: string,
  count: number,
): Promise<number[]> {
  const lat: number[] = [];
  let seen: () => void = () => {};
  const w = await watcher.watch(key, (events) => {
    const now = performance.timeOrigin + performance.now();
    for (const e of events) lat.push(now - Number(e.kv.value));
    seen();
  });
  try {
    for (let i = 0; i < count; i++) {
      const got = new Promise<void>((r) => seen = r);
      await writer.put(key, String(performance.timeOrigin + performance.now()));
      await got;
      await new Promise((r) => setTimeout(r, 20));
    }
  } finally {
    await w.close();
  }
  return lat;
}

async function watchStreams(endpoint: string): Promise<number> {
  const text = await (await fetch(`${endpoint}/metrics`)).text();
  const m = /^etcd_debugging_mvcc_watch_stream_total (\d+)/m.exec(text);
  return m ? Number(m[1]) : NaN;
}

/** Measure monitors; see the module doc. */
export async function benchMonitor(
  scripts = Number(Deno.env.get("BENCH_MONITOR_SCRIPTS") ?? "100"),
  nodes = Number(Deno.env.get("BENCH_MONITOR_NODES") ?? "10"),
  rate = Number(Deno.env.get("BENCH_MONITOR_RATE") ?? "1000"),
): Promise<Figure[]> {
  const bench = await startBenchHost("bench-monitor", 2);
  const { etcd, store, logger, s, host } = bench;
  const writer = new EtcdStore({ endpoints: [bench.etcd.endpoint] });
  try {
    // The raw primitive under the same conditions as the monitor below: a
    // put by the writer's client, seen by a watch of the host's client,
    // one change every 20 ms (a client watching its own puts, back to
    // back, sees them in about half the time: its connection is awake).
    const raw = await pacedPutWatch(writer, store, "/raw/0", 50);

    await s.scripts.add("mon", MONITOR, { language: "javascript" });
    await store.put("/moat/meta/script/mon/:code/types/nodes", "int");
    await store.put("/moat/meta/script/mon/:code/values/base", "");
    await store.put("/moat/meta/script/mon/:code/values/nodes", "1");
    await host.start();

    // --- one monitor: put → callback -------------------------------------
    await writer.put("/moat/bench/one/0", "0");
    await s.tasks.add("mon", "bench/one", { data: [["base", "bench/one"], ["nodes", "1"]] });
    await logger.waitFor((l) => l.source === "bench/one" && l.message === "ready");
    const one: number[] = [];
    for (let i = 1; i <= 50; i++) {
      await writer.put("/moat/bench/one/0", String(performance.timeOrigin + performance.now()));
      // Paced, so that each change is seen on its own.
      await new Promise((r) => setTimeout(r, 20));
    }
    await writer.put("/moat/bench/one/0", "report");
    await logger.waitFor((l) => l.source === "bench/one" && l.message.startsWith("stats "));
    one.push(...JSON.parse(
      logger.lines.find((l) => l.source === "bench/one" && l.message.startsWith("stats "))!.message
        .slice(6),
    ) as number[]);
    await s.tasks.delete("bench/one");

    // --- many scripts × nodes at a fixed change rate ------------------------
    for (let k = 0; k < scripts; k++) {
      for (let i = 0; i < nodes; i++) await writer.put(`/moat/bench/m${k}/${i}`, "0");
    }
    const total = Math.max(1, Math.round(rate * 2));
    // The raw primitive at the same rate: a plain watch on the same keys.
    const rawLat: number[] = [];
    const rawWatch = await store.watch("/moat/bench/", (events) => {
      const now = performance.timeOrigin + performance.now();
      for (const e of events) {
        const v = Number(e.kv.value);
        if (e.type === "put" && v > 1e12) rawLat.push(now - v);
      }
    });
    await pacedPuts(etcd.endpoint, total, rate, scripts, nodes);
    await new Promise((r) => setTimeout(r, 2000));
    await rawWatch.close();
    rawLat.sort((a, b) => a - b);
    for (let k = 0; k < scripts; k++) {
      await s.tasks.add("mon", `bench/m${k}`, {
        data: [["base", `bench/m${k}`], ["nodes", String(nodes)]],
      });
    }
    await logger.waitFor(() =>
      logger.lines.filter((l) => l.message === "ready" && l.source.startsWith("bench/m")).length ===
        scripts
    );
    const streams = await watchStreams(etcd.endpoint);
    // What 100 idle scripts cost (heartbeats, the watchdog), for comparison.
    const idle0 = cpuMs();
    const idleT0 = performance.now();
    await new Promise((r) => setTimeout(r, 2000));
    const idle1 = cpuMs();
    const idleS = (performance.now() - idleT0) / 1000;
    const cpu0 = cpuMs();
    const busyT0 = performance.now();
    const achieved = total / (await pacedPuts(etcd.endpoint, total, rate, scripts, nodes) / 1000);
    // Let deliveries drain, then ask every script for its latencies.
    await new Promise((r) => setTimeout(r, 2000));
    const cpu1 = cpuMs();
    const busyS = (performance.now() - busyT0) / 1000;
    const statsFrom = logger.lines.length;
    for (let k = 0; k < scripts; k++) await writer.put(`/moat/bench/m${k}/0`, "report");
    const stats = () =>
      logger.lines.slice(statsFrom).filter((l) =>
        l.source.startsWith("bench/m") && l.message.startsWith("stats ")
      );
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      logger.waitFor(() => stats().length >= scripts),
      new Promise((r) => timer = setTimeout(r, 30_000)),
    ]);
    clearTimeout(timer);
    const lat = stats().flatMap((l) => JSON.parse(l.message.slice(6)) as number[]);
    lat.sort((a, b) => a - b);
    return [
      {
        name: "monitor.put_to_callback",
        value: median(one),
        unit: "ms",
        rawName: "etcd put→watch, 2 clients",
        raw: median(raw),
        target: "ratio <= 2",
      },
      {
        name: `monitor.watch_streams_${scripts}x${nodes}`,
        value: streams,
        unit: "",
        rawName: "",
        raw: NaN,
        target: "1 per host",
      },
      {
        name: `monitor.callback_median_at_${rate}_per_s`,
        value: lat.length ? median(lat) : NaN,
        unit: "ms",
        rawName: "raw watch at the same rate",
        raw: rawLat.length ? median(rawLat) : NaN,
      },
      {
        name: `monitor.callback_p99_at_${rate}_per_s`,
        value: lat.length ? lat[Math.floor(lat.length * 0.99)]! : NaN,
        unit: "ms",
        rawName: "raw watch at the same rate",
        raw: rawLat.length ? rawLat[Math.floor(rawLat.length * 0.99)]! : NaN,
      },
      // CPU time for the changes: what the paced run and its drain took,
      // less what the same time costs idle (heartbeats, the watchdog). The
      // host's figure includes starting the paced writer's process (small).
      {
        name: "monitor.host_cpu_ms_per_1000_changes",
        value: ((cpu1.host - cpu0.host) - (idle1.host - idle0.host) / idleS * busyS) / total * 1000,
        unit: "ms",
        rawName: "",
        raw: NaN,
      },
      {
        name: "monitor.sandbox_cpu_ms_per_1000_changes",
        value: ((cpu1.sandboxes - cpu0.sandboxes) -
          (idle1.sandboxes - idle0.sandboxes) / idleS * busyS) / total * 1000,
        unit: "ms",
        rawName: "",
        raw: NaN,
      },
      {
        name: "monitor.host_cpu_ms_per_s_idle",
        value: (idle1.host - idle0.host) / idleS,
        unit: "ms",
        rawName: "",
        raw: NaN,
      },
      {
        name: "monitor.sandbox_cpu_ms_per_s_idle",
        value: (idle1.sandboxes - idle0.sandboxes) / idleS,
        unit: "ms",
        rawName: "",
        raw: NaN,
      },
      { name: "monitor.rate_achieved", value: achieved, unit: "/s", rawName: "", raw: NaN },
      {
        name: "monitor.changes_lost",
        value: total - lat.length,
        unit: "",
        rawName: "",
        raw: NaN,
        target: "0",
      },
    ];
  } finally {
    await writer.close();
    await bench.close();
  }
}

if (import.meta.main) printFigures(await benchMonitor());
