import { assertEquals } from "../testing/assert.ts";
import { MemoryStore } from "../store/memory_store.ts";
import { inTree, Layout } from "../layout.ts";
import { forgetTask, readStatus, shownState } from "./status.ts";

const m = (o: Record<string, string>) => new Map(Object.entries(o));

Deno.test("a task with a running key shows run and who runs it", () => {
  const r = shownState("h/a", m({ running: '{"host":"h","pid":7,"id":"x"}', started: "100" }));
  assertEquals([r.state, r.since, r.runner], ["run", 100, "h pid 7"]);
});

Deno.test("a task that ended shows its state and message since it stopped", () => {
  const r = shownState(
    "h/a",
    m({ started: "100", stopped: "105", state: "error", message: "boom" }),
  );
  assertEquals([r.state, r.since, r.message], ["error", 105, "boom"]);
});

Deno.test("a task started but neither running nor stopped shows crash", () => {
  assertEquals(shownState("h/a", m({ started: "100" })).state, "crash");
  assertEquals(
    shownState("h/a", m({ started: "200", stopped: "105", state: "ok" })).state,
    "crash",
  );
});

Deno.test("a task that never ran shows new", () => {
  assertEquals(shownState("h/a", m({})).state, "new");
});

Deno.test("inTree takes a path prefix as a tree path", () => {
  assertEquals(inTree("h1/porch", "h1/porch"), true);
  assertEquals(inTree("h1/porch/light", "h1/porch"), true);
  assertEquals(inTree("h1/porch/light", "h1/porch/"), true);
  assertEquals(inTree("h1/porchsvc", "h1/porch"), false);
  assertEquals(inTree("h1", "h1/porch"), false);
  assertEquals(inTree("anything", ""), true);
});

Deno.test("readStatus lists the tree below a path and marks status without a task", async () => {
  const store = new MemoryStore();
  const layout = new Layout();
  try {
    await store.put(layout.taskDir("h/porch") + "taskdef", "task/script");
    await store.put(layout.taskDir("h/porchsvc") + "taskdef", "task/script");
    await store.put(layout.statusDir("h/porch/old") + "started", "100");
    const rows = await readStatus(store, layout, "h/porch");
    assertEquals(rows.map((r) => [r.path, r.gone]), [["h/porch", undefined], [
      "h/porch/old",
      true,
    ]]);
  } finally {
    await store.close();
  }
});

Deno.test("forgetTask removes the status and error records of a deleted task only", async () => {
  const store = new MemoryStore();
  const layout = new Layout();
  const rec = (tag: string, id: string, loc: string) =>
    store.put(`${layout.errorsPrefix}${tag}/${id}/loc`, loc);
  try {
    await store.put(layout.statusDir("h/a") + "state", "ok");
    await store.put(layout.errorPointer("h/a", "owch"), "r1");
    await rec("owch", "r1", "h/a");
    await rec("job", "r2", "h/a"); // no pointer: found by its loc
    await rec("owch", "r3", "h/ab");
    await store.put(layout.statusDir("h/ab") + "state", "ok");
    // A task that exists keeps everything.
    await store.put(layout.taskDir("h/a") + "taskdef", "task/script");
    assertEquals(await forgetTask(store, layout, "h/a"), false);
    assertEquals((await store.range(layout.statusDir("h/a"))).kvs.length, 2);
    await store.delete(layout.taskDir("h/a"), { prefix: true });
    assertEquals(await forgetTask(store, layout, "h/a"), true);
    assertEquals((await store.range(layout.statusDir("h/a"))).kvs.length, 0);
    const left = (await store.range(layout.errorsPrefix)).kvs.map((kv) => kv.key);
    assertEquals(left, [`${layout.errorsPrefix}owch/r3/loc`]);
    assertEquals((await store.range(layout.statusDir("h/ab"))).kvs.length, 1);
    assertEquals(await forgetTask(store, layout, "h/a"), false);
  } finally {
    await store.close();
  }
});
