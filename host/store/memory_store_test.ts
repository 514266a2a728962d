import assert from "node:assert/strict";
import { withTimeout } from "../testing/wait.ts";
import type { Clock } from "../time/clock.ts";
import { MemoryStore } from "./memory_store.ts";
import { storeContract } from "./store_contract.ts";
import { StoreCompactedError } from "./store.ts";

storeContract(
  "MemoryStore",
  () => Promise.resolve({ store: new MemoryStore(), cleanup: () => Promise.resolve() }),
);

/** A clock that moves only when the test says so. */
class ManualClock implements Clock {
  #now = 1_000_000;
  #sleepers: { at: number; resolve: () => void }[] = [];

  now(): number {
    return this.#now;
  }

  sleepUntil(atMs: number, signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (atMs <= this.#now) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const sleeper = { at: atMs, resolve };
      this.#sleepers.push(sleeper);
      signal?.addEventListener("abort", () => {
        this.#sleepers = this.#sleepers.filter((s) => s !== sleeper);
        reject(signal.reason);
      }, { once: true });
    });
  }

  /** Move time forward and let the woken sleepers run. */
  async advance(ms: number): Promise<void> {
    this.#now += ms;
    const due = this.#sleepers.filter((s) => s.at <= this.#now);
    this.#sleepers = this.#sleepers.filter((s) => s.at > this.#now);
    for (const sleeper of due) sleeper.resolve();
    await new Promise((resolve) => setTimeout(resolve, 0));
  }
}

Deno.test("MemoryStore expires leases on its injected clock, not on real time", async () => {
  const clock = new ManualClock();
  const store = new MemoryStore({ clock });
  try {
    const idle = await store.grantLease(10, { keepAliveEvery: 0 });
    const kept = await store.grantLease(10);
    await store.put("/idle", "v", { lease: idle.id });
    await store.put("/kept", "v", { lease: kept.id });
    for (let i = 0; i < 9; i++) await clock.advance(1_000);
    assert.equal((await store.get("/idle"))?.value, "v", "alive 9 s into a 10 s TTL");
    await clock.advance(1_000);
    await withTimeout(idle.lost, 60_000, "the idle lease to be lost");
    assert.equal(await store.get("/idle"), undefined);
    for (let i = 0; i < 60; i++) await clock.advance(1_000);
    assert.equal((await store.get("/kept"))?.value, "v", "kept alive for a minute");
    await kept.revoke();
  } finally {
    await store.close();
  }
});

Deno.test("MemoryStore extends a lease by one TTL on keepAliveOnce", async () => {
  const clock = new ManualClock();
  const store = new MemoryStore({ clock });
  try {
    const lease = await store.grantLease(5, { keepAliveEvery: 0 });
    await store.put("/k", "v", { lease: lease.id });
    await clock.advance(4_000);
    await lease.keepAliveOnce();
    await clock.advance(4_000);
    assert.equal((await store.get("/k"))?.value, "v");
    await clock.advance(1_000);
    await withTimeout(lease.lost, 60_000, "the lease to be lost");
    assert.equal(await store.get("/k"), undefined);
  } finally {
    await store.close();
  }
});

Deno.test("MemoryStore fails watches older than its bounded history", async () => {
  const store = new MemoryStore({ historySize: 3 });
  try {
    const first = await store.put("/a", "1");
    for (let i = 2; i <= 5; i++) await store.put("/a", String(i));
    const failed = Promise.withResolvers<Error>();
    const watch = await store.watch("/", () => {}, {
      startRevision: first,
      onError: failed.resolve,
    });
    const error = await withTimeout(failed.promise, 60_000, "the compaction error");
    assert.ok(error instanceof StoreCompactedError);
    await watch.close();
    const events: string[] = [];
    const recent = await store.watch("/", (batch) => events.push(...batch.map((e) => e.kv.value)), {
      startRevision: first + 2,
    });
    await store.put("/a", "6");
    await new Promise((resolve) => setTimeout(resolve, 0));
    assert.deepEqual(events, ["3", "4", "5", "6"]);
    await recent.close();
  } finally {
    await store.close();
  }
});

Deno.test("MemoryStore rejects a transaction that puts one key twice and changes nothing", async () => {
  const store = new MemoryStore();
  try {
    await assert.rejects(
      store.txn([], [
        { type: "put", key: "/t", value: "1" },
        { type: "put", key: "/t", value: "2" },
      ]),
      TypeError,
    );
    assert.equal((await store.range("/")).revision, 1);
  } finally {
    await store.close();
  }
});
