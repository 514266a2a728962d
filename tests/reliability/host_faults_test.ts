/**
 * Scenarios 2, 3 (and 5): a host dies (kill -9) or stalls (SIGSTOP longer
 * than ttl) while it runs tasks that keep writing. The other host takes the
 * tasks over once the ttl ran out (how soon is reported here, and is
 * host.failover_after_kill in deno task bench); the dead runs stay on record as crashed; the
 * stalled host, let go on, stops its runs before they write again; no task
 * runs twice at once and every resolved write is in etcd.
 */

import { assert, assertEquals, assertIncludes } from "../_util/assert.ts";
import { startEtcd } from "../_util/etcd_server.ts";
import { type MoatProcess, runMoat, waitForLineIn } from "../_util/cli.ts";
import { waitForKey } from "../_util/store_wait.ts";
import { quietPeriod } from "../_util/wait.ts";
import { EtcdStore } from "../../host/store/etcd_store.ts";
import type { Store } from "../../host/store/store.ts";
import {
  ackedSince,
  addCounters,
  assertAckedWritesKept,
  assertNoOverlap,
  HOST,
  report,
  setRunConfig,
  SOAK,
  startHosts,
  stopHosts,
  ticks,
  waitTicks,
} from "./_harness.ts";

const TASKS = SOAK ? 20 : 6;
/**
 * The lease ttl: long enough that a live host on a busy machine never
 * misses it (every task here must keep its one run), short enough that a
 * dead one's tasks move soon.
 */
const TTL = 10;
const st = (path: string, key: string) => `/moat/status/run/${path}/:task/${key}`;

async function withHosts(
  fn: (ctx: {
    store: EtcdStore;
    hosts: MoatProcess[];
    tasks: string[];
    env: Record<string, string>;
    /** The task paths whose `running` key the host `h` holds. */
    heldBy: (h: MoatProcess) => Promise<string[]>;
  }) => Promise<void>,
): Promise<void> {
  const etcd = await startEtcd();
  const store = new EtcdStore({ endpoints: [etcd.endpoint] });
  const env = { MOAT_ETCD: etcd.endpoint };
  let hosts: MoatProcess[] = [];
  try {
    await setRunConfig(store, { ttl: TTL, refresh: TTL, retry: 0.5, max_retry: 2 });
    hosts = startHosts(2, env);
    for (const h of hosts) {
      await waitForLineIn([h], (l) => l.includes("running tasks of host"), 60_000, "host up");
    }
    const tasks = await addCounters(store, TASKS);
    await waitTicks(hosts, (all) => ackedSince(all, 0).size === TASKS, 60_000, "all writing");
    const heldBy = async (h: MoatProcess) => {
      const out: string[] = [];
      for (const t of tasks) {
        const v = (await store.get(st(t, "running")))?.value ?? "{}";
        if ((JSON.parse(v) as { pid?: number }).pid === h.pid) out.push(t);
      }
      return out;
    };
    await fn({ store, hosts, tasks, env: { ...env, MOAT_HOST: HOST, MOAT_AMQP: "none" }, heldBy });
  } finally {
    await stopHosts(hosts);
    await store.close();
    await etcd.stop();
  }
}

/** The host holding more tasks (at least one), and the other. */
async function pick(
  hosts: MoatProcess[],
  heldBy: (h: MoatProcess) => Promise<string[]>,
): Promise<{ victim: MoatProcess; survivor: MoatProcess; moved: string[] }> {
  const [a, b] = [await heldBy(hosts[0]!), await heldBy(hosts[1]!)];
  const victim = a.length >= b.length ? hosts[0]! : hosts[1]!;
  const survivor = victim === hosts[0] ? hosts[1]! : hosts[0]!;
  const moved = victim === hosts[0] ? a : b;
  assert(moved.length > 0, "the victim runs tasks");
  return { victim, survivor, moved };
}

/** Wait (ttl + 60 s at most each) until every task of `moved` runs on `survivor`. */
async function takenOver(store: Store, moved: string[], survivor: MoatProcess): Promise<void> {
  for (const t of moved) {
    await waitForKey(
      store,
      st(t, "running"),
      (v) => v !== undefined && v.includes(`"pid":${survivor.pid}`),
      (TTL + 60) * 1000,
    );
  }
}

