/**
 * Scenario 4: the broker connection breaks under RPC and alert load. The
 * default run closes the hosts' connections from the broker's side
 * (`rabbitmqctl close_connection`); the soak run stops and starts the
 * RabbitMQ application (`stop_app` / `start_app`), always bringing it back.
 * No host dies, no script restarts, registrations come back, callers get
 * errors rather than hangs, and afterwards every RPC answers again.
 */

import { assert, assertEquals } from "../_util/assert.ts";
import { startEtcd } from "../_util/etcd_server.ts";
import { type MoatProcess, waitForLineIn } from "../_util/cli.ts";
import {
  closeConnectionsNamed,
  deleteExchanges,
  queuesWith,
  RABBIT_URL,
  rabbitmqctl,
  uniqueExchanges,
} from "../_util/rabbit.ts";
import { quietPeriod } from "../_util/wait.ts";
import { EtcdStore } from "../../host/store/etcd_store.ts";
import { AmqpBus } from "../../host/bus/amqp_bus.ts";
import { servicesOn } from "../../host/cli/services.ts";
import { HOST, report, setRunConfig, SOAK, startHosts, stopHosts } from "./_harness.ts";

const TASKS = SOAK ? 10 : 4;
const CALL_TIMEOUT_MS = 2_000;
/**
 * A call settles within its timeout; this much more is slack for a loaded
 * machine. Generous: it catches a call that hangs, not a slow one.
 */
const SLACK_MS = 30_000;

/** Serves `rel.echo.<me>`, listens to `rel.ping.#`, and calls and alerts its peer in a loop. */
const SERVER = `moat.setup();
const me = String(moat.data.get("me"));
const peer = String(moat.data.get("peer"));
const stats = { ok: 0, err: 0, maxMs: 0, alerts: 0 };
moat.rpc("rel.echo." + me)((a) => ({ me, a }));
moat.rpc("rel.stats." + me)(() => stats);
moat.on_alert("rel.ping.#")(() => { stats.alerts++; });
moat.on_start(() => moat.logger.info("SERVING " + me));
moat.run(async () => {
  for (;;) {
    const t = Date.now();
    try {
      await moat.call("rel.echo." + peer, t, { timeout: ${CALL_TIMEOUT_MS / 1000} });
      stats.ok++;
    } catch {
      stats.err++;
    }
    stats.maxMs = Math.max(stats.maxMs, Date.now() - t);
    try {
      await moat.alert("rel.ping." + me, stats.ok);
    } catch {
      // The broker is away: alerts are not queued.
    }
    await new Promise((r) => setTimeout(r, 100));
  }
});
`;

/** Call `fn` until it resolves, at most `ms`; the timeout names the last error. */
async function retryUntil(fn: () => Promise<void>, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  for (let i = 0;; i++) {
    try {
      return await fn();
    } catch (e) {
      if (Date.now() > deadline) {
        throw new Error(`Timed out after ${ms} ms (${i + 1} tries) waiting for ${what}`, {
          cause: e,
        });
      }
      await quietPeriod(100);
    }
  }
}

/** Bring the broker back and wait (≤ 60 s) until it accepts AMQP connections. */
async function ensureBrokerUp(): Promise<void> {
  await rabbitmqctl("start_app");
  await rabbitmqctl("await_startup");
  const deadline = Date.now() + 60_000;
  for (;;) {
    const probe = new AmqpBus({ url: RABBIT_URL, connectTimeoutMs: 2_000 });
    try {
      await probe.connect();
      return;
    } catch (e) {
      if (Date.now() > deadline) throw e;
      await quietPeriod(250);
    } finally {
      await probe.close();
    }
  }
}

