import assert from "node:assert/strict";
import { startEtcd } from "../../tests/_util/etcd_server.ts";
import { startTcpProxy } from "../../tests/_util/tcp_proxy.ts";
import { Collector, withTimeout } from "../testing/wait.ts";
import { EtcdStore } from "./etcd_store.ts";
import { MemoryStore } from "./memory_store.ts";
import type { WatchEvent } from "./store.ts";
import { type ResyncGap, WatchFailedError, WatchHub } from "./watch_hub.ts";

/** Bound of a wait for what must happen: generous, it only catches a hang. */
const EVENT_MS = 60_000;

/** What the tests watch a hub do: its errors, recoveries and subscribers' resyncs. */
function observed() {
  const errors = new Collector<Error>();
  const recovered = new Collector<ResyncGap>();
  const resyncs = new Collector<ResyncGap>();
  const events = new Collector<WatchEvent[]>();
  return { errors, recovered, resyncs, events };
}

function keysOf(batches: WatchEvent[][]): string[] {
  return batches.flat().map((e) => `${e.type} ${e.kv.key}`);
}

Deno.test("WatchHub recovers from a start revision compacted away, re-reading and resyncing", async () => {
  const store = new MemoryStore();
  const seen = observed();
  const hub = new WatchHub(store, "/r/", {
    onError: seen.errors.push,
    onRecovered: seen.recovered.push,
  });
  try {
    const plain = new Collector<WatchEvent[]>();
    hub.subscribe("/r/a/", seen.events.push, { onResync: seen.resyncs.push });
    hub.subscribe("/r/", plain.push);
    const old = await store.put("/r/a/1", "1");
    await store.put("/r/a/2", "2");
    const now = await store.put("/r/b/3", "3");
    await store.compact(now);
    await hub.start(old);

    const [error] = await seen.errors.count(1, EVENT_MS, "the failure report");
    assert.ok(error instanceof WatchFailedError, String(error));
    assert.equal(error.prefix, "/r/");
    assert.equal(error.revision, old);
    assert.match(error.message, new RegExp(`^watch on /r/ failed at revision ${old}: `));
    assert.equal((error.cause as Error).name, "StoreCompactedError");

    const [gap] = await seen.resyncs.count(1, EVENT_MS, "the resync");
    assert.deepEqual(gap, { since: old - 1, revision: now });
    assert.deepEqual(await seen.recovered.count(1, EVENT_MS, "the recovery"), [gap]);

    // Later events arrive, in order, to every subscriber.
    await store.put("/r/a/4", "4");
    await store.put("/r/b/5", "5");
    await store.put("/r/a/6", "6");
    assert.deepEqual(keysOf(await seen.events.count(2, EVENT_MS, "the later events")), [
      "put /r/a/4",
      "put /r/a/6",
    ]);
    assert.deepEqual(keysOf(await plain.count(3, EVENT_MS, "every later event")), [
      "put /r/a/4",
      "put /r/b/5",
      "put /r/a/6",
    ]);
    assert.equal(seen.errors.items.length, 1);
    assert.equal(hub.revision, now + 3);
  } finally {
    await hub.close();
    await store.close();
  }
});

Deno.test("WatchHub stops recovering once closed", async () => {
  const store = new MemoryStore();
  const seen = observed();
  const hub = new WatchHub(store, "/c/", { onError: seen.errors.push });
  try {
    hub.subscribe("/c/", seen.events.push, { onResync: seen.resyncs.push });
    const old = await store.put("/c/a", "1");
    await store.compact(await store.put("/c/a", "2"));
    await hub.start(old);
    // Closed while the failure is still being handled: no resync, no
    // events, no timer left behind (the sanitizers check).
    await hub.close();
    await hub.close();
    await store.put("/c/a", "3");
    await new Promise((resolve) => setTimeout(resolve, 10));
    assert.deepEqual(seen.events.items, []);
    assert.deepEqual(seen.resyncs.items, []);
  } finally {
    await hub.close();
    await store.close();
  }
});

Deno.test("WatchHub on etcd recovers when it comes back to a compacted revision", async () => {
  const server = await startEtcd();
  const proxy = startTcpProxy(Number(new URL(server.endpoint).port));
  const direct = new EtcdStore({ endpoints: [server.endpoint], timeoutMs: 3_000 });
  const store = new EtcdStore({ endpoints: [proxy.endpoint], timeoutMs: 3_000 });
  const seen = observed();
  const hub = new WatchHub(store, "/moat/", {
    onError: seen.errors.push,
    onRecovered: seen.recovered.push,
  });
  try {
    hub.subscribe("/moat/task/", seen.events.push, {
      onResync: seen.resyncs.push,
    });
    await hub.start();
    const before = await direct.put("/moat/task/a", "1");
    await seen.events.count(1, EVENT_MS, "the event before the cut");
    await proxy.cut();
    // Behind the hub's back: changes, then a compaction past them.
    await direct.put("/moat/task/b", "2");
    const gone = await direct.put("/moat/task/c", "3");
    await direct.compact(gone);
    proxy.reconnect();

    const [error] = await seen.errors.count(1, EVENT_MS, "the failure report");
    assert.ok(error instanceof WatchFailedError, String(error));
    assert.equal(error.revision, before + 1);
    assert.match(error.message, new RegExp(`watch on /moat/ failed at revision ${before + 1}: `));
    const [gap] = await seen.resyncs.count(1, EVENT_MS, "the resync");
    assert.equal(gap!.since, before);
    assert.ok(gap!.revision >= gone, `resynced after ${gap!.revision}, before ${gone}`);
    await seen.recovered.count(1, EVENT_MS, "the recovery");

    await direct.put("/moat/task/d", "4");
    const batches = await seen.events.count(2, EVENT_MS, "the event after the recovery");
    assert.deepEqual(keysOf(batches), ["put /moat/task/a", "put /moat/task/d"]);
  } finally {
    await hub.close();
    await store.close();
    await direct.close();
    await proxy.close();
    await server.stop();
  }
});

