/**
 * Schedules that survive failover, restarts and code updates (issue 21),
 * on a real etcd with two `moat run` hosts: a daily firing a little ahead,
 * kept by a `run_at` task and a `wait` task (both `{ id, catch_up }`), and
 * the host running them killed, stopped or given new code just before it.
 * The firing must run exactly once — late, on the host that took over — or,
 * past `catch_up`, not at all.
 */

import { assert, assertEquals, assertIncludes } from "../_util/assert.ts";
import type { StatusRow } from "../../host/tasks/status.ts";
import { startEtcd } from "../_util/etcd_server.ts";
import { type MoatProcess, runMoat, waitForLineIn } from "../_util/cli.ts";
import { quietPeriod } from "../_util/wait.ts";
import { EtcdStore } from "../../host/store/etcd_store.ts";
import { servicesOn } from "../../host/cli/services.ts";
import { setRunConfig, stopHosts } from "./_harness.ts";
import {
  addScheduleTasks,
  armed,
  assertFiredOnce,
  firings,
  heatRecord,
  RUN_AT_TASK,
  runAtScript,
  startDebugHost,
  tracedFirings,
  WAIT_TASK,
  waitScript,
} from "./_schedule_harness.ts";

/** The lease ttl: a live host never misses it; a dead one's tasks move after it. */
const TTL = 10;
/** How far ahead the firing is: room for the hosts and scripts to start on a busy machine. */
const LEAD_S = 45;
const TASKS = [RUN_AT_TASK, WAIT_TASK];

interface Ctx {
  store: EtcdStore;
  /** Host 0 runs both tasks at first; host 1 waits to take over. */
  a: MoatProcess;
  b: MoatProcess;
  hosts: MoatProcess[];
  /** The firing's due time, Unix seconds. */
  due: number;
  /** The environment of a `moat` command on this etcd. */
  env: Record<string, string>;
}

async function withScheduleHosts(catchUp: number, fn: (ctx: Ctx) => Promise<void>) {
  const etcd = await startEtcd();
  const store = new EtcdStore({ endpoints: [etcd.endpoint] });
  const env = { MOAT_ETCD: etcd.endpoint };
  const hosts: MoatProcess[] = [];
  try {
    await setRunConfig(store, { ttl: TTL, refresh: TTL, retry: 0.5, max_retry: 2 });
    hosts.push(startDebugHost(env));
    const a = hosts[0]!;
    await waitForLineIn([a], (l) => l.includes("running tasks of host"), 60_000, "host 0 up");
    const due = Math.ceil(Date.now() / 1000) + LEAD_S;
    await addScheduleTasks(store, due, catchUp);
    for (const t of TASKS) {
      await waitForLineIn([a], (l) => l.includes(`[${t}] ARMED`), 60_000, `${t} on host 0`);
    }
    hosts.push(startDebugHost(env));
    const b = hosts[1]!;
    await waitForLineIn([b], (l) => l.includes("running tasks of host"), 60_000, "host 1 up");
    await fn({ store, a, b, hosts, due, env: { ...env, MOAT_AMQP: "none" } });
  } finally {
    await stopHosts(hosts);
    await store.close();
    await etcd.stop();
  }
}

/** Wait (really) until `ms` before the due time; fail if that has passed already. */
async function untilBefore(due: number, ms: number): Promise<void> {
  const left = due * 1000 - ms - Date.now();
  assert(left > 0, `the setup took too long: ${-left} ms past the moment to act`);
  await quietPeriod(left);
}

/** Wait until `host` logged a firing of every task. */
async function firedOn(host: MoatProcess): Promise<void> {
  for (const t of TASKS) {
    await waitForLineIn([host], (l) => l.includes(`[${t}] FIRED`), (TTL + 60) * 1000, `${t} fired`);
  }
}

