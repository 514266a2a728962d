/**
 * The script's view of MoaT, run by a real host in real sandboxes on the
 * embedded store: moat.data, moat.tree, moat.monitor, error records and
 * moat.load, with the bad input of each.
 */

import { assert, assertEquals, assertIncludes } from "../_util/assert.ts";
import { waitForKey } from "../_util/store_wait.ts";
import { withTimeout } from "../_util/wait.ts";
import { Layout } from "../../host/layout.ts";
import { hostHarness } from "../_util/host_harness.ts";
import { ErrorRecords } from "../../host/capabilities/error_records.ts";
import { SystemClock } from "../../host/time/clock.ts";

const layout = new Layout("/moat");

const setup = () => hostHarness();

async function script(t: ReturnType<typeof setup>, name: string, code: string) {
  await t.s.scripts.add(name, code, { language: "javascript" });
}

Deno.test("moat.data reads the task's data over the script's typed defaults, and writes existing keys", async () => {
  const t = setup();
  try {
    await script(
      t,
      "thermo",
      `moat.setup();
const show = () => JSON.stringify(moat.data.keys().map((k) => [k, moat.data.get(k)]));
moat.logger.info("start " + show());
moat.run(async () => {
  await moat.data.set("target", 22);
  moat.logger.info("after " + JSON.stringify(moat.data.get("target")));
  for (const [k, v] of [["nosuch", 1], ["target", "warm"], ["target", 1.5], ["on", "yes"]]) {
    try { await moat.data.set(k, v); moat.logger.info("wrote " + k); }
    catch (e) { moat.logger.info("refused " + k + ": " + e.message); }
  }
  moat.logger.info("done");
  await moat.stopping;
});
`,
    );
    const sd = "/moat/meta/script/thermo/:code/";
    await t.store.put(sd + "types/target", "int");
    await t.store.put(sd + "types/on", "bool");
    await t.store.put(sd + "types/name", "str");
    await t.store.put(sd + "values/target", "20");
    await t.store.put(sd + "values/on", "false");
    await t.store.put(sd + "values/name", "21");
    await t.s.tasks.add("thermo", "h/t1", { data: [["on", "true"], ["extra", '{"a":1}']] });
    await t.host.start();
    await t.waitLine("h/t1", (m) => m === "done");
    const l = t.lines("h/t1");
    assertEquals(
      l.find((m) => m.startsWith("start ")),
      'start [["extra",{"a":1}],["name","21"],["on",true],["target",20]]',
    );
    assert(l.includes("after 22"), l.join("\n"));
    assertEquals((await t.store.get("/moat/task/h/t1/:task/data/target"))?.value, "22");
    assertIncludes(l.find((m) => m.startsWith("refused nosuch"))!, "you cannot add new values");
    assertIncludes(l.find((m) => m.startsWith("refused target: "))!, "must be an int");
    assert(l.some((m) => m.startsWith("refused target: ") && m.includes("1.5")), l.join("\n"));
    assertIncludes(l.find((m) => m.startsWith("refused on"))!, "must be a bool");
    // A write made elsewhere reaches the mirror (no restart for data/).
    const runs = t.host.runner("h/t1")!.runs;
    await t.store.put("/moat/task/h/t1/:task/data/target", "25");
    assertEquals(t.host.runner("h/t1")!.runs, runs);
    assertEquals(await t.store.get("/moat/task/h/t1/:task/data/nosuch"), undefined);
  } finally {
    await t.close();
  }
});

