import assert from "node:assert/strict";
import { MemoryStore } from "../store/memory_store.ts";
import { WatchHub } from "../store/watch_hub.ts";
import { Layout } from "../layout.ts";
import { CountingStore } from "../testing/counting_store.ts";
import type { DataEvent, ScriptEvent, TreeEvent } from "../../sandbox/protocol.ts";
import { DEFAULT_QUOTAS } from "./quotas.ts";
import { ScriptView } from "./script_view.ts";
import { CapabilityError } from "./capability_error.ts";

const TASK = "h/t";
const SCRIPT = "s";
const TOKEN = "the-run";

/** A view of task h/t running script s, on a counting MemoryStore, with its data events. */
async function setup(quotas = DEFAULT_QUOTAS) {
  const layout = new Layout();
  const store = new CountingStore(new MemoryStore());
  const task = layout.taskDir(TASK);
  const script = layout.scriptDir(SCRIPT);
  await store.put(script + "types/level", "int");
  await store.put(script + "values/level", "1");
  await store.put(script + "values/name", "porch");
  await store.put(task + "data/level", "2");
  await store.put(layout.statusKey(TASK, "running"), TOKEN);
  const hub = new WatchHub(store, layout.root + "/");
  await hub.start();
  const view = new ScriptView({ store, layout, hub }, {
    task: TASK,
    script: SCRIPT,
    token: TOKEN,
    quotas,
  });
  const initial = await view.open();
  const data: DataEvent[] = [];
  const waiters: (() => void)[] = [];
  view.attach((e: ScriptEvent) => {
    if (e.event !== "data") return;
    data.push(e.data);
    for (const w of waiters.splice(0)) w();
  });
  /** The next data event for which `ok` holds (bounded: fails loudly). */
  const nextData = async (ok: (d: DataEvent) => boolean): Promise<DataEvent> => {
    const deadline = Date.now() + 5000;
    for (;;) {
      const found = data.find(ok);
      if (found) return found;
      if (Date.now() > deadline) throw new Error("no such data event within 5 s");
      await new Promise<void>((r) => {
        waiters.push(r);
        setTimeout(r, 100);
      });
    }
  };
  return {
    store,
    layout,
    view,
    initial,
    nextData,
    async close() {
      view.close();
      await hub.close();
      await store.close();
    },
  };
}

Deno.test("a moat.data.set is one store transaction, and its watch echo reads nothing", async () => {
  const t = await setup();
  try {
    assert.deepEqual(t.initial.values.level, { value: 2, type: "int" });
    t.store.reset();
    await t.view.dataSet("level", 7);
    assert.deepEqual(t.store.counts(), { txn: 1 }, "the write");
    const echoed = await t.nextData((d) => d.values.level?.value === 7);
    assert.deepEqual(echoed.values.name, { value: "porch", type: null });
    assert.deepEqual(t.store.counts(), { txn: 1 }, "the write and its data event");
  } finally {
    await t.close();
  }
});

Deno.test("the data quotas count the task's data from the mirror, own writes included", async () => {
  // data/level = "2" holds 5 + 1 bytes; "name" 4 + its text (a string is stored as itself).
  const t = await setup({ ...DEFAULT_QUOTAS, dataSize: 18, dataKeys: 2 });
  try {
    await t.view.dataSet("name", "abcdefgh"); // 6 + 4 + 8 = 18 bytes: just fits
    // Not waiting for the echo: the next write must see this one.
    const over = await t.view.dataSet("name", "abcdefghi").then(() => undefined, (e) => e);
    assert.ok(over instanceof CapabilityError, `refused: ${over}`);
    assert.equal(over.code, "quota");
    assert.match(over.message, /would hold 19 bytes/);
    // A change from elsewhere (moat script param) counts too, once it arrives.
    await t.store.delete(t.layout.taskDir(TASK) + "data/level");
    await t.nextData((d) => d.values.level?.value === 1);
    await t.view.dataSet("name", "abcdefghijklmn");
  } finally {
    await t.close();
  }
});

Deno.test("a write after the run lost the task is refused, and nothing is written", async () => {
  const t = await setup();
  try {
    await t.store.put(t.layout.statusKey(TASK, "running"), "another run");
    const e = await t.view.dataSet("level", 9).then(() => undefined, (e) => e);
    assert.ok(e instanceof CapabilityError);
    assert.equal(e.code, "not_running");
    assert.equal((await t.store.get(t.layout.taskDir(TASK) + "data/level"))?.value, "2");
  } finally {
    await t.close();
  }
});

