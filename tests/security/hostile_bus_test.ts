/**
 * Hostile scripts against the bus (issue 13): registration races, channel
 * exhaustion, unbounded queues, the hosts' reserved names, squatting on
 * another script's RPC name, and replies built to break the AMQP frame.
 * Each attack runs in a real host on a private etcd and the local
 * RabbitMQ; the last test checks that the installation stayed healthy.
 *
 * @module
 */

import { match as assertMatch } from "node:assert/strict";
import { assert, assertEquals } from "../_util/assert.ts";
import { withTimeout } from "../_util/wait.ts";
import { queuesWith, rabbitmqctl } from "../_util/rabbit.ts";
import { type BusState, RpcRemoteError, RpcTimeoutError } from "../../host/bus/bus.ts";
import { waitForKey } from "../_util/store_wait.ts";
import {
  closeHostile,
  HOST_NAME,
  linesStarting,
  registeringScript,
  runScript,
  SHARED,
  sharedHostile,
} from "./_hostile.ts";

// A queue bound below the default, so that the queue-growth attack meets it.
const get = sharedHostile({ config: { queue_length: "1000" } });

/** Ready messages in the queue `name` (0 when it does not exist). */
async function ready(name: string): Promise<number> {
  const rows = JSON.parse(
    await rabbitmqctl("list_queues", "name", "messages_ready", "--formatter", "json"),
  ) as { name: string; messages_ready: number }[];
  return rows.find((r) => r.name === name)?.messages_ready ?? 0;
}

/** Channels of the connections whose connection_name is `name`. */
async function channelsOf(name: string): Promise<number> {
  const conns = (await rabbitmqctl("list_connections", "pid", "client_properties"))
    .split("\n").filter((l) => l.includes(`{"connection_name","${name}"}`))
    .map((l) => l.split("\t")[0]!);
  const rows = JSON.parse(
    await rabbitmqctl("list_channels", "connection", "--formatter", "json"),
  ) as { connection: string }[];
  return rows.filter((r) => conns.includes(r.connection)).length;
}

