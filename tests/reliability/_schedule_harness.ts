/**
 * Shared parts of the schedule fault tests (schedule_*_test.ts): scripts
 * that log each firing of a schedule with an id, a due time a little ahead
 * as a daily spec, and reading the firings back from the hosts' output.
 *
 * The proof: every firing logs `FIRED <version> <due> <late> <ms>` (the
 * `run_at` task `rel/r`) or `FIRED <version> <due> - <ms>` (the `wait` task
 * `rel/w`); from every host's output the test counts the firings of each
 * task and due time. One, on the right host, is the claim.
 *
 * @module
 */

import { assert, assertEquals } from "../_util/assert.ts";
import { type MoatProcess, spawnMoat } from "../_util/cli.ts";
import type { EtcdStore } from "../../host/store/etcd_store.ts";
import { servicesOn } from "../../host/cli/services.ts";
import { Layout } from "../../host/layout.ts";
import { parseRecord, type ScheduleRecord } from "../../host/capabilities/schedules.ts";
import { HOST } from "./_harness.ts";
import { waitForKey } from "../_util/store_wait.ts";

/** Start one `moat run` host of host name `rel`, logging at debug level (firings are traced). */
export function startDebugHost(env: Record<string, string>): MoatProcess {
  return spawnMoat(["run", "--log-level", "debug"], {
    env: { MOAT_HOST: HOST, MOAT_AMQP: "none", ...env },
  });
}

/** The lines where host `h` traced handing a firing of `task`'s schedule to the script. */
export function tracedFirings(h: MoatProcess, task: string): string[] {
  return h.lines.filter((l) => l.includes(`[${task}] schedule "heat": firing due`));
}

/** The run_at task and the wait task. */
export const RUN_AT_TASK = `${HOST}/r`;
export const WAIT_TASK = `${HOST}/w`;

/** A script whose schedule `heat` is a run_at (version `v` marks which code fired). */
export function runAtScript(v: string): string {
  return `moat.setup();
const spec = moat.data.get("spec");
const catchUp = Number(moat.data.get("catch_up"));
moat.run_at(spec, ({ due, late }) => {
  moat.logger.info("FIRED ${v} " + due + " " + late + " " + Date.now());
}, { id: "heat", catch_up: catchUp });
// A stop takes "linger" ms, so that a restart can straddle a due time.
moat.on_stop(() => new Promise((r) => setTimeout(r, Number(moat.data.get("linger")))));
moat.logger.info("ARMED ${v} " + Date.now());
`;
}

/** A script whose schedule `heat` is a loop of waits. */
export function waitScript(v: string): string {
  return `moat.setup();
const spec = moat.data.get("spec");
const catchUp = Number(moat.data.get("catch_up"));
moat.on_stop(() => new Promise((r) => setTimeout(r, Number(moat.data.get("linger")))));
moat.run(async () => {
  moat.logger.info("ARMED ${v} " + Date.now());
  for (;;) {
    const due = await moat.wait(spec, { id: "heat", catch_up: catchUp });
    moat.logger.info("FIRED ${v} " + due + " - " + Date.now());
  }
});
`;
}

/** A daily spec in UTC for the whole second `due` (Unix seconds). */
export function dailySpec(due: number): string {
  const d = new Date(due * 1000);
  return `${d.getUTCHours()} hr ${d.getUTCMinutes()} min ${d.getUTCSeconds()} sec`;
}

/** Define both scripts and both tasks, due at `due` with `catch_up` seconds. */
export async function addScheduleTasks(
  store: EtcdStore,
  due: number,
  catchUp: number,
): Promise<void> {
  await store.put("/moat/config/timezone", "UTC");
  const s = servicesOn(store, "/moat");
  await s.scripts.add("sched_r", runAtScript("V1"), { language: "javascript" });
  await s.scripts.add("sched_w", waitScript("V1"), { language: "javascript" });
  const data: [string, string][] = [
    ["spec", dailySpec(due)],
    ["catch_up", String(catchUp)],
    ["linger", "3000"],
  ];
  await s.tasks.add("sched_r", RUN_AT_TASK, { data });
  await s.tasks.add("sched_w", WAIT_TASK, { data });
}

/** One firing as logged. */
export interface Fired {
  task: string;
  host: number;
  version: string;
  due: number;
  /** run_at: whether it was late; wait: undefined. */
  late: boolean | undefined;
  ms: number;
}

const FIRED = /\[([^\]]+)\] FIRED (\S+) (\d+) (true|false|-) (\d+)$/;

/** Every firing logged by `hosts` so far. */
export function firings(hosts: MoatProcess[]): Fired[] {
  const out: Fired[] = [];
  hosts.forEach((h, host) => {
    for (const line of h.lines) {
      const m = FIRED.exec(line);
      if (!m) continue;
      out.push({
        task: m[1]!,
        host,
        version: m[2]!,
        due: Number(m[3]),
        late: m[4] === "-" ? undefined : m[4] === "true",
        ms: Number(m[5]),
      });
    }
  });
  return out;
}

/** Whether host `h` logged `ARMED` for `task` (its run of the task started). */
export function armed(h: MoatProcess, task: string, version = ""): boolean {
  return h.lines.some((l) => l.includes(`[${task}] ARMED ${version}`));
}

/** The record of schedule `heat` of `task`, if any. */
export async function heatRecord(
  store: EtcdStore,
  task: string,
): Promise<ScheduleRecord | undefined> {
  const kv = await store.get(new Layout("/moat").scheduleKey(task, "heat"));
  return kv && parseRecord(kv.value);
}

/** Every firing of `task`, one line each, for messages. */
function show(all: Fired[], task: string): string {
  return all.filter((f) => f.task === task).map((f) => JSON.stringify(f)).join("\n") || "(none)";
}

/**
 * The claim: `task` fired exactly once for `due`, on host `host`, and the
 * record says so (late or not, as `late`).
 */
export async function assertFiredOnce(
  store: EtcdStore,
  hosts: MoatProcess[],
  task: string,
  due: number,
  expect: { host?: number; late: boolean; version?: string },
): Promise<void> {
  const all = firings(hosts);
  const mine = all.filter((f) => f.task === task && f.due === due);
  assertEquals(mine.length, 1, `${task} fires once for ${due}:\n${show(all, task)}`);
  const f = mine[0]!;
  if (expect.host !== undefined) {
    assertEquals(f.host, expect.host, `${task} fires on host ${expect.host}`);
  }
  if (f.late !== undefined) assertEquals(f.late, expect.late, `${task}: late`);
  if (expect.version) assertEquals(f.version, expect.version, `${task}: the code that fired`);
  // The record follows the firing (written once it completed).
  const key = new Layout("/moat").scheduleKey(task, "heat");
  await waitForKey(store, key, (v) => v !== undefined && parseRecord(v)?.due === due, 60_000);
  const r = await heatRecord(store, task);
  assert(r !== undefined, `${task}: the firing is recorded`);
  assertEquals(r.due, due, `${task}: the record's due time`);
  assertEquals(r.late, expect.late, `${task}: the record says late`);
}