Deno.test("kill -9 of the host 2 s before the due time: the firing runs once on the new host, late", async () => {
  await withScheduleHosts(120, async ({ store, a, b, hosts, due, env }) => {
    await untilBefore(due, 2000);
    a.kill("SIGKILL");
    await a.status;
    await firedOn(b);
    await quietPeriod(2000); // nothing more fires
    for (const t of TASKS) await assertFiredOnce(store, hosts, t, due, { host: 1, late: true });
    for (const t of TASKS) {
      assertEquals(tracedFirings(b, t).map((l) => l.replace(/^.*firing due /, "")), [
        `${due} (late: catch-up)`,
      ]);
    }
    // `moat status` shows each schedule's last firing, late, and the next due time.
    const status = await runMoat(["status", "--json"], { env });
    assertEquals(status.code, 0, status.stderr);
    const rows = JSON.parse(status.stdout) as StatusRow[];
    for (const t of TASKS) {
      const sc = rows.find((r) => r.path === t)?.schedules;
      assertEquals(sc?.map((x) => [x.id, x.due, x.late, x.next]), [
        ["heat", due, true, due + 86400],
      ]);
    }
    const table = await runMoat(["status"], { env });
    assertIncludes(table.stdout, "LAST FIRING");
    assert(table.stdout.includes(" late "), table.stdout);
  });
});

Deno.test("SIGSTOP of the host across the due time, take-over, SIGCONT: never run twice", async () => {
  await withScheduleHosts(120, async ({ store, a, b, hosts, due }) => {
    await untilBefore(due, 2000);
    a.kill("SIGSTOP");
    try {
      await firedOn(b);
      await quietPeriod(1000);
    } finally {
      a.kill("SIGCONT");
    }
    // The stalled host wakes past its lease: it kills its runs, firing nothing.
    for (const t of TASKS) {
      await waitForLineIn(
        [a],
        (l) => l.includes(`[${t}] killing the script: lease lost`),
        60_000,
        `${t} to stop on the stalled host`,
      );
    }
    await quietPeriod(3000);
    assertEquals(firings([a]), [], "the stalled host fired nothing");
    for (const t of TASKS) {
      assertEquals(
        tracedFirings(a, t),
        [],
        `${t}: the stalled host handed no firing to the script`,
      );
      assertEquals(tracedFirings(b, t).length, 1, `${t}: the other host handed over one firing`);
    }
    for (const t of TASKS) await assertFiredOnce(store, hosts, t, due, { host: 1, late: true });
  });
});

Deno.test("a code update across the due time: the new code fires once, late", async () => {
  await withScheduleHosts(120, async ({ store, hosts, due }) => {
    await untilBefore(due, 1500);
    // The old runs' on_stop lingers 3 s: the new code starts after the due time.
    const s = servicesOn(store, "/moat");
    await s.scripts.update("sched_r", runAtScript("V2"), { language: "javascript" });
    await s.scripts.update("sched_w", waitScript("V2"), { language: "javascript" });
    for (const t of TASKS) {
      await waitForLineIn(hosts, (l) => l.includes(`[${t}] FIRED V2`), 60_000, `${t} V2 fired`);
    }
    await quietPeriod(2000);
    for (const t of TASKS) {
      await assertFiredOnce(store, hosts, t, due, { late: true, version: "V2" });
    }
  });
});

Deno.test("a host down for longer than catch_up: the firing does not run", async () => {
  await withScheduleHosts(4, async ({ store, a, b, hosts, due }) => {
    await untilBefore(due, 2000);
    a.kill("SIGKILL");
    await a.status;
    // The tasks start on the other host only after the ttl (10 s): past catch_up (4 s).
    for (const t of TASKS) {
      await waitForLineIn([b], (l) => l.includes(`[${t}] ARMED`), (TTL + 60) * 1000, `${t} on 1`);
    }
    assert(Date.now() > (due + 4) * 1000, "taken over after catch_up ran out");
    await quietPeriod(3000);
    assertEquals(firings(hosts), [], "nothing fired");
    for (const t of TASKS) {
      assert(armed(b, t), `${t} runs on host 1`);
      assertEquals(await heatRecord(store, t), undefined, `${t}: no firing recorded`);
    }
  });
});