/** Wait until the RPC queue of `name` has a consumer (moat.rpc does not wait for the broker). */
async function served(h: { exchanges: { rpc: string } }, name: string): Promise<void> {
  const until = performance.now() + 60_000;
  while (
    !(await queuesWith(`${h.exchanges.rpc}_${name} `.trimEnd())).includes(
      `${h.exchanges.rpc}_${name} 1`,
    )
  ) {
    assert(performance.now() < until, `nobody serves "${name}"`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

function unique(): string {
  return `u${crypto.randomUUID().slice(0, 8)}`;
}

Deno.test({
  name: "200 concurrent moat.rpc calls get no more than the registrations quota",
  ...SHARED,
  fn: async () => {
    const h = await get();
    const u = unique();
    const out = await h.run(`
      moat.setup();
      for (let i = 0; i < 200; i++) moat.rpc("${u}.n" + i)(() => i);
      await new Promise((r) => setTimeout(r, 20000));
    `);
    assertEquals(out.state, "error", out.message);
    assertMatch(out.message, /quota registrations = 100/);
    assertEquals(await queuesWith(`${h.exchanges.rpc}_${u}.`), []);
  },
});

Deno.test({
  name: "two scripts with 100 registrations each use 2 channels each, and RPC still works",
  ...SHARED,
  fn: async () => {
    const h = await get();
    const u = unique();
    const greedy = (tag: string) =>
      registeringScript(`
      for (let i = 0; i < 95; i++) moat.rpc("${u}.${tag}" + i)(() => i);
      for (let i = 0; i < 5; i++) moat.on_alert("${u}.${tag}.a" + i + ".#")(() => {});
    `);
    const before = await channelsOf(`moat-hostile-${h.exchanges.prefix}`);
    const a = await h.start(greedy("a"));
    const b = await h.start(greedy("b"));
    const friend = await h.start(registeringScript(`
      moat.rpc("${u}.friend")((x) => ({ pong: x }));
    `));
    try {
      for (const p of [a, b, friend]) await h.registered(p);
      // moat.rpc does not wait for the broker: wait until every queue has its consumer.
      const until = performance.now() + 60_000;
      for (;;) {
        const qs = await queuesWith(`${h.exchanges.rpc}_${u}.`);
        if (qs.length === 191 && qs.every((q) => q.endsWith(" 1"))) break;
        assert(performance.now() < until, `only ${qs.length} of 191 queues are served`);
        await new Promise((r) => setTimeout(r, 250));
      }
      for (let i = 0; i < 95; i += 31) {
        assertEquals(await h.bus.call(`${u}.a${i}`, null, { timeoutMs: 30_000 }), i);
        assertEquals(await h.bus.call(`${u}.b${i}`, null, { timeoutMs: 30_000 }), i);
      }
      assertEquals(await h.bus.call(`${u}.friend`, 7, { timeoutMs: 30_000 }), { pong: 7 });
      // Three runs, at most `channels` = 2 channels each, on the host's one connection.
      const now = await channelsOf(`moat-hostile-${h.exchanges.prefix}`);
      assert(now - before <= 6, `the scripts opened ${now - before} channels`);
    } finally {
      for (const p of [a, b, friend]) await h.stop(p);
    }
  },
});

Deno.test({
  name: "requests to a server that never replies stay within queue_length and expire",
  ...SHARED,
  fn: async () => {
    const h = await get();
    const u = unique();
    const path = await h.start(registeringScript(`
      moat.rpc("${u}.sink")(() => new Promise(() => {}));
    `));
    const queue = `${h.exchanges.rpc}_${u}.sink`;
    try {
      await h.registered(path);
      await served(h, `${u}.sink`);
      const states: BusState[] = [];
      const off = h.bus.onState((s) => states.push(s));
      const calls: Promise<unknown>[] = [];
      for (let i = 0; i < 5000; i++) {
        calls.push(h.bus.call(`${u}.sink`, i, { timeoutMs: 1_000 }).catch((e) => e));
      }
      const waiting = await ready(queue);
      assert(waiting <= 1000, `${waiting} requests wait in ${queue}`);
      const ends = await withTimeout(Promise.all(calls), 120_000, "5000 calls to time out");
      assert(ends.every((e) => e instanceof RpcTimeoutError));
      const until = performance.now() + 60_000;
      while (await ready(queue) > 0) {
        assert(performance.now() < until, `${queue} did not empty`);
        await new Promise((r) => setTimeout(r, 200));
      }
      off();
      assertEquals(states, []);
    } finally {
      await h.stop(path);
    }
  },
});

Deno.test({
  name: "a script can neither serve, call nor publish the hosts' moat. names",
  ...SHARED,
  fn: async () => {
    const h = await get();
    const debug = `moat.debug.${HOST_NAME}`;
    const served = await h.run(`
      moat.setup();
      moat.rpc("${debug}")(() => ({ task: { script: { forged: true } } }));
      await new Promise((r) => setTimeout(r, 20000));
    `);
    assertEquals(served.state, "error");
    assertMatch(served.message, /RPC name "moat\.debug\.hostile" is reserved/);
    const other = await h.run(runScript(`
      for (const f of [
        () => moat.call("${debug}", ""),
        () => moat.alert("moat.task.hostile.neighbour", { state: "fail" }),
        () => moat.call("moat.task.x", 1),
      ]) {
        try { await f(); moat.logger.info("allowed"); }
        catch (e) { moat.logger.info("refused " + e.code + ": " + e.message); }
      }
      moat.on_alert("moat.task.#")(() => {});
      await moat.time_at("1 sec");
      `));
    assertEquals(other.state, "ok", other.message);
    const refused = linesStarting(other.logs, "refused reserved: ");
    assertEquals(refused.length, 3, other.logs.join("\n"));
    assert(!other.logs.includes("allowed"));
    // The host's own debug RPC still answers, unforged.
    const answer = await h.bus.call(debug, "", { timeoutMs: 30_000 });
    assert(!JSON.stringify(answer).includes("forged"), JSON.stringify(answer));
  },
});

Deno.test({
  name: "a script cannot serve an RPC name another script serves, the same script can",
  ...SHARED,
  fn: async () => {
    const h = await get();
    const u = unique();
    const code = registeringScript(`
      moat.rpc("${u}.lamp")(() => "${u}");
    `);
    const owner = await h.start(code);
    const script = owner.split("/")[1]!;
    const twin = `${HOST_NAME}/${script}-twin`;
    try {
      await h.registered(owner);
      // moat.rpc does not wait for its claim: wait for the holder key.
      const holder = (task: string) => `/moat/status/rpc/${u}.lamp/task/${task}`;
      await waitForKey(h.store, holder(owner), (v) => v === script, 60_000);
      const squat = await h.run(code);
      assertEquals(squat.state, "error");
      assertMatch(squat.message, new RegExp(`"${u}\\.lamp" is served by script "${script}"`));
      // A second task of the owner's script shares the name.
      await h.services.tasks.add(script, twin);
      await h.registered(twin);
      await waitForKey(h.store, holder(twin), (v) => v === script, 60_000);
      const holders = await h.store.range(`/moat/status/rpc/${u}.lamp/task/`);
      assertEquals(holders.kvs.map((kv) => kv.value), [script, script]);
    } finally {
      await h.stop(owner);
      if (h.host.runner(twin)) await h.stop(twin);
    }
    assertEquals((await h.store.range(`/moat/status/rpc/${u}.lamp/`)).kvs, []);
  },
});

Deno.test({
  name: "hostile rpc replies get the caller one bounded answer and break nothing",
  ...SHARED,
  fn: async () => {
    const h = await get();
    const u = unique();
    const path = await h.start(registeringScript(`
      moat.rpc("${u}.evil")((kind) => {
        if (kind === "message") throw new Error("é".repeat(100000));
        if (kind === "bridge") throw new Error("é".repeat(600000));
        if (kind === "class") { const e = new Error("c"); e.name = "C".repeat(70000); throw e; }
        if (kind === "big") return "x".repeat(1000000);
        if (kind === "deep") { let v = []; for (let i = 0; i < 100000; i++) v = [v]; return v; }
        return kind;
      });
    `));
    try {
      await h.registered(path);
      await served(h, `${u}.evil`);
      const states: BusState[] = [];
      const off = h.bus.onState((s) => states.push(s));
      const before = h.logger.lines.length;
      // "bridge": the error does not even fit the sandbox's bridge (1 MiB).
      for (const kind of ["message", "class", "big", "deep", "bridge"]) {
        const e = await h.bus.call(`${u}.evil`, kind, { timeoutMs: 10_000 }).catch((e) => e);
        assert(e instanceof RpcRemoteError, `${kind}: ${String(e).slice(0, 300)}`);
        assert(new TextEncoder().encode(e.remote.m).length <= 4096, kind);
        assertMatch(e.remote.c, /^[A-Za-z_$][\w$.-]{0,99}$/);
      }
      assertEquals(await h.bus.call(`${u}.evil`, "fine", { timeoutMs: 30_000 }), "fine");
      off();
      assertEquals(states, []);
      for (const l of h.logger.lines.slice(before)) {
        assert(!l.message.includes("\n    at "), `a stack trace in the log: ${l.message}`);
        assert(l.message.length < 10_000, `a log line of ${l.message.length} characters`);
      }
    } finally {
      await h.stop(path);
    }
  },
});

closeHostile(get);
