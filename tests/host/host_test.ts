/**
 * The host on the embedded store with real sandbox processes: the run
 * protocol, following the tree, code versions, and one runner per task.
 */

import { assert, assertEquals, assertIncludes } from "../_util/assert.ts";
import { waitForKey } from "../_util/store_wait.ts";
import { withTimeout } from "../_util/wait.ts";
import { MemoryStore } from "../../host/store/memory_store.ts";
import { Layout } from "../../host/layout.ts";
import { MemoryLogger } from "../../host/log.ts";
import { SandboxPool } from "../../host/bridge/sandbox.ts";
import { Host } from "../../host/tasks/host.ts";
import { SystemClock } from "../../host/time/clock.ts";
import { servicesOn } from "../../host/cli/services.ts";

const layout = new Layout("/moat");
const status = (path: string, key: string) => `/moat/status/run/${path}/:task/${key}`;

function setup(hostName = "h1") {
  const store = new MemoryStore();
  const logger = new MemoryLogger();
  const pool = new SandboxPool({ warm: 1 });
  const clock = new SystemClock();
  const s = servicesOn(store, "/moat");
  const makeHost = (name = hostName, once = false) =>
    new Host({
      store,
      layout,
      hostName: name,
      isolation: pool,
      logger,
      clock,
      once,
    });
  const close = async () => {
    await pool.close();
    await store.close();
  };
  return { store, logger, pool, s, makeHost, close };
}

const ENDS = 'moat.setup();\nmoat.logger.info("hello", 1 + 1);\nmoat.end();\n';
const WAITS =
  'moat.setup();\nmoat.on_stop(() => moat.logger.info("bye"));\nmoat.logger.info("up");\n';

Deno.test("a script task runs once and its status records how it ended", async () => {
  const t = setup();
  try {
    await t.s.scripts.add("hello", ENDS, { language: "typescript" });
    await t.s.tasks.add("hello", "h1/greet");
    const host = t.makeHost("h1", true);
    await host.start();
    const ends = await withTimeout(host.settled(), 60_000, "the task to end");
    assertEquals(ends.get("h1/greet")?.state, "ok");
    assertEquals((await t.store.get(status("h1/greet", "state")))?.value, "ok");
    assert((await t.store.get(status("h1/greet", "started"))) !== undefined);
    assert((await t.store.get(status("h1/greet", "stopped"))) !== undefined);
    assertEquals(await t.store.get(status("h1/greet", "running")), undefined);
    assert(t.logger.lines.some((l) => l.source === "h1/greet" && l.message === "hello 2"));
    await host.close();
  } finally {
    await t.close();
  }
});

Deno.test("a script that throws records error with its message and stack", async () => {
  const t = setup();
  try {
    await t.s.scripts.add("boom", 'moat.setup();\nthrow new RangeError("owie");\n', {
      language: "typescript",
    });
    await t.s.tasks.add("boom", "h1/boom");
    const host = t.makeHost("h1", true);
    await host.start();
    await withTimeout(host.settled(), 60_000, "the task to end");
    assertEquals((await t.store.get(status("h1/boom", "state")))?.value, "error");
    assertIncludes((await t.store.get(status("h1/boom", "message")))?.value ?? "", "owie");
    await host.close();
  } finally {
    await t.close();
  }
});

Deno.test("a task whose script is missing fails, naming the script", async () => {
  const t = setup();
  try {
    await t.store.put("/moat/task/h1/lost/:task/taskdef", "task/script");
    await t.store.put("/moat/task/h1/lost/:task/script", "nowhere");
    const host = t.makeHost("h1", true);
    await host.start();
    await withTimeout(host.settled(), 60_000, "the task to end");
    assertEquals((await t.store.get(status("h1/lost", "state")))?.value, "fail");
    const message = (await t.store.get(status("h1/lost", "message")))?.value ?? "";
    assert(message.startsWith('script "nowhere" does not exist'), message);
    await host.close();
  } finally {
    await t.close();
  }
});

Deno.test("the host follows the tree: new tasks start, deleted ones stop, changed ones restart", async () => {
  const t = setup();
  try {
    await t.s.scripts.add("waiter", WAITS, { language: "typescript" });
    const host = t.makeHost("h1");
    await host.start();
    await t.s.tasks.add("waiter", "h1/a");
    await waitForKey(t.store, status("h1/a", "running"), (v) => v !== undefined, 60_000);
    const started1 = (await t.store.get(status("h1/a", "started")))?.value;
    // A change outside data/ restarts the task.
    await t.store.put("/moat/task/h1/a/:task/descr", "changed");
    await waitForKey(t.store, status("h1/a", "started"), (v) => v !== started1, 60_000);
    await waitForKey(t.store, status("h1/a", "running"), (v) => v !== undefined, 60_000);
    // Deleting stops it, on_stop runs, and it is not restarted.
    await t.s.tasks.delete("h1/a");
    await waitForKey(t.store, status("h1/a", "running"), (v) => v === undefined, 60_000);
    await t.logger.waitFor((l) => l.source === "h1/a" && l.message === "bye");
    await withTimeout(host.reconciled(), 60_000, "the stop to be carried out");
    assertEquals(host.running, []);
    await host.close();
  } finally {
    await t.close();
  }
});

