import assert from "node:assert/strict";
import { etcdctl, type EtcdServer, startEtcd } from "../../tests/_util/etcd_server.ts";
import { startTcpProxy } from "../../tests/_util/tcp_proxy.ts";
import { Collector, withTimeout } from "../testing/wait.ts";
import { EtcdStore } from "./etcd_store.ts";
import { storeContract } from "./store_contract.ts";
import { StoreUnavailableError, type WatchEvent } from "./store.ts";

// Each case gets its own etcd: starting one takes ~0.1 s, and a fresh server
// makes revision numbers exact.
storeContract("EtcdStore", async () => {
  const server = await startEtcd();
  return { store: new EtcdStore({ endpoints: [server.endpoint] }), cleanup: () => server.stop() };
});

/** A private etcd and a store on it; `timeoutMs` is the store's deadline. */
async function withEtcd(
  fn: (server: EtcdServer, store: EtcdStore) => Promise<void>,
  timeoutMs = 3_000,
) {
  const server = await startEtcd();
  const store = new EtcdStore({ endpoints: [server.endpoint], timeoutMs });
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

Deno.test("EtcdStore rejects with StoreUnavailableError when etcd is unreachable", async () => {
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
      // It rejects rather than hangs (how soon after the 500 ms deadline
      // depends on the machine; the bound only catches a hang).
      const error = await withTimeout(
        (op() as Promise<unknown>).then(() => undefined, (e: unknown) => e),
        60_000,
        `${what} to reject`,
      );
      assert.ok(error instanceof StoreUnavailableError, `${what}: got ${String(error)}`);
      assert.equal(error.message, `etcd at ${endpoint} is not reachable`);
      assert.ok(!error.message.includes("\n"));
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
      await seen.count(1, 60_000, "the event before the restart");
      await server.restart();
      // Written while our client is still reconnecting: must be replayed.
      await etcdctl(server.endpoint, "put", "/rs/during", "2");
      await store.put("/rs/after", "3");
      const batches = await seen.count(3, 60_000, "the events after the restart");
      await store.put("/rs/fence", "4");
      await seen.count(4, 60_000, "the fence event");
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
      await seen.count(1, 60_000, "the first event");
      await server.kill("SIGKILL");
      await server.restart();
      await etcdctl(server.endpoint, "put", "/kill/b", "2");
      await etcdctl(server.endpoint, "del", "/kill/a");
      const batches = await seen.count(3, 60_000, "the events after the crash");
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
    // A deadline far longer than any restart, however busy the machine: this
    // test is about waiting, the next one about giving up.
  }, 120_000);
});

Deno.test("EtcdStore gives up on a stopped etcd with StoreUnavailableError after its deadline", async () => {
  await withEtcd(async (server, store) => {
    await store.put("/down/a", "1");
    await server.kill("SIGKILL");
    // It gives up at the deadline when the call never goes out, or at once
    // when the dying connection resets it; the bound only catches a hang.
    await withTimeout(
      assert.rejects(store.put("/down/a", "2"), StoreUnavailableError),
      60_000,
      "the put to give up",
    );
  });
});