Deno.test("a secret is the task's own: in its moat.data, in no tree view, written apart", async () => {
  const layout = new Layout();
  const store = new MemoryStore();
  const task = layout.taskDir(TASK);
  const other = layout.taskDir("h/other");
  const script = layout.scriptDir(SCRIPT);
  await store.put(script + "types/pin", "secret");
  await store.put(script + "values/pin", "default-in-code");
  await store.put(task + "secret/pin", "own-secret");
  await store.put(task + "data/room", "porch");
  await store.put(other + "secret/pin", "other-secret");
  await store.put(other + "data/room", "hall");
  await store.put(layout.statusKey(TASK, "running"), TOKEN);
  const hub = new WatchHub(store, layout.root + "/");
  await hub.start();
  const view = new ScriptView({ store, layout, hub }, { task: TASK, script: SCRIPT, token: TOKEN });
  try {
    const initial = await view.open();
    // Its own secret, not the default in code.
    assert.deepEqual(initial.values.pin, { value: "own-secret", type: "secret" });
    for (const path of ["task", "task/h", "task/h/other/:task", "task/h/t/:task"]) {
      const node = await view.lookup(path);
      const shown = JSON.stringify(node);
      assert.ok(shown.includes('"porch"') || shown.includes('"hall"'), shown);
      assert.ok(!shown.includes("secret/"), `${path}: ${shown}`);
    }
    assert.equal(await view.lookup("task/h/other/:task/secret/pin"), null);
    assert.equal(await view.lookup("task/h/t/:task/secret"), null);
    await view.dataSet("pin", "new-secret");
    assert.equal((await store.get(task + "secret/pin"))?.value, "new-secret");
    assert.equal(await store.get(task + "data/pin"), undefined);
    await assert.rejects(
      view.dataSet("pin", 1234),
      (e) => (e as CapabilityError).code === "bad_type",
    );
    // Masking covers the value it had and the one it has.
    assert.deepEqual(view.secretValues().sort(), ["new-secret", "own-secret"]);
  } finally {
    view.close();
    await hub.close();
    await store.close();
  }
});

Deno.test("tree events carry only the watched paths' changes, one event per revision, in order", async () => {
  const t = await setup();
  const root = t.layout.root + "/";
  const tree: TreeEvent[] = [];
  const waiters: (() => void)[] = [];
  t.view.attach((e: ScriptEvent) => {
    if (e.event !== "tree") return;
    tree.push(e.data);
    for (const w of waiters.splice(0)) w();
  });
  const treeCount = async (n: number) => {
    const deadline = Date.now() + 5000;
    while (tree.length < n) {
      if (Date.now() > deadline) throw new Error(`fewer than ${n} tree events within 5 s`);
      await new Promise<void>((r) => {
        waiters.push(r);
        setTimeout(r, 100);
      });
    }
    return tree;
  };
  try {
    await t.store.put(root + "config/script/hidden", "x/a/hidden");
    t.view.watch("x/a");
    t.view.watch("y");
    // Not watched: a sibling whose name starts alike, another branch.
    await t.store.put(root + "x/ab", "1");
    await t.store.put(root + "x/b", "2");
    const one = await t.store.txn([], [
      { type: "put", key: root + "x/a/1", value: "3" },
      { type: "put", key: root + "x/b/2", value: "4" },
      { type: "put", key: root + "y", value: "5" },
      { type: "delete", key: root + "x/ab" },
    ]);
    await t.store.put(root + "x/a/hidden/k", "6");
    await t.store.put(root + "x/a", "7");
    const two = await t.store.put(root + "y/z", "8");
    await treeCount(3);
    // Bounded wait for anything that should not have come (it would follow in order).
    await t.store.put(root + "y/end", "9");
    assert.deepEqual(await treeCount(4), [
      {
        revision: one.revision,
        changes: [{ key: "x/a/1", value: 3 }, { key: "y", value: 5 }],
      },
      { revision: two - 1, changes: [{ key: "x/a", value: 7 }] },
      { revision: two, changes: [{ key: "y/z", value: 8 }] },
      { revision: two + 1, changes: [{ key: "y/end", value: 9 }] },
    ]);
  } finally {
    await t.close();
  }
});