Deno.test("moat.tree looks up nodes lazily, hides secrets, and refuses bad paths", async () => {
  const t = setup();
  try {
    await t.store.put("/moat/device/onewire/10/:dev/temp", "21.5");
    await t.store.put("/moat/device/onewire/10/:dev/name", "freezer");
    await t.store.put("/moat/config/amqp/password", "secret");
    await t.store.put("/moat/config/mqtt/password", "secret2");
    await t.store.put("/moat/config/script/hidden", '["config/mqtt"]');
    await t.store.put("/moat/config/other", "7");
    await script(
      t,
      "look",
      `moat.setup();
const dev = await moat.tree.lookup("device", "onewire", "10", ":dev");
moat.logger.info("dev " + dev.path + " " + JSON.stringify(dev.keys()) + " " + dev.get("temp") + " " + dev.get("name"));
moat.logger.info("missing " + (await moat.tree.lookup("device", "nope")));
moat.logger.info("amqp " + (await moat.tree.lookup("config", "amqp")));
moat.logger.info("mqtt " + (await moat.tree.lookup("config/mqtt/password")));
const cfg = await moat.tree.lookup("config");
moat.logger.info("config " + JSON.stringify(cfg.keys()));
for (const bad of [["a", "..", "b"], [""], []]) {
  try { await moat.tree.lookup(...bad); } catch (e) { moat.logger.info("bad " + e.message); }
}
moat.end();
`,
    );
    await t.s.tasks.add("look", "h/look");
    await t.host.start();
    await t.waitLine(
      "h/look",
      (m) => m.includes("script called moat.end()") || m.startsWith("ended"),
    );
    const l = t.lines("h/look");
    assert(l.includes('dev device/onewire/10/:dev ["name","temp"] 21.5 freezer'), l.join("\n"));
    assert(l.includes("missing undefined"), l.join("\n"));
    assert(l.includes("amqp undefined"), l.join("\n"));
    assert(l.includes("mqtt undefined"), l.join("\n"));
    assert(l.includes('config ["other","script"]'), l.join("\n"));
    assertEquals(l.filter((m) => m.startsWith("bad ")).length, 3, l.join("\n"));
  } finally {
    await t.close();
  }
});

Deno.test("moat.monitor delivers every change in order, deletions as null, children added and deleted", async () => {
  const t = setup();
  try {
    await t.store.put("/moat/device/x/:dev/temp", "1");
    await script(
      t,
      "mon",
      `moat.setup();
const dev = moat.data.get("device");
moat.monitor(dev)((c) => {
  moat.logger.info("change " + JSON.stringify([c.is_new, c.added, c.deleted, c.node.get("temp") ?? null]));
});
const parent = await moat.tree.lookup("device");
moat.monitor(parent)((c) => moat.logger.info("dir " + JSON.stringify([c.is_new, c.added, c.deleted])));
try { moat.monitor({ path: "device" }); } catch (e) { moat.logger.info("bad " + e.message); }
`,
    );
    await t.store.put("/moat/meta/script/mon/:code/types/device", "str/ref");
    await t.s.tasks.add("mon", "h/mon", { data: [["device", "device/x/:dev"]] });
    await t.host.start();
    await t.waitLine("h/mon", (m) => m.startsWith("dir "));
    await t.waitLine("h/mon", (m) => m.startsWith("change "));
    for (let i = 2; i <= 20; i++) await t.store.put("/moat/device/x/:dev/temp", String(i));
    await t.waitLine("h/mon", (m) => m === "change [false,[],[],20]", "the 20th value");
    await t.store.put("/moat/device/y/:dev/temp", "5");
    await t.waitLine("h/mon", (m) => m === 'dir [false,["y"],[]]');
    await t.store.delete("/moat/device/x/:dev/", { prefix: true });
    await t.waitLine("h/mon", (m) => m.startsWith("change [null"));
    await t.waitLine("h/mon", (m) => m === 'dir [false,[],["x"]]');
    const changes = t.lines("h/mon").filter((m) => m.startsWith("change "));
    assertEquals(changes[0], "change [true,[],[],1]");
    const temps = changes.slice(1, 20).map((m) => JSON.parse(m.slice(7))[3]);
    assertEquals(
      temps,
      Array.from({ length: 19 }, (_, i) => i + 2),
      "in order, none lost, none twice",
    );
    assertIncludes(t.lines("h/mon").find((m) => m.startsWith("bad "))!, "needs a node");
  } finally {
    await t.close();
  }
});

