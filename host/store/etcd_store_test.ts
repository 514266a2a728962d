import assert from "node:assert/strict";
import { etcdctl, type EtcdServer, startEtcd } from "../../tests/_util/etcd_server.ts";
import { startTcpProxy } from "../../tests/_util/tcp_proxy.ts";
import { Collector, withTimeout } from "../../tests/_util/wait.ts";
import { EtcdStore } from "./etcd_store.ts";
import { storeContract } from "./store_contract.ts";
import { StoreUnavailableError, type WatchEvent } from "./store.ts";

// Each case gets its own etcd: starting one takes ~0.1 s, and a fresh server
// makes revision numbers exact.
storeContract("EtcdStore", async () => {
  const server = await startEtcd();
  return { store: new EtcdStore({ endpoints: [server.endpoint] }), cleanup: () => server.stop() };
});

async function withEtcd(fn: (server: EtcdServer, store: EtcdStore) => Promise<void>) {
  const server = await startEtcd();
  const store = new EtcdStore({ endpoints: [server.endpoint], timeoutMs: 3_000 });
  try {
    await fn(server, store);
  } finally {
    await store.close();
    await server.stop();
  }
}

/** A loopback port that nothing listens on. */
function closedPort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

Deno.test("EtcdStore rejects with StoreUnavailableError within its deadline when etcd is unreachable", async () => {
  const endpoint = `http://127.0.0.1:${closedPort()}`;
  const store = new EtcdStore({ endpoints: [endpoint], timeoutMs: 500 });
  try {
    for (
      const [what, op] of [
        ["get", () => store.get("/a")],
        ["put", () => store.put("/a", "1")],
        ["range", () => store.range("/")],
        ["txn", () => store.txn([], [{ type: "put", key: "/a", value: "1" }])],
        ["watch", () => store.watch("/", () => {})],
        ["grantLease", () => store.grantLease(5)],
      ] as const
    ) {
      const started = Date.now();
      const error = await withTimeout(
        (op() as Promise<unknown>).then(() => undefined, (e: unknown) => e),
        5_000,
        `${what} to reject`,
      );
      const elapsed = Date.now() - started;
      assert.ok(error instanceof StoreUnavailableError, `${what}: got ${String(error)}`);
      assert.equal(error.message, `etcd at ${endpoint} is not reachable`);
      assert.ok(!error.message.includes("\n"));
      assert.ok(elapsed < 2_500, `${what} took ${elapsed} ms with a 500 ms deadline`);
    }
  } finally {
    await store.close();
  }
});

Deno.test("EtcdStore writes plain UTF-8 text that etcdctl reads back", async () => {
  await withEtcd(async (server, store) => {
    await store.put("/moat/config/timezone", "Europe/Berlin");
    assert.equal(
      await etcdctl(server.endpoint, "get", "--print-value-only", "/moat/config/timezone"),
      "Europe/Berlin\n",
    );
    await etcdctl(server.endpoint, "put", "/moat/by-hand", "Grüße");
    assert.equal((await store.get("/moat/by-hand"))?.value, "Grüße");
  });
});

Deno.test("EtcdStore keeps a watch across an etcd restart, losing and repeating nothing", async () => {
  await withEtcd(async (server, store) => {
    const seen = new Collector<WatchEvent[]>();
    const watch = await store.watch("/rs/", seen.push);
    try {
      await store.put("/rs/before", "1");
      await seen.count(1, 5_000, "the event before the restart");
      await server.restart();
      // Written while our client is still reconnecting: must be replayed.
      await etcdctl(server.endpoint, "put", "/rs/during", "2");
      await store.put("/rs/after", "3");
      const batches = await seen.count(3, 10_000, "the events after the restart");
      await store.put("/rs/fence", "4");
      await seen.count(4, 5_000, "the fence event");
      assert.deepEqual(batches.map((b) => b.map((e) => e.kv.key)), [
        ["/rs/before"],
        ["/rs/during"],
        ["/rs/after"],
        ["/rs/fence"],
      ]);
    } finally {
      await watch.close();
    }
  });
});

