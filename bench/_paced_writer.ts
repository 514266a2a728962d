/**
 * A separate etcd client process for bench/monitor_bench.ts: writes
 * `total` values at `rate` per second, round-robin over
 * `/moat/bench/m<k>/<node>`, each value the wall time (ms) it was sent at,
 * then prints how long it took. Run in its own process so that the host
 * under test does not also carry the writer's load.
 *
 * Usage: deno run -A bench/_paced_writer.ts ENDPOINT TOTAL RATE SCRIPTS NODES
 *
 * @module
 */

import { EtcdStore } from "../host/store/etcd_store.ts";

const [endpoint, total, rate, scripts, nodes] = Deno.args;
const store = new EtcdStore({ endpoints: [endpoint!] });
const n = Number(total), r = Number(rate), k = Number(scripts), m = Number(nodes);
const batch = Math.max(1, Math.round(r / 100));
const t0 = performance.now();
const puts: Promise<unknown>[] = [];
for (let i = 0; i < n; i += batch) {
  const wait = t0 + (i / r) * 1000 - performance.now();
  if (wait > 0) await new Promise((res) => setTimeout(res, wait));
  if (puts.length > r) await Promise.all(puts.splice(0, batch));
  for (let j = i; j < Math.min(n, i + batch); j++) {
    const key = `/moat/bench/m${j % k}/${Math.floor(j / k) % m}`;
    puts.push(store.put(key, String(performance.timeOrigin + performance.now())));
  }
}
await Promise.all(puts);
console.log(String(performance.now() - t0));
await store.close();