Deno.test("kill -9 of a host: its tasks resume on the other and the dead runs read crash", async () => {
  await withHosts(async ({ store, hosts, tasks, env, heldBy }) => {
    const { victim, survivor, moved } = await pick(hosts, heldBy);
    const deadStarted = new Map<string, number>();
    for (const t of moved) deadStarted.set(t, Number((await store.get(st(t, "started")))?.value));
    const t0 = performance.now();
    victim.kill("SIGKILL");
    await victim.status;
    await takenOver(store, moved, survivor);
    const took = performance.now() - t0;
    const killedAt = Date.now() - took;
    await waitTicks(
      hosts,
      (all) => moved.every((t) => (ackedSince(all, killedAt).get(t) ?? 0) > 0),
      60_000,
      "the moved tasks to write on the survivor",
    );
    const writing = Math.max(...moved.map((t) => ackedSince(ticks(hosts), killedAt).get(t)!)) -
      killedAt;
    report(
      `kill -9: ${moved.length} tasks taken over (ttl ${TTL} s)`,
      `${Math.round(took)} ms; writing again after ${writing} ms`,
    );

    // The dead runs read crash: `moat status` keeps their start as "crashed".
    const status = await runMoat(["status", "--json"], { env });
    assertEquals(status.code, 0, status.stderr);
    const rows = JSON.parse(status.stdout) as {
      path: string;
      state: string;
      crashed?: number;
      started?: number;
    }[];
    for (const t of moved) {
      const row = rows.find((r) => r.path === t)!;
      assertEquals(row.state, "run");
      assertEquals(row.crashed, deadStarted.get(t), `${t}: the crashed run's start is kept`);
      assert(row.started! > row.crashed!, `${t}: a new run started after the crash`);
    }
    for (const t of tasks.filter((t) => !moved.includes(t))) {
      assertEquals(rows.find((r) => r.path === t)!.crashed, undefined, `${t} never crashed`);
    }
    const table = await runMoat(["status"], { env });
    assertIncludes(table.stdout, "crashed)");
    const errors = await runMoat(["errors", HOST, "--json"], { env });
    assertEquals(errors.code, 0, errors.stderr);
    const records = JSON.parse(errors.stdout) as { task?: string; loc?: string; msg: string }[];
    const crashRecords = records.filter((r) => r.msg.includes("crashed"));
    assertEquals(crashRecords.length, moved.length, errors.stdout);

    const all = ticks(hosts);
    assertNoOverlap(all, { nacks: true });
    report("kill -9: acked writes found in etcd", String(await assertAckedWritesKept(store, all)));
  });
});

Deno.test("SIGSTOP of a host longer than ttl: the other takes over, and the stalled runs stop before they write again", async () => {
  await withHosts(async ({ store, hosts, heldBy }) => {
    const { victim, survivor, moved } = await pick(hosts, heldBy);
    const stoppedAt = Date.now();
    victim.kill("SIGSTOP");
    let resumedAt = 0;
    try {
      await takenOver(store, moved, survivor);
      report(`SIGSTOP: ${moved.length} tasks taken over`, `${Date.now() - stoppedAt} ms`);
      // Stay stopped a little longer, while the new owners write.
      await quietPeriod(1_000);
    } finally {
      resumedAt = Date.now();
      victim.kill("SIGCONT");
    }
    const victimIndex = hosts.indexOf(victim);
    for (const t of moved) {
      await waitForLineIn(
        [victim],
        (l) => l.includes(`[${t}] ended: fail: lease lost`),
        60_000,
        `${t} to stop on the stalled host`,
      );
    }
    report("SIGSTOP: stalled runs stopped", `${Date.now() - resumedAt} ms after SIGCONT`);
    await quietPeriod(2 * TTL * 1000);
    const all = ticks(hosts);
    // No run of the stalled host acted after the new owners started...
    assertNoOverlap(all);
    // ...its scripts' writes after SIGCONT were all refused...
    const late = all.filter((k) => k.host === victimIndex && k.t >= resumedAt);
    const lateAcks = late.filter((k) => k.kind === "ACK");
    assertEquals(lateAcks, [], "no write of a stalled run resolved after SIGCONT");
    const nacks = late.filter((k) => k.kind === "NACK");
    for (const k of nacks) assertEquals(k.code, "not_running", JSON.stringify(k));
    report("SIGSTOP: writes of stalled runs refused after SIGCONT", String(nacks.length));
    // ...and the stalled host did not start them again while the other owns them.
    const restarted = all.filter((k) =>
      k.kind === "START" && k.host === victimIndex && k.t > stoppedAt
    );
    assertEquals(restarted, [], "the stalled host does not take its tasks back");
    report("SIGSTOP: acked writes found in etcd", String(await assertAckedWritesKept(store, all)));
  });
});
