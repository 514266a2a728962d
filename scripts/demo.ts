/**
 * `deno task demo`: the real host on the embedded store (MemoryStore), with
 * the scripts in examples/ running in real sandbox processes for a few
 * seconds, then `moat status` of what happened. Nothing to install but Deno.
 *
 * @module
 */

import { MemoryStore } from "../host/store/memory_store.ts";
import { Layout } from "../host/layout.ts";
import { LineLogger } from "../host/log.ts";
import { SandboxPool } from "../host/bridge/sandbox.ts";
import { Host } from "../host/tasks/host.ts";
import { SystemClock } from "../host/time/clock.ts";
import { servicesOn } from "../host/cli/services.ts";
import { readStatus } from "../host/tasks/status.ts";
import { localTime } from "../host/cli/status_cmd.ts";
import { table } from "../host/cli/script_cmd.ts";

const SECONDS = Number(Deno.env.get("DEMO_SECONDS") ?? "6");
const HOST = "demo";
const examples = new URL("../examples/", import.meta.url);

const say = (line: string) => console.log(line);
const store = new MemoryStore();
const clock = new SystemClock();
const services = servicesOn(store, "/moat");
const pool = new SandboxPool();
const logger = new LineLogger({ write: say });

say("== defining scripts and tasks (moat script def add / moat script add)");
const demo: [script: string, file: string, descr: string, retry?: string][] = [
  ["hello", "hello.ts", "says hello and ends"],
  ["ticker", "ticker.ts", "waits for three full seconds"],
  ["flaky", "flaky.ts", "fails; retried with back-off", "2"],
];
for (const [name, file, descr, retry] of demo) {
  const code = await Deno.readTextFile(new URL(file, examples));
  await services.scripts.add(name, code, { language: "typescript", descr });
  await services.tasks.add(name, `${HOST}/${name}`, { descr });
  if (retry) await store.put(`/moat/task/${HOST}/${name}/:task/retry`, retry);
  say(`   script ${name} (examples/${file}) → task ${HOST}/${name}`);
}
await store.put("/moat/config/run/restart", "0");

say(`== moat run (host "${HOST}") for ${SECONDS} s`);
const host = new Host({
  store,
  layout: new Layout("/moat"),
  hostName: HOST,
  isolation: pool,
  logger,
  clock,
});
await host.start();
await new Promise((r) => setTimeout(r, SECONDS * 1000));
say("== stopping the host");
await host.close();
await pool.close();

say("== moat status");
const rows = await readStatus(store, services.layout);
for (
  const line of table([
    ["PATH", "STATE", "SINCE", "MESSAGE"],
    ...rows.map((r) => [r.path, r.state, localTime(r.since), r.message]),
  ])
) say(line);
await store.close();