Deno.test("set_error keeps one counted record per tag; clear_error removes it; job errors follow runs", async () => {
  const t = setup();
  try {
    await script(
      t,
      "err",
      `moat.setup();
await moat.set_error("owch", "I had an owie");
await moat.set_error("owch", "again");
await moat.set_error("gone", "x");
await moat.clear_error("gone");
for (const bad of ["", "a/b"]) {
  try { await moat.set_error(bad, "m"); } catch (e) { moat.logger.info("bad " + e.message); }
}
moat.logger.info("recorded");
throw new Error("job failed");
`,
    );
    await t.s.tasks.add("err", "h/err");
    await t.store.put("/moat/task/h/err/:task/max_retry", "0");
    await t.host.start();
    await waitForKey(
      t.store,
      "/moat/status/run/h/err/:task/error/job",
      (v) => v !== undefined,
      60_000,
    );
    const records = await new ErrorRecords(t.store, layout, new SystemClock()).list("h/err");
    const owch = records.find((r) => r.tag === "owch")!;
    assertEquals([owch.loc, owch.msg, owch.counter], ["h/err", "again", 2]);
    assertEquals(records.find((r) => r.tag === "gone"), undefined);
    assertEquals(records.find((r) => r.tag === "job")?.msg, "job failed");
    const ptr = await t.store.get("/moat/status/run/h/err/:task/error/owch");
    assertEquals(ptr?.value, owch.id);
    assertEquals(t.lines("h/err").filter((m) => m.startsWith("bad ")).length, 2);
    // A good run clears the job error.
    await t.s.scripts.update("err", "moat.setup();\nmoat.end();\n");
    await waitForKey(
      t.store,
      "/moat/status/run/h/err/:task/error/job",
      (v) => v === undefined,
      60_000,
    );
  } finally {
    await t.close();
  }
});

Deno.test("moat.load runs a library with its own exports; bad loads get clear errors", async () => {
  const t = setup();
  try {
    await script(
      t,
      "lib/math",
      `moat.setup({ lib: true });
moat.run(() => moat.logger.info("never"));
moat.exports.double = (x) => 2 * x;
`,
    );
    await script(t, "lib/a", 'moat.setup();\nawait moat.load("lib/b");\n');
    await script(t, "lib/b", 'moat.setup();\nawait moat.load("lib/a");\n');
    await script(
      t,
      "user",
      `moat.setup();
const m = await moat.load("lib/math");
const again = await moat.load("lib/math");
moat.logger.info("double " + m.double(21) + " same " + (m === again));
for (const name of ["nope", "user", "lib/a", "a/../b"]) {
  try { await moat.load(name); } catch (e) { moat.logger.info("bad " + name + ": " + e.message); }
}
let n = 0;
try { for (let i = 0; i < 1000; i++) { await moat.load("lib/math"); n++; } }
catch (e) { moat.logger.info("loop " + n + ": " + e.message); }
moat.logger.info("loaded");
`,
    );
    await t.s.tasks.add("user", "h/user");
    await t.host.start();
    await t.waitLine("h/user", (m) => m === "loaded");
    const l = t.lines("h/user");
    assert(l.includes("double 42 same true"), l.join("\n"));
    assert(!l.includes("never"));
    assertIncludes(l.find((m) => m.startsWith("bad nope"))!, 'script "nope" does not exist');
    assertIncludes(l.find((m) => m.startsWith("bad user"))!, "load cycle");
    assertIncludes(
      l.find((m) => m.startsWith("bad lib/a"))!,
      "load cycle: user → lib/a → lib/b → lib/a",
    );
    assertIncludes(l.find((m) => m.startsWith("bad a/../b"))!, '".."');
    assertIncludes(l.find((m) => m.startsWith("loop "))!, "more than 100 times");
    // Changing the library restarts the task; deleting it stops the task.
    const before = t.host.runner("h/user");
    await t.s.scripts.update("lib/math", "moat.setup();\nmoat.exports.double = (x) => x + x;\n");
    await withTimeout(
      t.logger.waitFor(() => t.lines("h/user").filter((m) => m.startsWith("double")).length >= 2),
      60_000,
      "a restart after the library changed",
    );
    assert(t.host.runner("h/user") !== before, "the task was restarted with a new run");
    await t.s.scripts.delete("lib/math", { force: true });
    await t.waitLine("h/user", (m) => m.includes("loaded script lib/math was deleted"));
  } finally {
    await t.close();
  }
});