Deno.test("EtcdStore resolves lost when keep-alives fail for longer than the TTL", async () => {
  await withEtcd(async (server, store) => {
    const lease = await store.grantLease(2, { keepAliveEvery: 0.5 });
    server.pause();
    try {
      const reason = await withTimeout(lease.lost, 60_000, "the lease to be lost");
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
      await seen.count(1, 60_000, "the event before the cut");
      await proxy.cut();
      // Our client cannot reach etcd now; these happen behind its back.
      await etcdctl(server.endpoint, "put", "/cut/b", "2");
      await etcdctl(server.endpoint, "del", "/cut/a");
      await etcdctl(server.endpoint, "put", "/cut/b", "3");
      proxy.reconnect();
      await store.put("/cut/c", "4");
      const batches = await seen.count(5, 60_000, "the missed events and the new one");
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

/** A value of `size` characters that tells its key apart from every other. */
function bigValue(tag: string, size: number): string {
  const head = `${tag}:`;
  return head + String.fromCharCode(97 + (tag.length % 26)).repeat(size - head.length - 1) + "$";
}

Deno.test("EtcdStore reads and watches a folder of 6 × 1 MB values whole, and its watch survives their deletion", async () => {
  await withEtcd(async (_server, store) => {
    const size = 1_000_000;
    const keys = Array.from({ length: 6 }, (_, i) => `/big/data/v${i}`);
    const live = new Collector<WatchEvent[]>();
    const first = 1 + (await store.range("/big/")).revision;
    const watch = await store.watch("/big/", live.push);
    try {
      for (const key of keys) await store.put(key, bigValue(key, size));
      // 6 MB: more than gRPC's default 4 MiB in one message.
      const whole = await store.range("/big/");
      assert.deepEqual(whole.kvs.map((kv) => kv.key), keys);
      for (const kv of whole.kvs) assert.ok(kv.value === bigValue(kv.key, size), kv.key);
      const puts = (await live.count(6, 60_000, "the six big puts")).flat();
      assert.deepEqual(puts.map((e) => `${e.type} ${e.kv.key}`), keys.map((k) => `put ${k}`));
      for (const e of puts) assert.ok(e.kv.value === bigValue(e.kv.key, size), e.kv.key);

      // One revision deleting all six, each with its 1 MB previous value:
      // etcd sends it in fragments, delivered as one batch.
      assert.equal(await store.delete("/big/", { prefix: true }), 6);
      const [deletion] = (await live.count(7, 60_000, "the prefix delete")).slice(6);
      assert.deepEqual(
        deletion!.map((e) => `${e.type} ${e.kv.key}`),
        keys.map((k) => `delete ${k}`),
      );
      for (const e of deletion!) assert.ok(e.prevKv?.value === bigValue(e.kv.key, size), e.kv.key);

      // The watch lives on: more (big) writes arrive.
      await store.put("/big/data/again", bigValue("again", size));
      await store.put("/big/data/small", "1");
      const after = (await live.count(9, 60_000, "the writes after the delete")).slice(7).flat();
      assert.deepEqual(after.map((e) => e.kv.key), ["/big/data/again", "/big/data/small"]);
      assert.ok(after[0]!.kv.value === bigValue("again", size));

      // A watch replaying all of it from the first revision sees the same.
      const replay = new Collector<WatchEvent[]>();
      const again = await store.watch("/big/", replay.push, { startRevision: first });
      try {
        const batches = await replay.count(9, 60_000, "the replayed history");
        assert.deepEqual(
          batches.map((b) => b.map((e) => `${e.type} ${e.kv.key}`)),
          live.items.map((b) => b.map((e) => `${e.type} ${e.kv.key}`)),
        );
        assert.ok(batches[6]!.every((e) => e.prevKv?.value === bigValue(e.kv.key, size)));
      } finally {
        await again.close();
      }
    } finally {
      await watch.close();
    }
  });
});

Deno.test("EtcdStore reports a watch that breaks again and again at one revision, naming prefix and revision", async () => {
  await withEtcd(async (server, writer) => {
    // A client that takes at most 1 MiB per message cannot receive a 1.2 MB
    // value: etcd sends the same response at every reconnect.
    const small = new EtcdStore({
      endpoints: [server.endpoint],
      timeoutMs: 3_000,
      maxMessageBytes: 1024 * 1024,
    });
    try {
      const failed = Promise.withResolvers<Error>();
      const seen = new Collector<WatchEvent[]>();
      const watch = await small.watch("/huge/", seen.push, { onError: failed.resolve });
      try {
        await small.put("/huge/a", "small");
        await seen.count(1, 60_000, "the small put");
        const revision = await writer.put("/huge/b", bigValue("b", 1_200_000));
        const error = await withTimeout(failed.promise, 60_000, "the watch to give up");
        assert.match(error.message, /"\/huge\/"/);
        assert.match(error.message, new RegExp(`revision ${revision}\\b`));
        assert.equal(seen.items.length, 1, "nothing after the failing revision was delivered");
        // The client still works for everything else.
        assert.equal((await small.get("/huge/a"))?.value, "small");
      } finally {
        await watch.close();
      }
    } finally {
      await small.close();
    }
  });
});

Deno.test("EtcdStore refuses an invalid maxMessageBytes", () => {
  for (const bad of [0, 1.5, 2 ** 31]) {
    assert.throws(
      () => new EtcdStore({ endpoints: ["http://127.0.0.1:2379"], maxMessageBytes: bad }),
      RangeError,
    );
  }
});
