import { assert, assertEquals } from "../testing/assert.ts";
import { fullCollection, type HeapUsage, mallocTrim, MemoryReducer } from "./memory_reducer.ts";

const MiB = 1024 * 1024;

/**
 * A reducer over a pretend process: RSS is the heap held plus `native`;
 * `collect` shrinks the heap to `live` and native memory to `nativeLive`.
 */
function pretend(start: Omit<HeapUsage, "rss">) {
  const heap = { ...start, native: 80 * MiB };
  let live = start.heapUsed;
  let nativeLive = heap.native;
  let collections = 0;
  const reducer = new MemoryReducer({
    usage: () => ({
      heapTotal: heap.heapTotal,
      heapUsed: heap.heapUsed,
      rss: heap.heapTotal + heap.native,
    }),
    collect: () => {
      collections++;
      heap.heapUsed = live;
      heap.heapTotal = live + 4 * MiB;
      heap.native = nativeLive;
    },
  });
  return {
    reducer,
    heap,
    setLive: (n: number) => live = n,
    setNativeLive: (n: number) => nativeLive = n,
    get collections() {
      return collections;
    },
  };
}

Deno.test("the memory reducer waits for one whole quiet interval before it collects", () => {
  const p = pretend({ heapTotal: 150 * MiB, heapUsed: 120 * MiB });
  p.setLive(38 * MiB);
  // Busy from the start: the first look only notes that it was busy.
  assertEquals(p.reducer.check(), undefined);
  p.reducer.activity();
  assertEquals(p.reducer.check(), undefined);
  assertEquals(p.collections, 0);
  const c = p.reducer.check();
  assertEquals(p.collections, 1);
  assertEquals(c?.before, { heapTotal: 150 * MiB, heapUsed: 120 * MiB, rss: 230 * MiB });
  assertEquals(c?.after, { heapTotal: 42 * MiB, heapUsed: 38 * MiB, rss: 122 * MiB });
});

Deno.test("the memory reducer collects again only when the heap has grown well beyond its last size", () => {
  const p = pretend({ heapTotal: 60 * MiB, heapUsed: 50 * MiB });
  p.setLive(36 * MiB);
  p.reducer.check();
  p.reducer.check();
  assertEquals(p.collections, 1); // heap held: 40 MiB after it
  // Quiet and grown by less than 16 MiB: nothing to give back.
  p.heap.heapTotal = 55 * MiB;
  assertEquals(p.reducer.check(), undefined);
  assertEquals(p.collections, 1);
  // Grown, but a task started in this interval: wait for quiet.
  p.heap.heapTotal = 120 * MiB;
  p.reducer.activity();
  assertEquals(p.reducer.check(), undefined);
  assertEquals(p.collections, 1);
  // Quiet and grown by more than 16 MiB and 25%: collect.
  assert(p.reducer.check() !== undefined);
  assertEquals(p.collections, 2);
});

Deno.test("the memory reducer uses a quarter of a large heap as the growth that counts", () => {
  const p = pretend({ heapTotal: 500 * MiB, heapUsed: 400 * MiB });
  p.setLive(396 * MiB);
  p.reducer.check();
  p.reducer.check(); // held: 400 MiB
  p.heap.heapTotal = 480 * MiB; // +80 MiB: over 16 MiB, under 25%
  assertEquals(p.reducer.check(), undefined);
  p.heap.heapTotal = 520 * MiB; // +120 MiB: over 25%
  assert(p.reducer.check() !== undefined);
});

Deno.test("the memory reducer also collects when native memory grew while the heap did not", () => {
  const p = pretend({ heapTotal: 60 * MiB, heapUsed: 50 * MiB });
  p.setLive(36 * MiB);
  p.reducer.check();
  p.reducer.check(); // held 40 MiB, RSS 120 MiB after it
  assertEquals(p.collections, 1);
  p.heap.native = 90 * MiB; // RSS 130 MiB: +10 MiB, under 16 MiB
  assertEquals(p.reducer.check(), undefined);
  p.heap.native = 130 * MiB; // RSS 170 MiB: +50 MiB and over 25%
  p.setNativeLive(82 * MiB);
  const c = p.reducer.check();
  assertEquals(p.collections, 2);
  assertEquals([c?.before.rss, c?.after.rss], [170 * MiB, 122 * MiB]);
});

Deno.test("a memory reducer without a collection does nothing, and close() is safe twice", () => {
  const r = new MemoryReducer({ collect: undefined });
  assertEquals(r.enabled, false);
  r.start();
  assertEquals(r.check(), undefined);
  assertEquals(r.check(), undefined);
  r.close();
  r.close();
  const p = pretend({ heapTotal: 100 * MiB, heapUsed: 90 * MiB });
  p.reducer.close();
  p.reducer.check();
  assertEquals(p.reducer.check(), undefined);
  assertEquals(p.collections, 0);
});

Deno.test("fullCollection gives back the memory of dropped objects in this runtime", () => {
  const gc = fullCollection();
  assert(gc !== undefined, "Deno offers no full garbage collection");
  // About 64 MiB held, then dropped.
  let held: number[][] | undefined = Array.from({ length: 64 }, () => new Array(131072).fill(1.5));
  const before = Deno.memoryUsage().heapUsed;
  assert(held.length === 64);
  held = undefined;
  gc();
  const after = Deno.memoryUsage().heapUsed;
  assert(
    after < before - 48 * MiB,
    `heap used went from ${before} to ${after} bytes after dropping ~64 MiB`,
  );
});

Deno.test("mallocTrim reaches glibc's malloc_trim on this system", () => {
  const trim = mallocTrim();
  assert(trim !== undefined, "no glibc malloc_trim (libc.so.6) here");
  trim();
  trim();
});
