/**
 * Scenario 6: tasks created, changed and deleted at random (500 operations,
 * at most 40 tasks at once; ~30 s, 2 minutes in the soak run) while their
 * scripts run on one `moat run` host with RabbitMQ. Afterwards the running
 * scripts are exactly the tasks in etcd, and nothing leaked: sandbox
 * processes, leases, etcd watches, AMQP consumers, the host's memory (RSS
 * within 20% of before), the sandbox temp folders, the Deno cache.
 */

import { assert, assertEquals } from "../_util/assert.ts";
import { etcdctl, startEtcd } from "../_util/etcd_server.ts";
import { type MoatProcess, waitForLineIn } from "../_util/cli.ts";
import { deleteExchanges, queuesWith, RABBIT_URL, uniqueExchanges } from "../_util/rabbit.ts";
import { quietPeriod } from "../_util/wait.ts";
import { EtcdStore } from "../../host/store/etcd_store.ts";
import { servicesOn } from "../../host/cli/services.ts";
import { HOST, report, setRunConfig, SOAK, startHosts, stopHosts } from "./_harness.ts";

const OPS = 500;
const MAX_TASKS = 40;
const BASE_TASKS = 20;
// The churn runs for 2 minutes (the soak run); the default run
// makes the same 500 operations in 30 s.
const DURATION_MS = SOAK ? 120_000 : 30_000;
/**
 * A short churn before the baseline is taken: the host's heap and V8's
 * code reach their working size first, so that the RSS comparison after
 * the real churn catches growth per operation (a leak), not warm-up.
 */
const WARMUP_OPS = 300;
const WARMUP_MS = 15_000;
/** `/config/run/queue_ttl` of the run, s: unused RPC queues expire after it. */
const QUEUE_TTL_S = 10;
/** Longer than two of the host's 5 s memory checks: one whole quiet interval is needed. */
const MEMORY_QUIET_MS = 12_000;

const SCRIPT = `moat.setup();
const me = String(moat.data.get("me"));
moat.rpc("rel.churn." + me)(() => me);
moat.on_start(() => moat.logger.info("UP " + me));
`;

/** Child processes of `pid` (its sandboxes), from /proc. */
async function children(pid: number): Promise<number[]> {
  const out: number[] = [];
  for await (const e of Deno.readDir("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    try {
      const status = await Deno.readTextFile(`/proc/${e.name}/status`);
      if (new RegExp(`^PPid:\\s+${pid}$`, "m").test(status)) out.push(Number(e.name));
    } catch {
      // Gone meanwhile.
    }
  }
  return out;
}

async function rssKiB(pid: number): Promise<number> {
  const status = await Deno.readTextFile(`/proc/${pid}/status`);
  return Number(/^VmRSS:\s+(\d+) kB$/m.exec(status)?.[1] ?? NaN);
}

async function treeSize(path: string): Promise<{ files: number; bytes: number }> {
  let files = 0, bytes = 0;
  const walk = async (p: string) => {
    for await (const e of Deno.readDir(p)) {
      const q = `${p}/${e.name}`;
      try {
        if (e.isDirectory) await walk(q);
        else if (e.isFile) {
          files++;
          bytes += (await Deno.stat(q)).size;
        }
      } catch {
        // Removed meanwhile.
      }
    }
  };
  try {
    await walk(path);
  } catch {
    // No such folder.
  }
  return { files, bytes };
}

/**
 * The sandbox folders of host process `pid` in `tmp`, and their bytes; the
 * pool's shared Deno cache (`…-cache-…`) is counted apart, in `shared`.
 */
async function sandboxDirs(
  tmp: string,
  pid: number,
): Promise<{ count: number; bytes: number; shared: number }> {
  let count = 0, bytes = 0, shared = 0;
  for await (const e of Deno.readDir(tmp)) {
    if (!e.name.startsWith(`moat-sandbox-${pid}.`)) continue;
    const size = (await treeSize(`${tmp}/${e.name}`)).bytes;
    if (/^moat-sandbox-\d+\.\d+-cache-/.test(e.name)) {
      shared += size;
      continue;
    }
    count++;
    bytes += size;
  }
  return { count, bytes, shared };
}

/**
 * The most the shared Deno cache may hold. It is sealed read-only, but a
 * host running as root (as CI does) is not held back by file modes: its
 * sandboxes update the cache's SQLite analysis databases, whose write-ahead
 * log SQLite checkpoints at 1,000 pages (4 MiB).
 */
const SHARED_CACHE_BYTES = 8 * 1024 * 1024;

function denoDir(): string {
  return Deno.env.get("DENO_DIR") ?? `${Deno.env.get("HOME")}/.cache/deno`;
}

