/**
 * The one contract every `Store` passes. A backend's test file calls
 * `storeContract` with a factory; each case opens a fresh store and closes
 * it (and cleans up behind it) in `finally`.
 *
 * Lease cases run on real time with TTLs of 1 s, so they are bounded but
 * take a second or two each.
 *
 * @module
 */

import assert from "node:assert/strict";
import { Collector, withTimeout } from "../testing/wait.ts";
import {
  type KeyValue,
  RangeTooLargeError,
  type Store,
  StoreCompactedError,
  type TxnOp,
  type WatchEvent,
} from "./store.ts";

/** A store under test, as opened for one contract case. */
export interface ContractSubject {
  /** A fresh, empty store (revision 1). */
  store: Store & {
    /** Forget history up to `revision`; lets the suite test compaction. */
    compact?(revision: number): Promise<void>;
  };
  /** Called after `store.close()`, e.g. to stop a private server. */
  cleanup(): Promise<void>;
}

/** Options of `storeContract`. */
export interface ContractOptions {
  /**
   * Whether Deno's op and resource sanitizers run. A backend whose client
   * library keeps internal handles past `close()` turns them off (and says
   * why where it calls the suite).
   * @default true
   */
  sanitize?: boolean;
}

/** How long any single awaited event may take before the case fails. */
/** Bound of a wait for what must happen: generous, it only catches a hang. */
const EVENT_MS = 30_000;
/** How long a 1-second lease may take to be noticed as gone. */
const EXPIRY_MS = 6_000;

type Case = (store: ContractSubject["store"]) => Promise<void>;

/** A compact picture of one watch batch, for deep equality checks. */
function shape(batch: WatchEvent[]): string[] {
  return batch.map((e) => `${e.type} ${e.kv.key}${e.type === "put" ? `=${e.kv.value}` : ""}`);
}

function revisionsOf(batches: WatchEvent[][]): number[] {
  return batches.map((batch) => {
    const revisions = new Set(batch.map((e) => e.kv.modRevision));
    assert.equal(revisions.size, 1, `one batch mixes revisions ${[...revisions].join(", ")}`);
    return batch[0]!.kv.modRevision;
  });
}

/** Whether `promise` has settled, checked after pending callbacks ran. */
async function settled(promise: Promise<unknown>): Promise<boolean> {
  let done = false;
  void promise.then(() => done = true, () => done = true);
  await new Promise((resolve) => setTimeout(resolve, 0));
  return done;
}

/**
 * Register the `Store` contract as `Deno.test` cases named
 * `"<name> <sentence>"`; `open` gives each case a fresh store.
 */
