/**
 * `deno task bench`: every benchmark of the project against real services
 * (a private etcd, the local RabbitMQ). Prints one line per figure —
 * `name  value  unit  raw-primitive  ratio` — and writes the same as JSON
 * to bench/results.json.
 *
 * Select benchmarks with arguments: `deno task bench time bridge`.
 *
 * @module
 */

import { type Figure, formatFigure, ratio } from "./figure.ts";
import { benchTime } from "./time_bench.ts";
import { benchBridge } from "./bridge_bench.ts";
import { benchHost } from "./host_bench.ts";
import { benchBus } from "./bus_bench.ts";
import { benchSecurity } from "./security_bench.ts";
import { benchMonitor } from "./monitor_bench.ts";
import { benchLifecycle } from "./lifecycle_bench.ts";
import { benchWeb } from "./web_bench.ts";
import { benchGroups } from "./group_bench.ts";

const BENCHES: Record<string, () => Promise<Figure[]> | Figure[]> = {
  time: benchTime,
  bridge: benchBridge,
  host: () => benchHost(),
  bus: benchBus,
  monitor: () => benchMonitor(),
  security: benchSecurity,
  lifecycle: benchLifecycle,
  web: () => benchWeb(),
  groups: () => benchGroups(),
};

const wanted = Deno.args.length ? Deno.args : Object.keys(BENCHES);
for (const w of wanted) {
  if (!Object.hasOwn(BENCHES, w)) {
    console.error(`error: unknown benchmark "${w}"; known: ${Object.keys(BENCHES).join(", ")}`);
    Deno.exit(2);
  }
}
const results: (Figure & { ratio: number | null; bench: string })[] = [];
console.log(`${"name".padEnd(36)}  ${"value".padStart(10)}  unit  raw primitive`);
for (const name of wanted) {
  const figures = await BENCHES[name]!();
  for (const f of figures) {
    console.log(formatFigure(f));
    const r = ratio(f);
    results.push({ ...f, bench: name, ratio: Number.isFinite(r) ? r : null });
  }
}
const out = new URL("./results.json", import.meta.url);
await Deno.writeTextFile(
  out,
  JSON.stringify({ date: new Date().toISOString(), deno: Deno.version.deno, results }, null, 2) +
    "\n",
);
console.log(`wrote ${out.pathname}`);
