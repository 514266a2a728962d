import assert from "node:assert/strict";
import { MemoryStore } from "../store/memory_store.ts";
import { Layout } from "../layout.ts";
import { RpcNames, RpcNameTakenError } from "./rpc_names.ts";

const layout = new Layout("/moat");

async function withNames(fn: (names: RpcNames, store: MemoryStore) => Promise<void>) {
  const store = new MemoryStore();
  try {
    await fn(new RpcNames(store, layout), store);
  } finally {
    await store.close();
  }
}

Deno.test("RpcNames writes the owner and a lease-bound holder key per serving run", async () => {
  await withNames(async (names, store) => {
    const lease = await store.grantLease(30, { keepAliveEvery: 0 });
    await names.claim("lamp.set", "lamps", "h1/porch", lease.id);
    assert.equal((await store.get("/moat/status/rpc/lamp.set/owner"))?.value, "lamps");
    const holder = await store.get("/moat/status/rpc/lamp.set/task/h1/porch");
    assert.equal(holder?.value, "lamps");
    assert.equal(holder?.lease, lease.id);
    assert.deepEqual(await names.holders("lamp.set"), new Map([["h1/porch", "lamps"]]));
    await lease.revoke();
    assert.deepEqual(await names.holders("lamp.set"), new Map());
  });
});

Deno.test("RpcNames lets tasks of one script share a name and refuses another script", async () => {
  await withNames(async (names, store) => {
    const [a, b, c] = await Promise.all([1, 2, 3].map(() => store.grantLease(30)));
    await names.claim("x", "one", "h1/a", a!.id);
    await names.claim("x", "one", "h2/b", b!.id);
    const e = await names.claim("x", "two", "h1/c", c!.id).catch((e) => e);
    assert.ok(e instanceof RpcNameTakenError, String(e));
    assert.equal(e.owner, "one");
    assert.match(e.message, /^RPC name "x" is served by script "one"/);
    // Once every run of "one" is gone, "two" may take it.
    await names.release("x", "h1/a");
    assert.ok(await names.claim("x", "two", "h1/c", c!.id).catch((e) => e) instanceof Error);
    await b!.revoke(); // its host died: the holder key goes with the lease
    await names.claim("x", "two", "h1/c", c!.id);
    assert.equal((await store.get("/moat/status/rpc/x/owner"))?.value, "two");
    for (const l of [a, c]) await l!.revoke();
  });
});

Deno.test("RpcNames lets exactly one of many concurrent claims by different scripts win", async () => {
  await withNames(async (names, store) => {
    const lease = await store.grantLease(30);
    const outcomes = await Promise.allSettled(
      Array.from({ length: 20 }, (_, i) => names.claim("race", `s${i}`, `h/t${i}`, lease.id)),
    );
    const won = outcomes.filter((o) => o.status === "fulfilled");
    assert.equal(won.length, 1, JSON.stringify(outcomes.map((o) => o.status)));
    for (const o of outcomes) {
      if (o.status === "rejected") {
        assert.ok(o.reason instanceof RpcNameTakenError, String(o.reason));
      }
    }
    assert.equal((await names.holders("race")).size, 1);
    await lease.revoke();
  });
});

Deno.test("RpcNames removes the owner key with the last holder, and not before", async () => {
  await withNames(async (names, store) => {
    const lease = await store.grantLease(30);
    await names.claim("y", "one", "h/a", lease.id);
    await names.claim("y", "one", "h/b", lease.id);
    await names.release("y", "h/a");
    assert.equal((await store.get("/moat/status/rpc/y/owner"))?.value, "one");
    await names.release("y", "h/b");
    assert.equal(await store.get("/moat/status/rpc/y/owner"), undefined);
    assert.deepEqual((await store.range("/moat/status/rpc/")).kvs, []);
    await names.release("y", "h/b"); // nothing held: fine
    await lease.revoke();
  });
});

Deno.test("RpcNames keeps names apart that share a prefix", async () => {
  await withNames(async (names, store) => {
    const lease = await store.grantLease(30);
    await names.claim("a", "one", "h/a", lease.id);
    await names.claim("a.b", "two", "h/b", lease.id);
    await names.claim("ab", "three", "h/c", lease.id);
    assert.deepEqual(await names.holders("a"), new Map([["h/a", "one"]]));
    await lease.revoke();
  });
});
