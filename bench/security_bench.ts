/**
 * What the sandbox's guards cost and how fast they act (script start,
 * round trip against the bare transport and idle memory are in
 * bridge_bench.ts):
 *
 * - kill latency: from the moment a spinning script's CPU time passes its
 *   budget (sampled here every 5 ms from /proc) to its process being gone;
 * - a neighbour's `moat.time_at` round trip while two runaways spin, against
 *   the same neighbour alone, measured in the same run;
 * - PSS and RSS of an idle script under the watchdog (one script per process).
 *
 * Run alone: `deno run --allow-all bench/security_bench.ts`.
 *
 * @module
 */

import { type Figure, median, printFigures } from "./figure.ts";
import { SandboxPool } from "../host/bridge/sandbox.ts";
import { stubMethods } from "../host/bridge/method_stubs.ts";

const KILLS = 5;
const TRIPS = 1000;

function cpuMs(pid: number): number | undefined {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(f[11]) + Number(f[12])) * 10;
  } catch {
    return undefined;
  }
}

async function memory(pid: number): Promise<{ rss: number; pss: number }> {
  const text = await Deno.readTextFile(`/proc/${pid}/smaps_rollup`);
  const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(text)?.[1]);
  return { rss: kb("Rss") / 1024, pss: kb("Pss") / 1024 };
}

const methods = stubMethods({ time_at: () => Promise.resolve(1_700_000_000) });

/** Round trips of a neighbour script, µs each. */
async function neighbourTrips(pool: SandboxPool): Promise<number[]> {
  let report: (m: string) => void = () => {};
  const reported = new Promise<string>((r) => (report = r));
  const s = await pool.start({
    task: "bench/neighbour",
    script: "neighbour",
    code: `
      moat.setup();
      const times = [];
      for (let i = 0; i < ${TRIPS + 100}; i++) {
        const t0 = performance.now();
        await moat.time_at("12 hr", {});
        if (i >= 100) times.push((performance.now() - t0) * 1000);
      }
      console.log(JSON.stringify(times));
    `,
    methods,
    onLog: (_l, m) => report(m),
  });
  s.ended.then((e) => report(JSON.stringify({ ended: e })));
  const out = JSON.parse(await reported);
  if (!Array.isArray(out)) throw new Error(`the neighbour ended early: ${JSON.stringify(out)}`);
  const trips = out as number[];
  await s.kill("bench done");
  return trips;
}

/** Measure; see the module doc. */
export async function benchSecurity(): Promise<Figure[]> {
  const budgetS = 0.5;
  const pool = new SandboxPool({ warm: 2, limits: { cpu: budgetS, cpuWindow: 5 } });
  try {
    // --- kill latency ------------------------------------------------------
    const latencies: number[] = [];
    for (let i = 0; i < KILLS; i++) {
      await pool.ready();
      const s = await pool.start({
        task: "bench/spin",
        script: "spin",
        code: "moat.setup(); while (true) {}",
        methods,
        onLog() {},
      });
      const base = cpuMs(s.pid) ?? 0;
      let crossed: number | undefined;
      let gone = false;
      s.ended.then(() => (gone = true));
      const deadline = performance.now() + 10_000;
      while (!gone && performance.now() < deadline) {
        const c = cpuMs(s.pid);
        if (crossed === undefined && c !== undefined && c - base > budgetS * 1000) {
          crossed = performance.now();
        }
        await new Promise((r) => setTimeout(r, 5));
      }
      await s.ended;
      if (crossed !== undefined) latencies.push(performance.now() - crossed);
    }

    // --- a neighbour with and without runaways -----------------------------
    const quiet = new SandboxPool({ warm: 1 });
    const alone = await neighbourTrips(quiet).finally(() => quiet.close());
    const busy = new SandboxPool({ warm: 3, limits: { cpu: 1000, cpuWindow: 1000 } });
    let loaded: number[];
    try {
      await busy.ready();
      const spinners = [];
      for (let i = 0; i < 2; i++) {
        spinners.push(
          await busy.start({
            task: `bench/runaway${i}`,
            script: "runaway",
            code: "moat.setup(); while (true) {}",
            methods,
            onLog() {},
          }),
        );
      }
      loaded = await neighbourTrips(busy);
      for (const s of spinners) await s.kill("bench done");
    } finally {
      await busy.close();
    }

    // --- idle memory -------------------------------------------------------
    await pool.ready();
    let up: () => void = () => {};
    const isUp = new Promise<void>((r) => (up = r));
    const idle = await pool.start({
      task: "bench/idle",
      script: "idle",
      code: `moat.setup(); console.log("up");`,
      methods,
      onLog: () => up(),
    });
    await isUp;
    await new Promise((r) => setTimeout(r, 500));
    const mem = await memory(idle.pid);
    await idle.kill("bench done");

    const fig = (f: Figure) => f;
    return [
      fig({
        name: "security.kill_after_cpu_budget",
        value: median(latencies),
        unit: "ms",
        rawName: "",
        raw: NaN,
        target: "<= 2000",
      }),
      fig({
        name: "security.kill_after_cpu_budget.max",
        value: Math.max(...latencies),
        unit: "ms",
        rawName: "",
        raw: NaN,
        target: "<= 2000",
      }),
      fig({
        name: "security.round_trip_beside_2_runaways",
        value: median(loaded),
        unit: "µs",
        rawName: "same round trip, no runaway",
        raw: median(alone),
        target: "ratio <= 2",
      }),
      fig({
        name: "security.idle_script_pss",
        value: mem.pss,
        unit: "MiB",
        rawName: "",
        raw: NaN,
        target: "<= 25",
      }),
      fig({ name: "security.idle_script_rss", value: mem.rss, unit: "MiB", rawName: "", raw: NaN }),
    ];
  } finally {
    await pool.close();
  }
}

if (import.meta.main) printFigures(await benchSecurity());
