/**
 * The lease fence (issue 21, docs/time.md "The lease fence"): a host whose
 * link to etcd is slow and then silently stops carrying requests must stop
 * its script before etcd can expire the lease, so that the host waiting to
 * take over never runs the task while the first one still does.
 *
 * Host 0 reaches etcd through a proxy (tests/_util/tcp_proxy.ts) that delays
 * every answer by 2 s; its keep-alives still succeed. Then the proxy stops
 * passing requests (the connection stays open, nothing errors). etcd
 * refreshed the lease when the last request *arrived*; the answer came 2 s
 * later. A host that counted the lease's life from the answer would run on
 * about 2 s past the expiry; counted from the request's send, minus the
 * margin, it stops before. The script's own ticks prove which: the last
 * tick on host 0 must come before etcd deletes the `running` key, and host
 * 1 starts the task only after that.
 */

import { assert } from "../_util/assert.ts";
import { startEtcd } from "../_util/etcd_server.ts";
import { type MoatProcess, waitForLineIn } from "../_util/cli.ts";
import { quietPeriod, withTimeout } from "../_util/wait.ts";
import { startTcpProxy } from "../_util/tcp_proxy.ts";
import { EtcdStore } from "../../host/store/etcd_store.ts";
import { servicesOn } from "../../host/cli/services.ts";
import { leaseFenceMarginMs } from "../../host/store/store.ts";
import { HOST, report, setRunConfig, startHosts, stopHosts } from "./_harness.ts";

/** The ttl is what this test is about: short, so that the expiry comes soon. */
const TTL = 10;
/** How long the proxy holds each answer to host 0. */
const ANSWER_DELAY_MS = 2000;
const TASK = `${HOST}/f`;
const TICKER = `moat.setup();
moat.run(async () => {
  for (;;) {
    moat.logger.info("TICK " + Date.now());
    await new Promise((r) => setTimeout(r, 100));
  }
});
`;

/** The tick times (script clock, ms) host `h` logged for the task. */
function tickTimes(h: MoatProcess): number[] {
  const out: number[] = [];
  for (const l of h.lines) {
    const m = /\] TICK (\d+)$/.exec(l);
    if (m && l.includes(`[${TASK}]`)) out.push(Number(m[1]));
  }
  return out;
}

Deno.test("a host whose etcd link stalls stops its script before etcd can expire the lease", async () => {
  const etcd = await startEtcd();
  const proxy = startTcpProxy(Number(new URL(etcd.endpoint).port));
  const store = new EtcdStore({ endpoints: [etcd.endpoint] });
  const hosts: MoatProcess[] = [];
  try {
    await setRunConfig(store, { ttl: TTL, refresh: TTL, retry: 0.5, max_retry: 2 });
    hosts.push(...startHosts(1, { MOAT_ETCD: proxy.endpoint }));
    const a = hosts[0]!;
    await waitForLineIn([a], (l) => l.includes("running tasks of host"), 60_000, "host 0 up");
    const s = servicesOn(store, "/moat");
    await s.scripts.add("ticker", TICKER, { language: "javascript" });
    await s.tasks.add("ticker", TASK);
    await waitForLineIn([a], (l) => l.includes(`[${TASK}] TICK`), 60_000, "ticks on host 0");
    hosts.push(...startHosts(1, { MOAT_ETCD: etcd.endpoint }));
    const b = hosts[1]!;
    await waitForLineIn([b], (l) => l.includes("running tasks of host"), 60_000, "host 1 up");

    // Slow answers: the keep-alives still succeed, each 2 s after etcd took it.
    proxy.delay("toClient", ANSWER_DELAY_MS);
    await quietPeriod(3 * ANSWER_DELAY_MS);
    assert(
      !a.lines.some((l) => l.includes("lease lost")),
      "a slow link alone does not lose the lease",
    );

    // etcd deletes `running` when the lease expires: the moment the fence is about.
    const running = `/moat/status/run/${TASK}/:task/running`;
    const expired = Promise.withResolvers<number>();
    const watch = await store.watch(running, (events) => {
      if (events.some((e) => e.type === "delete")) expired.resolve(Date.now());
    });
    let expiredAt: number;
    try {
      proxy.freeze("toServer");
      const frozenAt = Date.now();
      expiredAt = await withTimeout(expired.promise, (TTL + 60) * 1000, "the lease's expiry");
      report("fence: etcd expired the lease", `${expiredAt - frozenAt} ms after the freeze`);
    } finally {
      await watch.close();
    }
    await waitForLineIn(
      [a],
      (l) => l.includes(`[${TASK}] killing the script: lease lost`),
      60_000,
      "host 0 to kill its run",
    );
    await waitForLineIn([b], (l) => l.includes(`[${TASK}] TICK`), 60_000, "ticks on host 1");
    const lastA = Math.max(...tickTimes(a));
    const firstB = Math.min(...tickTimes(b));
    report(
      "fence: host 0's last tick",
      `${expiredAt - lastA} ms before etcd expired the lease (margin ${
        leaseFenceMarginMs(TTL)
      } ms)`,
    );
    assert(
      lastA < expiredAt,
      `host 0 ran its script ${lastA - expiredAt} ms past the lease's expiry in etcd`,
    );
    assert(lastA < firstB, "host 1 started only after host 0 stopped");
  } finally {
    proxy.thaw("toServer");
    proxy.delay("toClient", 0);
    await stopHosts(hosts);
    await store.close();
    await proxy.close();
    await etcd.stop();
  }
});