Deno.test("a promoted script restarts its tasks; bad new_code is rejected and recorded", async () => {
  const t = setup();
  try {
    await t.s.scripts.add("waiter", WAITS, { language: "typescript" });
    await t.s.tasks.add("waiter", "h1/a");
    const host = t.makeHost("h1");
    await host.start();
    await waitForKey(t.store, status("h1/a", "running"), (v) => v !== undefined, 60_000);
    const dir = "/moat/meta/script/waiter/:code/";
    await t.store.put(dir + "new_code", "moat.setup();\nlet x = ;\n");
    const err = await waitForKey(t.store, dir + "error/new_code", (v) => v !== undefined, 60_000);
    assertIncludes(err ?? "", "waiter:2:9");
    assertEquals((await t.store.get(dir + "code"))?.value, WAITS);
    // A type error is refused as `moat script def add` refuses it.
    await t.store.put(dir + "new_code", "moat.setup();\nmoat.setpu();\n");
    await waitForKey(
      t.store,
      dir + "error/new_code",
      (v) => v?.includes("waiter:2:6") === true,
      60_000,
    );
    assertIncludes((await t.store.get(dir + "error/new_code"))?.value ?? "", "'setpu'");
    assertEquals((await t.store.get(dir + "code"))?.value, WAITS);
    const started1 = (await t.store.get(status("h1/a", "started")))?.value;
    const v2 = 'moat.setup();\nmoat.logger.info("v2");\n';
    await t.store.put(dir + "new_code", v2);
    await waitForKey(t.store, dir + "code", (v) => v === v2, 60_000);
    assertEquals((await t.store.get(dir + "old_code"))?.value, WAITS);
    assertEquals(await t.store.get(dir + "new_code"), undefined);
    assertEquals(await t.store.get(dir + "error/new_code"), undefined);
    await waitForKey(t.store, status("h1/a", "started"), (v) => v !== started1, 60_000);
    await t.logger.waitFor((l) => l.source === "h1/a" && l.message === "v2");
    await host.close();
  } finally {
    await t.close();
  }
});

Deno.test("two hosts sharing a task tree never run one task twice", async () => {
  const t = setup();
  try {
    await t.s.scripts.add("waiter", WAITS, { language: "typescript" });
    for (const n of ["x", "y", "z"]) await t.s.tasks.add("waiter", `h1/${n}`);
    const a = t.makeHost("h1");
    const b = t.makeHost("h1");
    await a.start();
    await b.start();
    for (const n of ["x", "y", "z"]) {
      await waitForKey(t.store, status(`h1/${n}`, "running"), (v) => v !== undefined, 60_000);
    }
    const ups = () => t.logger.lines.filter((l) => l.message === "up").length;
    await withTimeout(t.logger.waitFor(() => ups() >= 3), 60_000, "three scripts up");
    for (const n of ["x", "y", "z"]) {
      // Both hosts have a runner for the task; only one of them has run it.
      assertEquals((a.runner(`h1/${n}`)?.runs ?? 0) + (b.runner(`h1/${n}`)?.runs ?? 0), 1);
    }
    assertEquals(ups(), 3);
    // The first host goes away: the second takes its tasks over.
    await a.close();
    await withTimeout(t.logger.waitFor(() => ups() >= 6), 60_000, "three scripts up again");
    for (const n of ["x", "y", "z"]) assertEquals(b.runner(`h1/${n}`)?.runs, 1);
    for (const n of ["x", "y", "z"]) {
      await waitForKey(t.store, status(`h1/${n}`, "running"), (v) => v !== undefined, 60_000);
    }
    await b.close();
  } finally {
    await t.close();
  }
});

Deno.test("a task of another host is not run", async () => {
  const t = setup();
  try {
    await t.s.scripts.add("hello", ENDS, { language: "typescript" });
    await t.s.tasks.add("hello", "other/greet");
    const host = t.makeHost("h1", true);
    await host.start();
    const ends = await withTimeout(host.settled(), 60_000, "nothing to run");
    assertEquals(ends.size, 0);
    await host.close();
  } finally {
    await t.close();
  }
});

Deno.test("a failing task is retried with growing delays and a quick end again and again backs off", async () => {
  const t = setup();
  try {
    await t.s.scripts.add("boom", 'moat.setup();\nthrow new Error("again");\n', {
      language: "typescript",
    });
    await t.s.tasks.add("boom", "h1/boom");
    await t.store.put("/moat/task/h1/boom/:task/retry", "0.05");
    await t.s.scripts.add("hello", ENDS, { language: "typescript" });
    await t.s.tasks.add("hello", "h1/hello");
    await t.store.put("/moat/task/h1/hello/:task/restart", "0.05");
    const host = t.makeHost("h1");
    await host.start();
    const retries = (p: string) =>
      t.logger.lines.filter((l) => l.source === p && /; (retry|restart) in /.test(l.message));
    await withTimeout(
      t.logger.waitFor(() => retries("h1/boom").length >= 3),
      60_000,
      "three retries",
    );
    await withTimeout(
      t.logger.waitFor(() => retries("h1/hello").length >= 2),
      60_000,
      "two restarts",
    );
    // Both end at once every time: after the first, the quick-end back-off
    // doubles from 1 s (host/tasks/run_config.ts quickEndDelay).
    const delay = (l: { message: string }) => Number(/in ([\d.]+) s/.exec(l.message)![1]);
    assertEquals(retries("h1/boom").slice(0, 3).map(delay), [0.05, 2, 4]);
    assertEquals(retries("h1/hello").slice(0, 2).map(delay), [0.05, 2]);
    assertIncludes(retries("h1/boom")[2]!.message, "ended within 10 s 3 times in a row");
    await host.close();
  } finally {
    await t.close();
  }
});
