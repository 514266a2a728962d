/**
 * A host's start with many tasks (issue 19, fast starts): the tasks, their
 * status and their script are read once for all of them, not once per
 * task, and what the host read at its start never makes a run judge from
 * a stale status.
 */

import assert from "node:assert/strict";
import { hostHarness } from "../testing/host_harness.ts";
import { CountingStore } from "../testing/counting_store.ts";
import { FakeIsolation } from "../testing/fake_isolation.ts";
import { MemoryStore } from "../store/memory_store.ts";
import type { RangeOptions, RangeResult } from "../store/store.ts";
import { Layout } from "../layout.ts";
import { MemoryLogger } from "../log.ts";
import { VirtualClock } from "../time/virtual_clock.ts";
import { ScriptDefs } from "../scripts/definitions.ts";
import { TaskDefs } from "./task_defs.ts";
import { Host } from "./host.ts";

const TASKS = 40;

Deno.test("a host starting with many tasks reads their keys, status and script once for all", async () => {
  const h = hostHarness();
  try {
    await h.scripts.add("s", "moat.setup();", { language: "javascript" });
    for (let i = 0; i < TASKS; i++) await h.tasks.add("s", `h/t${i}`);
    // Some have a status from an earlier run (ended cleanly).
    for (let i = 0; i < TASKS; i += 2) {
      await h.store.put(h.layout.statusKey(`h/t${i}`, "started"), "1700000000");
      await h.store.put(h.layout.statusKey(`h/t${i}`, "stopped"), "1700000001");
    }
    h.counts.reset();
    await h.host.start();
    for (let i = 0; i < TASKS; i++) await h.isolation.next();
    await h.host.reconciled();
    const ops = h.counts.log;
    const taskDirs = new Set(Array.from({ length: TASKS }, (_, i) => h.layout.taskDir(`h/t${i}`)));
    const statusDirs = new Set(
      Array.from({ length: TASKS }, (_, i) => h.layout.statusDir(`h/t${i}`)),
    );
    const statusKeys = new Set(
      Array.from({ length: TASKS }, (_, i) => [
        h.layout.statusKey(`h/t${i}`, "started"),
        h.layout.statusKey(`h/t${i}`, "stopped"),
      ]).flat(),
    );
    const scriptDir = h.layout.scriptDir("s");
    assert.deepEqual(
      ops.filter((o) => o.op === "range" && taskDirs.has(o.key)),
      [],
      "no task is read on its own",
    );
    assert.deepEqual(
      ops.filter((o) =>
        (o.op === "range" && statusDirs.has(o.key)) || (o.op === "get" && statusKeys.has(o.key))
      ),
      [],
      "no task's status is read on its own",
    );
    const scriptReads = ops.filter((o) => o.op === "range" && o.key === scriptDir).length;
    assert.ok(scriptReads >= 1 && scriptReads < TASKS / 4, `${scriptReads} reads of the script`);
    assert.equal(ops.filter((o) => o.op === "range" && o.key === "/moat/config/run/").length, 1);
    // Each task took `running` once and judged its status right: no crash.
    assert.equal(h.counts.count("txn"), TASKS);
    for (let i = 0; i < TASKS; i++) {
      assert.ok(await h.status(`h/t${i}`, "running"), `h/t${i} runs`);
      assert.equal(await h.status(`h/t${i}`, "crashed"), undefined, `h/t${i} did not crash`);
    }
  } finally {
    await h.close();
  }
});

/** A store on which a run ends cleanly (`stopped` written) just after the host read the status. */
class EndsAfterStatusRead extends CountingStore {
  #statusPrefix: string;
  #stopped: string;
  #done = false;

  constructor(inner: MemoryStore, statusPrefix: string, stopped: string) {
    super(inner);
    this.#statusPrefix = statusPrefix;
    this.#stopped = stopped;
  }

  override async range(prefix: string, options?: RangeOptions): Promise<RangeResult> {
    const res = await super.range(prefix, options);
    if (prefix === this.#statusPrefix && !this.#done) {
      this.#done = true;
      await super.put(this.#stopped, "1700000005");
    }
    return res;
  }
}

Deno.test("a status that changed after the host read it is read again, not taken for a crash", async () => {
  const clock = new VirtualClock(Date.UTC(2026, 0, 5, 7));
  const layout = new Layout("/moat");
  const memory = new MemoryStore({ clock });
  const task = "h/t";
  // A run started elsewhere and has not recorded its end yet when the host reads.
  await memory.put(layout.statusKey(task, "started"), "1700000000");
  const store = new EndsAfterStatusRead(
    memory,
    `${layout.statusPrefix}h/`,
    layout.statusKey(task, "stopped"),
  );
  const isolation = new FakeIsolation();
  const logger = new MemoryLogger();
  const host = new Host({ store, layout, hostName: "h", isolation, logger, clock });
  try {
    const scripts = new ScriptDefs(store, layout, { clock });
    await scripts.add("s", "moat.setup();", { language: "javascript" });
    await new TaskDefs(store, layout, scripts).add("s", task);
    store.reset();
    await host.start();
    await isolation.next();
    // The host's read said "started, never stopped" (a crash); the end came
    // before the run took `running`: its transaction saw `stopped` move and
    // it judged again from a fresh read.
    assert.equal(store.count("txn"), 2, "one try refused, one taken");
    assert.equal((await store.get(layout.statusKey(task, "crashed")))?.value, undefined);
    assert.ok(!logger.lines.some((l) => /crashed/.test(l.message)), "no crash reported");
  } finally {
    await host.close();
    await isolation.close();
    await store.close();
  }
});
