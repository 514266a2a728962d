import { assert, assertEquals } from "../../tests/_util/assert.ts";
import { fullCollection, type HeapUsage, MemoryReducer } from "./memory_reducer.ts";

const MiB = 1024 * 1024;

/** A reducer over a pretend heap: `collect` shrinks it to `live`. */
function pretend(start: HeapUsage) {
  const heap = { ...start };
  let live = start.heapUsed;
  let collections = 0;
  const reducer = new MemoryReducer({
    usage: () => ({ ...heap }),
    collect: () => {
      collections++;
      heap.heapUsed = live;
      heap.heapTotal = live + 4 * MiB;
    },
  });
  return {
    reducer,
    heap,
    setLive: (n: number) => live = n,
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
  assertEquals(c?.before, { heapTotal: 150 * MiB, heapUsed: 120 * MiB });
  assertEquals(c?.after, { heapTotal: 42 * MiB, heapUsed: 38 * MiB });
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