export function storeContract(
  name: string,
  open: () => Promise<ContractSubject>,
  options: ContractOptions = {},
): void {
  const sanitize = options.sanitize ?? true;
  const test = (sentence: string, body: Case): void => {
    Deno.test({
      name: `${name} ${sentence}`,
      sanitizeOps: sanitize,
      sanitizeResources: sanitize,
      fn: async () => {
        const subject = await open();
        try {
          await body(subject.store);
        } finally {
          await subject.store.close();
          await subject.cleanup();
        }
      },
    });
  };

  test("puts, gets and deletes a key with etcd's metadata", async (store) => {
    assert.equal(await store.get("/k"), undefined);
    const r1 = await store.put("/k", "one");
    assert.equal(r1, 2, "a fresh store is at revision 1, so the first write is 2");
    assert.deepEqual(
      await store.get("/k"),
      {
        key: "/k",
        value: "one",
        createRevision: r1,
        modRevision: r1,
        version: 1,
        lease: "0",
      } satisfies KeyValue,
    );
    const r2 = await store.put("/k", "two");
    assert.ok(r2 > r1);
    const kv = await store.get("/k");
    assert.equal(kv?.value, "two");
    assert.equal(kv?.createRevision, r1);
    assert.equal(kv?.modRevision, r2);
    assert.equal(kv?.version, 2);
    assert.equal(await store.delete("/k"), 1);
    assert.equal(await store.get("/k"), undefined);
    assert.equal(await store.delete("/k"), 0);
    const r3 = await store.put("/k", "three");
    const again = await store.get("/k");
    assert.equal(again?.version, 1, "a re-created key starts over at version 1");
    assert.equal(again?.createRevision, r3);
  });

  test("keeps UTF-8 keys and values intact", async (store) => {
    await store.put("/ü/🏠", "Grüße 🌅\nline two");
    assert.equal((await store.get("/ü/🏠"))?.value, "Grüße 🌅\nline two");
    await store.put("/ü/empty", "");
    assert.equal((await store.get("/ü/empty"))?.value, "");
  });

  test("ranges over a prefix sorted by key", async (store) => {
    for (const key of ["/p/b", "/p/a", "/p/c/x", "/q/a", "/p", "/pa"]) {
      await store.put(key, key.toUpperCase());
    }
    const last = await store.put("/p/\u{1F600}", "emoji");
    await store.put("/p/\uFF01", "fullwidth");
    const result = await store.range("/p/");
    assert.deepEqual(result.kvs.map((kv) => kv.key), [
      "/p/a",
      "/p/b",
      "/p/c/x",
      "/p/\uFF01",
      "/p/\u{1F600}",
    ], "keys sort by UTF-8 bytes, as in etcd");
    assert.equal(result.kvs[0]?.value, "/P/A");
    assert.ok(result.revision > last);
    assert.deepEqual((await store.range("/nothing/")).kvs, []);
  });

  test("reads a range of more than one page whole and at one revision", async (store) => {
    const count = 1_203;
    const key = (i: number) => `/pg/${String(i).padStart(4, "0")}`;
    // In transactions of 100 puts: etcd allows 128 operations per transaction.
    for (let first = 0; first < count; first += 100) {
      const ops: TxnOp[] = [];
      for (let i = first; i < Math.min(count, first + 100); i++) {
        ops.push({ type: "put", key: key(i), value: `v${i}` });
      }
      await store.txn([], ops);
    }
    await store.put("/pg", "outside");
    await store.put("/pgx", "outside");
    const whole = await store.range("/pg/");
    assert.equal(whole.kvs.length, count);
    assert.deepEqual(
      whole.kvs.map((kv) => kv.key),
      Array.from({ length: count }, (_, i) => key(i)),
    );
    assert.ok(whole.kvs.every((kv, i) => kv.value === `v${i}`));
    // Writes while the pages are read must not show: every page is read
    // at the first page's revision.
    let writing = true;
    const writer = (async () => {
      for (let n = 0; writing; n++) {
        await store.put(key(n % 2 === 0 ? 0 : count - 1), `w${n}`);
      }
    })();
    try {
      for (let round = 0; round < 3; round++) {
        const snapshot = await store.range("/pg/");
        assert.equal(snapshot.kvs.length, count);
        for (const kv of snapshot.kvs) {
          assert.ok(
            kv.modRevision <= snapshot.revision,
            `${kv.key} at revision ${kv.modRevision} in a read at ${snapshot.revision}`,
          );
        }
      }
    } finally {
      writing = false;
      await writer;
    }
  });

  test("refuses a range holding more keys than maxKeys, naming the bound", async (store) => {
    for (let i = 0; i < 5; i++) await store.put(`/mk/${i}`, "v");
    await store.put("/mkx", "outside");
    assert.equal((await store.range("/mk/", { maxKeys: 5 })).kvs.length, 5);
    const error = await store.range("/mk/", { maxKeys: 4 }).then(
      () => assert.fail("a range of 5 keys passed maxKeys 4"),
      (e: unknown) => e,
    );
    assert.ok(error instanceof RangeTooLargeError, String(error));
    assert.equal(error.name, "RangeTooLargeError");
    assert.equal(error.limit, "keys");
    assert.equal(error.bound, 4);
    assert.match(error.message, /"\/mk\/".*4 keys/);
    await assert.rejects(store.range("/mk/", { maxKeys: 0 }), RangeTooLargeError);
    assert.deepEqual((await store.range("/none/", { maxKeys: 0 })).kvs, []);
  });

  test("refuses a range holding more UTF-8 bytes than maxBytes, keys and values", async (store) => {
    await store.put("/mb/a", "xx"); // 5 + 2 bytes
    await store.put("/mb/ü", "€"); // 6 + 3 bytes
    await store.put("/mbx", "outside");
    assert.equal((await store.range("/mb/", { maxBytes: 16 })).kvs.length, 2);
    const error = await store.range("/mb/", { maxBytes: 15 }).then(
      () => assert.fail("a range of 16 bytes passed maxBytes 15"),
      (e: unknown) => e,
    );
    assert.ok(error instanceof RangeTooLargeError, String(error));
    assert.equal(error.limit, "bytes");
    assert.equal(error.bound, 15);
    assert.match(error.message, /"\/mb\/".*15 bytes/);
    const both = await store.range("/mb/", { maxKeys: 2, maxBytes: 16 });
    assert.deepEqual(both.kvs.map((kv) => kv.value), ["xx", "€"]);
  });

  test("refuses range bounds that are not whole numbers of at least 0", async (store) => {
    await assert.rejects(store.range("/", { maxKeys: -1 }), RangeError);
    await assert.rejects(store.range("/", { maxBytes: 1.5 }), RangeError);
    await assert.rejects(store.range("/", { maxKeys: Number.NaN }), RangeError);
  });

  test("checks range bounds across pages", async (store) => {
    const ops: TxnOp[] = [];
    for (let i = 0; i < 1_100; i++) {
      ops.push({ type: "put", key: `/bp/${String(i).padStart(4, "0")}`, value: "0123456789" });
      if (ops.length === 100) await store.txn([], ops.splice(0));
    }
    // Each key is 8 + 10 bytes.
    assert.equal(
      (await store.range("/bp/", { maxKeys: 1_100, maxBytes: 19_800 })).kvs.length,
      1_100,
    );
    await assert.rejects(store.range("/bp/", { maxKeys: 1_099 }), RangeTooLargeError);
    const error = await store.range("/bp/", { maxBytes: 19_799 }).then(() => undefined, (e) => e);
    assert.ok(error instanceof RangeTooLargeError && error.limit === "bytes", String(error));
  });

  test("deletes every key under a prefix and nothing else", async (store) => {
    for (const key of ["/d/1", "/d/2", "/d/sub/3", "/dx", "/e/1"]) await store.put(key, "v");
    assert.equal(await store.delete("/d/", { prefix: true }), 3);
    assert.deepEqual((await store.range("/d")).kvs.map((kv) => kv.key), ["/dx"]);
    assert.equal((await store.get("/e/1"))?.value, "v");
    assert.equal(await store.delete("/d/", { prefix: true }), 0);
  });

  test("raises the revision by one per write and not for reads or no-op deletes", async (store) => {
    const revisions: number[] = [];
    for (let i = 0; i < 5; i++) revisions.push(await store.put(`/r/${i}`, String(i)));
    assert.deepEqual(revisions, [2, 3, 4, 5, 6]);
    assert.equal((await store.range("/r/")).revision, 6);
    await store.get("/r/0");
    assert.equal(await store.delete("/r/missing"), 0);
    assert.equal((await store.range("/")).revision, 6);
    assert.equal(await store.put("/r/0", "again"), 7);
  });

  test("creates a lease-bound key only if absent, in a transaction", async (store) => {
    const lease = await store.grantLease(30, { keepAliveEvery: 0 });
    try {
      const claim = () =>
        store.txn(
          [{ key: "/t/running", target: "createRevision", op: "==", value: 0 }],
          [{ type: "put", key: "/t/running", value: "host-a", lease: lease.id }],
          [{ type: "get", key: "/t/running" }],
        );
      const first = await claim();
      assert.equal(first.succeeded, true);
      assert.deepEqual(first.responses, [{ type: "put" }]);
      const kv = await store.get("/t/running");
      assert.equal(kv?.value, "host-a");
      assert.equal(kv?.lease, lease.id);
      assert.equal(kv?.modRevision, first.revision);
      const second = await claim();
      assert.equal(second.succeeded, false);
      assert.equal(second.revision, first.revision, "a read-only branch writes nothing");
      assert.deepEqual(second.responses, [{ type: "get", kvs: [kv!] }]);
    } finally {
      await lease.revoke();
    }
  });

  test("runs the failure branch when a compare does not hold", async (store) => {
    await store.put("/f/a", "1");
    await store.put("/f/a", "2");
    const result = await store.txn(
      [
        { key: "/f/a", target: "value", op: "==", value: "2" },
        { key: "/f/a", target: "version", op: ">", value: 5 },
      ],
      [{ type: "put", key: "/f/ok", value: "yes" }],
      [
        { type: "put", key: "/f/failed", value: "yes" },
        { type: "delete", key: "/f/a" },
        { type: "get", key: "/f/", prefix: true },
      ],
    );
    assert.equal(result.succeeded, false);
    assert.equal(await store.get("/f/ok"), undefined);
    assert.equal(result.responses.length, 3);
    assert.deepEqual(result.responses[0], { type: "put" });
    assert.deepEqual(result.responses[1], { type: "delete", deleted: 1 });
    const get = result.responses[2];
    assert.equal(get?.type, "get");
    assert.deepEqual(
      get.type === "get" ? get.kvs.map((kv) => kv.key) : [],
      ["/f/failed"],
      "reads inside a transaction see its earlier writes",
    );
    assert.equal((await store.get("/f/failed"))?.modRevision, result.revision);
  });

  test("compares a missing key as version 0 and never equal on value", async (store) => {
    const check = async (compare: Parameters<Store["txn"]>[0][number]) =>
      (await store.txn([compare], [])).succeeded;
    assert.equal(await check({ key: "/m", target: "version", op: "==", value: 0 }), true);
    assert.equal(await check({ key: "/m", target: "modRevision", op: "==", value: 0 }), true);
    assert.equal(await check({ key: "/m", target: "createRevision", op: "<", value: 1 }), true);
    assert.equal(await check({ key: "/m", target: "value", op: "==", value: "" }), false);
    assert.equal(await check({ key: "/m", target: "value", op: "!=", value: "x" }), false);
    const revision = await store.put("/m", "b");
    assert.equal(await check({ key: "/m", target: "value", op: ">", value: "a" }), true);
    assert.equal(await check({ key: "/m", target: "value", op: "<", value: "a" }), false);
    assert.equal(await check({ key: "/m", target: "value", op: "!=", value: "x" }), true);
    assert.equal(
      await check({ key: "/m", target: "modRevision", op: "==", value: revision }),
      true,
    );
    assert.equal(await check({ key: "/m", target: "version", op: "!=", value: 1 }), false);
  });

  test("delivers watch events in order, one batch per revision", async (store) => {
    const seen = new Collector<WatchEvent[]>();
    const watch = await store.watch("/w/", seen.push);
    try {
      await store.put("/w/a", "1");
      await store.put("/elsewhere", "x");
      await store.txn([], [
        { type: "put", key: "/w/b", value: "2" },
        { type: "put", key: "/w/c", value: "3" },
        { type: "put", key: "/other", value: "4" },
      ]);
      await store.delete("/w/a");
      await store.put("/w/b", "5");
      const batches = await seen.count(4, EVENT_MS, "four watch batches");
      assert.deepEqual(batches.map(shape), [
        ["put /w/a=1"],
        ["put /w/b=2", "put /w/c=3"],
        ["delete /w/a"],
        ["put /w/b=5"],
      ]);
      const revisions = revisionsOf(batches);
      assert.deepEqual(revisions, [...revisions].sort((a, b) => a - b));
      assert.equal(new Set(revisions).size, revisions.length);
    } finally {
      await watch.close();
    }
  });

  test("replays history when a watch starts at an earlier revision", async (store) => {
    const r1 = await store.put("/h/a", "1");
    await store.put("/h/b", "2");
    await store.delete("/h/a");
    const seen = new Collector<WatchEvent[]>();
    const watch = await store.watch("/h/", seen.push, { startRevision: r1 });
    try {
      await store.put("/h/c", "3");
      const batches = await seen.count(4, EVENT_MS, "three replayed and one new batch");
      assert.deepEqual(batches.map(shape), [
        ["put /h/a=1"],
        ["put /h/b=2"],
        ["delete /h/a"],
        ["put /h/c=3"],
      ]);
      assert.equal(batches[0]![0]!.kv.modRevision, r1);
    } finally {
      await watch.close();
    }
  });

  test("starts a watch without a start revision at the next change only", async (store) => {
    await store.put("/n/old", "1");
    const seen = new Collector<WatchEvent[]>();
    const watch = await store.watch("/n/", seen.push);
    try {
      await store.put("/n/new", "2");
      const batches = await seen.count(1, EVENT_MS, "the new put");
      assert.deepEqual(batches.map(shape), [["put /n/new=2"]]);
    } finally {
      await watch.close();
    }
  });

  test("stops delivering events once a watch is closed", async (store) => {
    const closed = new Collector<WatchEvent[]>();
    const watch = await store.watch("/c/", closed.push);
    await store.put("/c/a", "1");
    await closed.count(1, EVENT_MS, "the first event");
    await watch.close();
    await watch.close();
    // A second watch acts as a fence: once it has seen both later puts, the
    // closed watch would have seen them too if it still delivered.
    const fence = new Collector<WatchEvent[]>();
    const open = await store.watch("/c/", fence.push);
    try {
      await store.put("/c/b", "2");
      await store.put("/c/c", "3");
      await fence.count(2, EVENT_MS, "both puts on the open watch");
      assert.deepEqual(closed.items.map(shape), [["put /c/a=1"]]);
    } finally {
      await open.close();
    }
  });

  test("gives the previous value with deletes and overwrites", async (store) => {
    const seen = new Collector<WatchEvent[]>();
    const watch = await store.watch("/pv/", seen.push);
    try {
      const r1 = await store.put("/pv/k", "v1");
      await store.put("/pv/k", "v2");
      const rd = await store.delete("/pv/k").then(() => store.range("/pv/"));
      const events = (await seen.count(3, EVENT_MS, "put, overwrite and delete")).flat();
      assert.equal(events[0]?.prevKv, undefined);
      assert.equal(events[1]?.prevKv?.value, "v1");
      const deletion = events[2]!;
      assert.equal(deletion.type, "delete");
      assert.equal(deletion.kv.key, "/pv/k");
      assert.equal(deletion.kv.value, "");
      assert.equal(deletion.kv.modRevision, rd.revision);
      assert.equal(deletion.prevKv?.value, "v2");
      assert.equal(deletion.prevKv?.createRevision, r1);
      assert.equal(deletion.prevKv?.version, 2);
    } finally {
      await watch.close();
    }
  });

  test("fails a watch whose start revision was compacted", async (store) => {
    assert.ok(store.compact, "the store under test exposes compact()");
    const r1 = await store.put("/x/a", "1");
    const r2 = await store.put("/x/a", "2");
    await store.put("/x/a", "3");
    await store.compact(r2);
    const failed = Promise.withResolvers<Error>();
    const seen = new Collector<WatchEvent[]>();
    const watch = await store.watch("/x/", seen.push, {
      startRevision: r1,
      onError: failed.resolve,
    });
    try {
      const error = await withTimeout(failed.promise, EVENT_MS, "the compaction error");
      assert.ok(error instanceof StoreCompactedError, `got ${error.name}: ${error.message}`);
      assert.deepEqual(seen.items, []);
    } finally {
      await watch.close();
    }
  });

  test("rejects a put bound to a lease that does not exist", async (store) => {
    await assert.rejects(store.put("/l/k", "v", { lease: "123456789" }));
    assert.equal(await store.get("/l/k"), undefined);
  });

  test("rejects lease TTLs that are not whole seconds of at least 1", async (store) => {
    await assert.rejects(store.grantLease(0), RangeError);
    await assert.rejects(store.grantLease(1.5), RangeError);
  });

  test("deletes a lease's keys, with delete events, when it is revoked", async (store) => {
    const lease = await store.grantLease(30);
    assert.match(lease.id, /^[1-9][0-9]*$/);
    assert.equal(lease.ttl, 30);
    await store.put("/lr/a", "1", { lease: lease.id });
    await store.put("/lr/b", "2", { lease: lease.id });
    await store.put("/lr/keep", "3");
    const seen = new Collector<WatchEvent[]>();
    const watch = await store.watch("/lr/", seen.push);
    try {
      await lease.revoke();
      await lease.revoke();
      const events = (await seen.until(
        (batches) => batches.flat().length >= 2,
        EVENT_MS,
        "two delete events",
      )).flat();
      assert.deepEqual(events.map((e) => `${e.type} ${e.kv.key}`).sort(), [
        "delete /lr/a",
        "delete /lr/b",
      ]);
      assert.deepEqual((await store.range("/lr/")).kvs.map((kv) => kv.key), ["/lr/keep"]);
      assert.equal(await settled(lease.lost), false, "our own revoke does not resolve lost");
      await assert.rejects(lease.keepAliveOnce());
    } finally {
      await watch.close();
    }
  });

  test("expires a lease without keep-alives, resolving lost and deleting its keys", async (store) => {
    const lease = await store.grantLease(1, { keepAliveEvery: 0 });
    await store.put("/le/k", "v", { lease: lease.id });
    const seen = new Collector<WatchEvent[]>();
    const watch = await store.watch("/le/", seen.push);
    try {
      const started = Date.now();
      const reason = await withTimeout(lease.lost, EXPIRY_MS, "the lease to be lost");
      assert.ok(reason instanceof Error);
      assert.ok(Date.now() - started >= 500, "not lost long before its TTL");
      const events = (await seen.count(1, EXPIRY_MS, "the expiry's delete event")).flat();
      assert.deepEqual(events.map((e) => `${e.type} ${e.kv.key}`), ["delete /le/k"]);
      assert.equal(await store.get("/le/k"), undefined);
    } finally {
      await watch.close();
      await lease.revoke();
    }
  });

  test("keeps a lease's keys alive past the TTL with keep-alives", async (store) => {
    const kept = await store.grantLease(1);
    const canary = await store.grantLease(1, { keepAliveEvery: 0 });
    const gone = new Collector<WatchEvent[]>();
    const watch = await store.watch("/lk/", gone.push);
    try {
      await store.put("/lk/kept", "v", { lease: kept.id });
      await store.put("/lk/canary", "v", { lease: canary.id });
      // The canary, granted with the same TTL but never refreshed, marks the
      // moment the kept lease would have expired without its keep-alives.
      await withTimeout(canary.lost, EXPIRY_MS, "the canary lease to expire");
      await gone.until(
        (batches) => batches.flat().some((e) => e.type === "delete"),
        EXPIRY_MS,
        "the canary key's deletion",
      );
      const alive = await store.get("/lk/kept");
      assert.equal(alive?.value, "v");
      assert.equal(await settled(kept.lost), false);
      const deletes = gone.items.flat().filter((e) => e.type === "delete");
      assert.deepEqual(deletes.map((e) => e.kv.key), ["/lk/canary"]);
      await kept.keepAliveOnce();
    } finally {
      await watch.close();
      await kept.revoke();
      await canary.revoke();
    }
  });

  test("can be closed twice, and closes its watches and leases", async (store) => {
    const watch = await store.watch("/z/", () => {});
    await store.grantLease(5);
    await store.close();
    await store.close();
    await watch.close();
  });
}
