import { assertEquals } from "../testing/assert.ts";
import { MemoryStore } from "../store/memory_store.ts";
import { Layout } from "../layout.ts";
import { SystemClock } from "../time/clock.ts";
import { ErrorRecords, JOB_TAG } from "./error_records.ts";

Deno.test("error records beyond maxPerTask replace the task's oldest, never the host's job record", async () => {
  const store = new MemoryStore();
  try {
    const errors = new ErrorRecords(store, new Layout("/moat"), new SystemClock());
    await errors.set("h/t", JOB_TAG, "the run failed");
    for (let i = 0; i < 8; i++) await errors.set("h/t", `e${i}`, `error ${i}`, { maxPerTask: 5 });
    // Counting an existing tag again replaces nothing.
    await errors.set("h/t", "e7", "again", { maxPerTask: 5 });
    await errors.set("h/other", "e0", "another task", { maxPerTask: 5 });
    const mine = (await errors.list("h/t")).filter((r) => r.loc === "h/t");
    assertEquals(mine.map((r) => r.tag).sort(), ["e3", "e4", "e5", "e6", "e7", "job"]);
    assertEquals(mine.find((r) => r.tag === "e7")?.counter, 2);
    // The replaced records are gone from /status/errors too.
    const { kvs } = await store.range("/moat/status/errors/");
    assertEquals(kvs.filter((kv) => kv.key.endsWith("/loc")).length, 7);
  } finally {
    await store.close();
  }
});