Deno.test(`churn: ${OPS} random task operations in ${DURATION_MS / 1000} s leave exactly the tasks running and nothing leaked`, async () => {
  const etcd = await startEtcd();
  const store = new EtcdStore({ endpoints: [etcd.endpoint] });
  const ex = uniqueExchanges();
  const exchanges = { alert: ex.alert, rpc: ex.rpc, reply: ex.reply, dead: ex.dead };
  // The host's own temporary folder: its sandboxes' folders are counted there.
  const tmp = await Deno.makeTempDir({ prefix: "moat-churn-" });
  let hosts: MoatProcess[] = [];
  try {
    // queue_ttl: an RPC queue declared by a registration that closed before
    // it consumed (a task deleted while its script was starting: more often
    // on a busy machine) is left to expire after queue_ttl; settling waits
    // longer than that.
    await setRunConfig(store, { ttl: 10, queue_ttl: QUEUE_TTL_S });
    const s = servicesOn(store, "/moat");
    await s.scripts.add("churn", SCRIPT, { language: "javascript" });
    hosts = startHosts(1, {
      MOAT_ETCD: etcd.endpoint,
      MOAT_AMQP: RABBIT_URL,
      MOAT_AMQP_EXCHANGES: JSON.stringify(exchanges),
      TMPDIR: tmp,
    });
    const host = hosts[0]!;
    await waitForLineIn([host], (l) => l.includes("running tasks of host"), 60_000, "host up");
    let serial = 0;
    const live = new Set<string>();
    const create = async () => {
      const me = `t${serial++}`;
      await s.tasks.add("churn", `${HOST}/${me}`, { data: [["me", me]] });
      live.add(me);
    };
    for (let i = 0; i < BASE_TASKS; i++) await create();

    /** Wait until exactly the live tasks run: leases, RPC consumers and sandboxes agree. */
    const settled = async (what: string) => {
      const deadline = Date.now() + QUEUE_TTL_S * 1000 + 60_000;
      let last = "";
      while (Date.now() < deadline) {
        const leases = (await etcdctl(etcd.endpoint, "lease", "list")).trim().split("\n").length -
          1;
        const running = new Set<string>();
        for (const kv of (await store.range("/moat/status/run/")).kvs) {
          const m = /\/status\/run\/rel\/(t\d+)\/:task\/running$/.exec(kv.key);
          if (m) running.add(m[1]!);
        }
        const queues = await queuesWith(`${ex.rpc}_rel.churn.`);
        const served = new Set(
          queues.filter((q) => q.endsWith(" 1")).map((q) => q.split(" ")[0]!.split(".").pop()!),
        );
        const same = (a: Set<string>) => a.size === live.size && [...a].every((x) => live.has(x));
        last = `live ${live.size}, running ${running.size}, leases ${leases}, ` +
          `queues ${queues.length}, served ${served.size}`;
        if (same(running) && same(served) && leases === live.size && queues.length === live.size) {
          return;
        }
        await quietPeriod(500);
      }
      throw new Error(`${what}: the running scripts never matched the tasks: ${last}`);
    };
    /** `ops` random operations spread over `ms`, then back to BASE_TASKS tasks. */
    const churn = async (ops: number, ms: number) => {
      const t0 = Date.now();
      const counts = { create: 0, change: 0, delete: 0 };
      for (let op = 0; op < ops; op++) {
        const pick = Math.random();
        const names = [...live];
        if (live.size < MAX_TASKS && (pick < 0.4 || live.size < 5)) {
          await create();
          counts.create++;
        } else if (pick < 0.7) {
          const me = names[Math.floor(Math.random() * names.length)]!;
          // A change of a task key (not data/) restarts its script.
          await store.put(`/moat/task/${HOST}/${me}/:task/descr`, `change ${op}`);
          counts.change++;
        } else {
          const me = names[Math.floor(Math.random() * names.length)]!;
          await s.tasks.delete(`${HOST}/${me}`);
          live.delete(me);
          counts.delete++;
        }
        const due = t0 + ((op + 1) * ms) / ops;
        if (due > Date.now()) await quietPeriod(due - Date.now());
      }
      while (live.size < BASE_TASKS) await create();
      while (live.size > BASE_TASKS) {
        const me = [...live][0]!;
        await s.tasks.delete(`${HOST}/${me}`);
        live.delete(me);
      }
      return { counts, ms: Date.now() - t0 };
    };
    await churn(WARMUP_OPS, WARMUP_MS);
    await settled("before the churn");
    // The host gives V8's grown heap back after one quiet 5 s interval
    // (host/tasks/memory_reducer.ts): measure after it did, as after the churn.
    await quietPeriod(MEMORY_QUIET_MS);
    const baseline = {
      children: (await children(host.pid)).length,
      rss: await rssKiB(host.pid),
      watchers: Number(
        (await (await fetch(`${etcd.endpoint}/metrics`)).text()).match(
          /^etcd_debugging_mvcc_watcher_total (\S+)$/m,
        )?.[1],
      ),
      streams: Number(
        (await (await fetch(`${etcd.endpoint}/metrics`)).text()).match(
          /^etcd_debugging_mvcc_watch_stream_total (\S+)$/m,
        )?.[1],
      ),
      dirs: await sandboxDirs(tmp, host.pid),
      cache: await treeSize(denoDir()),
    };
    assert(Number.isFinite(baseline.watchers) && Number.isFinite(baseline.streams), "metrics");
    report("before the churn", JSON.stringify({ ...baseline, tasks: live.size }));

    // The churn: OPS operations spread over DURATION_MS.
    const { counts, ms: took } = await churn(OPS, DURATION_MS);
    report("churn", `${JSON.stringify(counts)} in ${took} ms`);
    const settleAt = Date.now();
    await settled("after the churn");
    report("settled after the churn", `${Date.now() - settleAt} ms`);

    // Nothing leaked. Sandbox processes: the live ones plus the same spares.
    // Memory is compared as it was taken before: after a quiet spell.
    await quietPeriod(MEMORY_QUIET_MS);
    const deadline = Date.now() + 30_000;
    let after = { children: 0, rss: 0, dirs: { count: 0, bytes: 0, shared: 0 } };
    for (;;) {
      after = {
        children: (await children(host.pid)).length,
        rss: await rssKiB(host.pid),
        dirs: await sandboxDirs(tmp, host.pid),
      };
      const ok = after.children === baseline.children &&
        after.dirs.count === baseline.dirs.count &&
        after.rss <= baseline.rss * 1.2;
      if (ok || Date.now() > deadline) break;
      await quietPeriod(1_000);
    }
    const metrics = await (await fetch(`${etcd.endpoint}/metrics`)).text();
    const watchers = Number(metrics.match(/^etcd_debugging_mvcc_watcher_total (\S+)$/m)?.[1]);
    const streams = Number(metrics.match(/^etcd_debugging_mvcc_watch_stream_total (\S+)$/m)?.[1]);
    const cache = await treeSize(denoDir());
    report(
      "after the churn",
      JSON.stringify({ ...after, watchers, streams, cache, tasks: live.size }),
    );
    assertEquals(after.children, baseline.children, "sandbox processes");
    assertEquals(watchers, baseline.watchers, "etcd watchers");
    assertEquals(streams, baseline.streams, "etcd watch streams");
    assertEquals(after.dirs.count, baseline.dirs.count, "sandbox temp folders");
    assert(
      after.dirs.bytes <= baseline.dirs.bytes * 1.2 + 1024 * 1024,
      `sandbox temp folders grew from ${baseline.dirs.bytes} to ${after.dirs.bytes} bytes`,
    );
    assert(
      after.dirs.shared <= SHARED_CACHE_BYTES,
      `the shared Deno cache holds ${after.dirs.shared} bytes, over ${SHARED_CACHE_BYTES}`,
    );
    assert(
      after.rss <= baseline.rss * 1.2,
      `host RSS ${after.rss} KiB, over 120% of ${baseline.rss} KiB before the churn`,
    );
    // The shared Deno cache is reported, not asserted: other programs on the
    // machine (a test run beside this one) write to it. The sandboxes each
    // have a cache of their own (DENO_DIR in their folder, counted above).
    report("shared Deno cache", `${baseline.cache.bytes} -> ${cache.bytes} bytes`);
    // AMQP: one consumer per live task on the RPC queues, no other queue of the test grew.
    const consumers = (await queuesWith(ex.prefix)).map((q) => Number(q.split(" ")[1]))
      .reduce((a, b) => a + b, 0);
    const rpcConsumers = (await queuesWith(`${ex.rpc}_rel.churn.`)).length;
    assertEquals(rpcConsumers, live.size, "RPC consumers");
    report("AMQP consumers after the churn", `${consumers} (${rpcConsumers} for the tasks)`);
    assert(
      consumers <= live.size + 5,
      `AMQP consumers leaked: ${consumers} for ${live.size} tasks`,
    );
    report("scripts started", String(host.lines.filter((l) => / UP t\d+$/.test(l)).length));
  } finally {
    await stopHosts(hosts);
    await deleteExchanges(ex).catch(() => {});
    await store.close();
    await etcd.stop();
    await Deno.remove(tmp, { recursive: true });
  }
});
