import assert from "node:assert/strict";
import { WebModel } from "./web_model.ts";
import { MemoryStore } from "../store/memory_store.ts";
import { Layout } from "../layout.ts";

async function withModel(
  fn: (store: MemoryStore, model: WebModel, changed: () => Promise<void>) => Promise<void>,
) {
  const store = new MemoryStore();
  let wake: () => void = () => {};
  const model = new WebModel(store, new Layout("/moat"), { onChange: () => wake() });
  const changed = () => new Promise<void>((r) => wake = r);
  try {
    await fn(store, model, changed);
  } finally {
    await model.close();
    await store.close();
  }
}

Deno.test("the web model lists tasks with state, script version and runs seen, live", async () => {
  await withModel(async (store, model, changed) => {
    await store.put("/moat/task/h1/a/:task/script", "s");
    await store.put("/moat/meta/script/s/:code/timestamp", "1700000000");
    await store.put("/moat/meta/script/s/:code/code", "moat.setup();");
    await model.start();
    assert.deepEqual(model.tasks().map((t) => [t.path, t.host, t.state, t.script, t.version]), [
      ["h1/a", "h1", "new", "s", 1700000000],
    ]);
    const c = changed();
    await store.put("/moat/status/run/h1/a/:task/started", "1700000100");
    await c;
    const t = model.tasks()[0]!;
    assert.equal(t.state, "crash");
    assert.equal(t.restarts, 1);
  });
});

Deno.test("the web model escapes what scripts wrote and hides hidden tasks and values", async () => {
  await withModel(async (store, model) => {
    await store.put("/moat/config/script/hidden", "task/h1/secret task/h1/a/:task/data/pin");
    for (const p of ["h1/a", "h1/secret"]) {
      await store.put(`/moat/task/${p}/:task/script`, "s");
      await store.put(`/moat/status/run/${p}/:task/started`, "1");
      await store.put(`/moat/status/run/${p}/:task/stopped`, "2");
      await store.put(`/moat/status/run/${p}/:task/state`, "error");
      await store.put(`/moat/status/run/${p}/:task/message`, "bad\x1b[2J\nnews");
    }
    await store.put("/moat/task/h1/a/:task/data/room", "porch\x07");
    await store.put("/moat/task/h1/a/:task/data/pin", "1234");
    await store.put("/moat/status/errors/x/1/loc", "h1/secret");
    await store.put("/moat/status/errors/x/1/msg", "secret trouble");
    await store.put("/moat/status/errors/x/2/loc", "h1/a");
    await store.put("/moat/status/errors/x/2/msg", "<b>\x1b</b>");
    await model.start();
    assert.deepEqual(model.tasks().map((t) => [t.path, t.message]), [
      ["h1/a", "bad\\x1b[2J\\nnews"],
    ]);
    const d = model.task("h1/a")!;
    assert.deepEqual(d.data, { room: "porch\\x07" });
    assert.deepEqual(d.errors.map((r) => r.msg), ["<b>\\x1b</b>"]);
    assert.equal(model.task("h1/secret"), undefined);
    assert.deepEqual(model.errors().map((r) => r.loc), ["h1/a"]);
    assert.ok(!JSON.stringify(model.state()).includes("secret"));
  });
});

Deno.test("the web model holds a task's secret values only as ***, at start and live", async () => {
  await withModel(async (store, model, changed) => {
    await store.put("/moat/task/h1/a/:task/script", "s");
    await store.put("/moat/task/h1/a/:task/data/room", "porch");
    await store.put("/moat/task/h1/a/:task/secret/pin", "first-secret");
    await model.start();
    assert.deepEqual(model.task("h1/a")!.data, { room: "porch", pin: "***" });
    const c = changed();
    await store.put("/moat/task/h1/a/:task/secret/key", "second-secret");
    await c;
    assert.deepEqual(model.task("h1/a")!.data, { room: "porch", pin: "***", key: "***" });
    const shown = JSON.stringify([model.state(), model.task("h1/a")]);
    assert.ok(!shown.includes("first-secret") && !shown.includes("second-secret"), shown);
  });
});