Deno.test("WatchHub on etcd recovers from a revision its client cannot receive", async () => {
  const server = await startEtcd();
  const direct = new EtcdStore({ endpoints: [server.endpoint], timeoutMs: 3_000 });
  // A client taking at most 1 MiB per message fails on a 1.2 MB value at
  // every reconnect: the hub must skip past it by a fresh read.
  const store = new EtcdStore({
    endpoints: [server.endpoint],
    timeoutMs: 3_000,
    maxMessageBytes: 1024 * 1024,
  });
  const seen = observed();
  const hub = new WatchHub(store, "/moat/", {
    onError: seen.errors.push,
    onRecovered: seen.recovered.push,
  });
  try {
    hub.subscribe("/moat/", seen.events.push, { onResync: seen.resyncs.push });
    await hub.start();
    const big = await direct.put("/moat/task/big", "x".repeat(1_200_000));
    const [error] = await seen.errors.count(1, EVENT_MS, "the failure report");
    assert.ok(error instanceof WatchFailedError, String(error));
    assert.equal(error.revision, big);
    assert.match(error.message, /watch on \/moat\/ failed at revision \d+: .*broke 5 times/);
    const [gap] = await seen.resyncs.count(1, EVENT_MS, "the resync");
    assert.ok(gap!.revision >= big);
    await direct.put("/moat/task/small", "1");
    const batches = await seen.events.count(1, EVENT_MS, "the event after the recovery");
    assert.deepEqual(keysOf(batches), ["put /moat/task/small"]);
    assert.equal(seen.errors.items.length, 1);
  } finally {
    await hub.close();
    await store.close();
    await direct.close();
    await server.stop();
  }
});

Deno.test("WatchHub keeps delivering to the other subscribers when one throws", async () => {
  const store = new MemoryStore();
  const errors = new Collector<Error>();
  const hub = new WatchHub(store, "/t/", { onError: errors.push });
  try {
    const good = new Collector<WatchEvent[]>();
    hub.subscribe("/t/", () => {
      throw new TypeError("subscriber bug");
    });
    hub.subscribe("/t/", good.push);
    await hub.start();
    await store.put("/t/a", "1");
    await good.count(1, EVENT_MS, "the event");
    const [error] = await withTimeout(
      errors.count(1, EVENT_MS, "the subscriber's error"),
      EVENT_MS,
      "the error",
    );
    assert.ok(error instanceof TypeError);
  } finally {
    await hub.close();
    await store.close();
  }
});

Deno.test("WatchHub hands each subscriber its events of one response once, in order, in one call", async () => {
  const store = new MemoryStore();
  const hub = new WatchHub(store, "/h/");
  try {
    const many = new Collector<WatchEvent[]>();
    const plain = new Collector<WatchEvent[]>();
    const none = new Collector<WatchEvent[]>();
    // Two prefixes that overlap, and one that is a prefix as text only.
    const sub = hub.subscribe(["/h/a/", "/h/a/b", "/h/c"], many.push);
    hub.subscribe("/h/", plain.push);
    hub.subscribe("/h/z/", none.push);
    await hub.start();
    await store.txn([], [
      { type: "put", key: "/h/a/b/1", value: "1" },
      { type: "put", key: "/h/x/2", value: "2" },
      { type: "put", key: "/h/cd", value: "3" },
      { type: "put", key: "/h/a/4", value: "4" },
    ]);
    const [batch] = await many.count(1, EVENT_MS, "the subscriber's batch");
    assert.deepEqual(keysOf([batch!]), ["put /h/a/b/1", "put /h/cd", "put /h/a/4"]);
    assert.deepEqual(keysOf(await plain.count(1, EVENT_MS, "everything")), [
      "put /h/a/b/1",
      "put /h/x/2",
      "put /h/cd",
      "put /h/a/4",
    ]);

    // add() extends the subscription; close() ends it; others go on.
    sub.add("/h/x/");
    await store.put("/h/x/5", "5");
    assert.deepEqual(keysOf((await many.count(2, EVENT_MS, "the added prefix")).slice(1)), [
      "put /h/x/5",
    ]);
    sub.close();
    sub.close();
    await store.put("/h/a/6", "6");
    await store.put("/h/z/7", "7");
    assert.deepEqual(keysOf(await none.count(1, EVENT_MS, "the last subscriber")), ["put /h/z/7"]);
    assert.equal((await plain.count(4, EVENT_MS, "every event")).length, 4);
    assert.equal(many.items.length, 2, "nothing after close");
    assert.equal(hub.size, 2);
    assert.throws(() => hub.subscribe(["/h/a/", "/elsewhere/"], () => {}), RangeError);
  } finally {
    await hub.close();
  }
});