Deno.test("EtcdStore keeps a watch across an etcd crash (SIGKILL) and replays what it missed", async () => {
  await withEtcd(async (server, store) => {
    const seen = new Collector<WatchEvent[]>();
    const watch = await store.watch("/kill/", seen.push);
    try {
      await store.put("/kill/a", "1");
      await seen.count(1, 5_000, "the first event");
      await server.kill("SIGKILL");
      await server.restart();
      await etcdctl(server.endpoint, "put", "/kill/b", "2");
      await etcdctl(server.endpoint, "del", "/kill/a");
      const batches = await seen.count(3, 10_000, "the events after the crash");
      assert.deepEqual(batches.map((b) => b.map((e) => `${e.type} ${e.kv.key}`)), [
        ["put /kill/a"],
        ["put /kill/b"],
        ["delete /kill/a"],
      ]);
    } finally {
      await watch.close();
    }
  });
});

Deno.test("EtcdStore waits within its deadline for an etcd that is coming back", async () => {
  await withEtcd(async (server, store) => {
    await store.put("/back/a", "1");
    await server.kill("SIGTERM");
    const pending = store.get("/back/a");
    await server.restart();
    assert.equal((await pending)?.value, "1");
    assert.equal(await store.put("/back/b", "2"), 3, "the write applied exactly once");
  });
});

Deno.test("EtcdStore gives up on a stopped etcd with StoreUnavailableError after its deadline", async () => {
  await withEtcd(async (server, store) => {
    await store.put("/down/a", "1");
    await server.kill("SIGKILL");
    const started = Date.now();
    await assert.rejects(store.put("/down/a", "2"), StoreUnavailableError);
    const elapsed = Date.now() - started;
    // It gives up at the deadline when the call never goes out, or at once
    // when the dying connection resets it; never later than the deadline.
    assert.ok(elapsed < 5_000, `gave up after ${elapsed} ms, deadline 3000`);
  });
});

Deno.test("EtcdStore resolves lost when keep-alives fail for longer than the TTL", async () => {
  await withEtcd(async (server, store) => {
    const lease = await store.grantLease(2, { keepAliveEvery: 0.5 });
    server.pause();
    try {
      const reason = await withTimeout(lease.lost, 8_000, "the lease to be lost");
      assert.match(reason.message, /no keep-alive succeeded/);
    } finally {
      server.resume();
    }
  });
});

Deno.test("EtcdStore resumes a cut-off watch at the first event it missed, repeating none", async () => {
  const server = await startEtcd();
  const proxy = startTcpProxy(Number(new URL(server.endpoint).port));
  const store = new EtcdStore({ endpoints: [proxy.endpoint], timeoutMs: 3_000 });
  try {
    const seen = new Collector<WatchEvent[]>();
    const watch = await store.watch("/cut/", seen.push);
    try {
      await store.put("/cut/a", "1");
      await seen.count(1, 5_000, "the event before the cut");
      await proxy.cut();
      // Our client cannot reach etcd now; these happen behind its back.
      await etcdctl(server.endpoint, "put", "/cut/b", "2");
      await etcdctl(server.endpoint, "del", "/cut/a");
      await etcdctl(server.endpoint, "put", "/cut/b", "3");
      proxy.reconnect();
      await store.put("/cut/c", "4");
      const batches = await seen.count(5, 10_000, "the missed events and the new one");
      assert.deepEqual(batches.map((b) => b.map((e) => `${e.type} ${e.kv.key}`)), [
        ["put /cut/a"],
        ["put /cut/b"],
        ["delete /cut/a"],
        ["put /cut/b"],
        ["put /cut/c"],
      ]);
      assert.equal(batches[3]?.[0]?.prevKv?.value, "2");
    } finally {
      await watch.close();
    }
  } finally {
    await store.close();
    await proxy.close();
    await server.stop();
  }
});