Deno.test(`RabbitMQ ${SOAK ? "restart" : "connection drop"} under RPC and alert load: no host dies, every RPC answers again`, async () => {
  const etcd = await startEtcd();
  const store = new EtcdStore({ endpoints: [etcd.endpoint] });
  const ex = uniqueExchanges();
  const exchanges = { alert: ex.alert, rpc: ex.rpc, reply: ex.reply, dead: ex.dead };
  const client = new AmqpBus({
    url: RABBIT_URL,
    exchanges,
    connectionName: `rel-client-${ex.prefix}`,
    reconnectMaxMs: 500,
  });
  let hosts: MoatProcess[] = [];
  let brokerStopped = false;
  let loadOn = true;
  let load: Promise<void> = Promise.resolve();
  try {
    // A ttl no live host misses on a busy machine: no script may restart here.
    await setRunConfig(store, { ttl: 30, refresh: 5 });
    const s = servicesOn(store, "/moat");
    await s.scripts.add("server", SERVER, { language: "javascript" });
    const names = Array.from({ length: TASKS }, (_, i) => `s${i}`);
    hosts = startHosts(2, {
      MOAT_ETCD: etcd.endpoint,
      MOAT_AMQP: RABBIT_URL,
      MOAT_AMQP_EXCHANGES: JSON.stringify(exchanges),
    });
    for (const h of hosts) {
      await waitForLineIn([h], (l) => l.includes("running tasks of host"), 60_000, "host up");
    }
    for (const [i, me] of names.entries()) {
      const peer = names[(i + 1) % names.length]!;
      await s.tasks.add("server", `${HOST}/${me}`, { data: [["me", me], ["peer", peer]] });
    }
    for (const me of names) {
      await waitForLineIn(hosts, (l) => l.includes(`SERVING ${me}`), 60_000, `${me} serving`);
    }
    await client.connect();
    const answersAll = async () => {
      for (const me of names) {
        const r = await client.call(`rel.echo.${me}`, 1, { timeoutMs: CALL_TIMEOUT_MS }) as {
          me: string;
        };
        assertEquals(r.me, me, JSON.stringify(r));
      }
    };
    await retryUntil(answersAll, 60_000, "every RPC to answer before the fault");

    // The test's own load: call every RPC in turn; note errors and durations.
    const calls = { ok: 0, err: 0, maxMs: 0 };
    load = (async () => {
      for (let i = 0; loadOn && i < 1_000_000; i++) {
        const t = performance.now();
        try {
          await client.call(`rel.echo.${names[i % names.length]}`, i, {
            timeoutMs: CALL_TIMEOUT_MS,
          });
          calls.ok++;
        } catch {
          calls.err++;
          await quietPeriod(50);
        }
        calls.maxMs = Math.max(calls.maxMs, performance.now() - t);
      }
    })();
    await quietPeriod(1_000);

    const faultAt = performance.now();
    if (SOAK) {
      brokerStopped = true;
      await rabbitmqctl("stop_app");
      await quietPeriod(10_000);
      await ensureBrokerUp();
      brokerStopped = false;
    } else {
      const closed = await closeConnectionsNamed(`moat-run-${HOST}`);
      assertEquals(closed, 2, "both hosts' connections closed");
    }
    const backAt = performance.now();
    await retryUntil(answersAll, 60_000, "every RPC to answer after the fault");
    report(
      SOAK ? "RabbitMQ stop_app 10 s + start_app" : "close_connection of both hosts",
      `every RPC answers ${Math.round(performance.now() - backAt)} ms after the broker was back ` +
        `(${Math.round(backAt - faultAt)} ms outage)`,
    );
    await quietPeriod(1_000);
    loadOn = false;
    await load;
    report(
      "test caller during the fault",
      JSON.stringify({ ...calls, maxMs: Math.round(calls.maxMs) }),
    );
    assert(
      calls.maxMs < CALL_TIMEOUT_MS + SLACK_MS,
      `a call hung for ${calls.maxMs} ms (timeout ${CALL_TIMEOUT_MS} ms)`,
    );
    if (SOAK) assert(calls.err > 0, "calls during the outage failed, as they must");

    // No host died and no script restarted.
    for (const [i, h] of hosts.entries()) {
      const exited = await Promise.race([
        h.status.then(() => true),
        quietPeriod(0).then(() => false),
      ]);
      assert(!exited, `host ${i} died:\n${h.lines.slice(-30).join("\n")}`);
    }
    const serving = hosts.flatMap((h) => h.lines).filter((l) => / SERVING s\d+$/.test(l));
    assertEquals(serving.length, TASKS, "no script restarted");
    // Registrations came back: every RPC queue has a consumer again.
    const queues = await queuesWith(`${ex.rpc}_rel.echo.`);
    assertEquals(queues.length, TASKS, queues.join("\n"));
    for (const q of queues) assert(!q.endsWith(" 0"), `no consumer: ${q}`);
    // The scripts' own calls and alerts flow again, and none of their calls hung.
    const before = new Map<string, { ok: number; alerts: number; maxMs: number }>();
    for (const me of names) before.set(me, await client.call(`rel.stats.${me}`, null) as never);
    await quietPeriod(1_500);
    for (const me of names) {
      const now = await client.call(`rel.stats.${me}`, null) as { ok: number; alerts: number };
      const was = before.get(me)!;
      assert(now.ok > was.ok, `${me}: its calls answer again`);
      assert(now.alerts > was.alerts, `${me}: alerts arrive again`);
      assert(was.maxMs < CALL_TIMEOUT_MS + SLACK_MS, `${me}: a call hung for ${was.maxMs} ms`);
    }
  } finally {
    loadOn = false;
    if (brokerStopped) await ensureBrokerUp();
    await load.catch(() => {});
    await stopHosts(hosts);
    await client.close();
    await deleteExchanges(ex).catch(() => {});
    await store.close();
    await etcd.stop();
  }
  assertEquals(await queuesWith(ex.prefix), [], "nothing left in the broker");
});
