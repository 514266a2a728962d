/**
 * Catch-up and records of schedules (docs/time.md, "Catch-up") on the run
 * protocol: a real `Host` on MemoryStore and a VirtualClock with fake
 * scripts that call the host's `wait`, `run_at` and `fired` methods.
 */

import assert from "node:assert/strict";
import { type HostHarness, hostHarness } from "../../host/testing/host_harness.ts";
import type { FakeScript } from "../../host/testing/fake_isolation.ts";
import { parseRecord, RECORD_RETENTION_S } from "../../host/capabilities/schedules.ts";
import { BridgeError, SandboxPool } from "../../host/bridge/sandbox.ts";
import { quietPeriod, withTimeout } from "../_util/wait.ts";

const TASK = "h/t";
const SPEC = "6 hr 30 min";
/** 2026-01-05 06:30:00 UTC, a Monday: the firing of SPEC that day. */
const DUE = Date.UTC(2026, 0, 5, 6, 30) / 1000;

async function started(h: HostHarness): Promise<FakeScript> {
  await h.store.put(h.layout.timezoneKey, "UTC");
  await h.store.put(`${h.layout.runConfigPrefix}restart`, "1");
  await h.scripts.add("s", "moat.setup();", { language: "javascript" });
  await h.tasks.add("s", TASK);
  await h.host.start();
  return await h.isolation.next();
}

async function record(h: Pick<HostHarness, "store" | "layout">, id: string) {
  const kv = await h.store.get(h.layout.scheduleKey(TASK, id));
  return kv && parseRecord(kv.value);
}

/** Let the host's promise chains run (a record's write, a wait arming its timer). */
async function settle(h: HostHarness): Promise<void> {
  for (let i = 0; i < 5; i++) await h.clock.advance(0);
}

Deno.test("a firing missed while no run was there fires at once, late, and only once", async () => {
  // The host comes up at 06:35: the 06:30 firing was missed.
  const h = hostHarness({ startMs: (DUE + 300) * 1000 });
  try {
    const run = await started(h);
    const firing = await run.call("run_at", [SPEC, { id: "heat", catch_up: 600 }]);
    assert.deepEqual(firing, { due: DUE, late: true });
    await run.call("fired", ["heat", DUE]);
    await settle(h);
    const r = await record(h, "heat");
    assert.equal(r?.due, DUE);
    assert.equal(r?.late, true);
    assert.equal(r?.next, DUE + 86400);
    // The same schedule again: today's firing is done, so it waits for tomorrow's.
    const next = run.call("wait", [SPEC, { id: "heat", catch_up: 600 }]);
    let resolved: number | undefined;
    next.then((t) => resolved = t, () => {});
    await h.clock.advance(3600_000);
    assert.equal(resolved, undefined, "no second firing today");
    await h.clock.advance(86400_000);
    assert.equal(await next, DUE + 86400);
  } finally {
    await h.close();
  }
});

Deno.test("after a restart, a firing recorded as done does not fire again", async () => {
  const h = hostHarness({ startMs: (DUE - 10) * 1000 });
  try {
    const run = await started(h);
    const fired = run.call("wait", [SPEC, { id: "heat", catch_up: 600 }]);
    await h.clock.advance(10_000);
    assert.equal(await fired, DUE);
    await settle(h);
    assert.equal((await record(h, "heat"))?.late, false);
    // The script ends (a code update, a crash) and runs again a second later.
    run.end("error", "boom");
    await h.waitLog(TASK, /retry in/);
    await h.clock.advance(5_000);
    const again = await h.isolation.next();
    const second = again.call("wait", [SPEC, { id: "heat", catch_up: 600 }]);
    let resolved: number | undefined;
    second.then((t) => resolved = t, () => {});
    await h.clock.advance(600_000);
    assert.equal(resolved, undefined, "the 06:30 firing is done: not again");
  } finally {
    await h.close();
  }
});

Deno.test("without catch_up, or beyond it, a missed firing is not caught up", async () => {
  const h = hostHarness({ startMs: (DUE + 300) * 1000 });
  try {
    const run = await started(h);
    const got: number[] = [];
    const push = (t: number) => got.push(t);
    run.call("wait", [SPEC, { id: "a" }]).then(push, () => {});
    run.call("wait", [SPEC, { id: "b", catch_up: 60 }]).then(push, () => {});
    run.call("wait", [SPEC, {}]).then(push, () => {});
    await h.clock.advance(3600_000);
    assert.deepEqual(got, []);
  } finally {
    await h.close();
  }
});

Deno.test("a schedule id armed twice at once is refused; one after the other is fine", async () => {
  const h = hostHarness({ startMs: (DUE - 10) * 1000 });
  try {
    const run = await started(h);
    const first = run.call("wait", [SPEC, { id: "heat" }]);
    await assert.rejects(
      run.call("run_at", [SPEC, { id: "heat" }]),
      (e: unknown) => e instanceof BridgeError && e.code === "taken" && /heat/.test(e.message),
    );
    await h.clock.advance(10_000);
    assert.equal(await first, DUE);
    const again = run.call("wait", ["0 sec", { id: "heat" }]);
    await h.clock.advance(60_000);
    assert.ok((await again) > DUE);
  } finally {
    await h.close();
  }
});

Deno.test("catch_up needs an id, the default current and no now", async () => {
  const h = hostHarness({ startMs: (DUE - 10) * 1000 });
  try {
    const run = await started(h);
    for (
      const options of [
        { catch_up: 60 },
        { id: "x", catch_up: 60, current: true },
        { id: "x", catch_up: 60, now: DUE },
      ]
    ) {
      await assert.rejects(
        run.call("wait", [SPEC, options]),
        (e: unknown) => e instanceof BridgeError && e.code === "bad_args",
        JSON.stringify(options),
      );
    }
  } finally {
    await h.close();
  }
});

Deno.test("a run_at firing is recorded only once its callback returned", async () => {
  const h = hostHarness({ startMs: (DUE - 10) * 1000 });
  try {
    const run = await started(h);
    const firing = run.call("run_at", [SPEC, { id: "heat", catch_up: 600 }]);
    await h.clock.advance(10_000);
    assert.deepEqual(await firing, { due: DUE, late: false });
    await settle(h);
    assert.equal(await record(h, "heat"), undefined, "the callback has not returned yet");
    await assert.rejects(run.call("fired", ["heat", DUE + 1]), BridgeError);
    await run.call("fired", ["heat", DUE]);
    await settle(h);
    assert.equal((await record(h, "heat"))?.due, DUE);
  } finally {
    await h.close();
  }
});

Deno.test("a run whose lease is no longer held fires nothing", async () => {
  const h = hostHarness({ startMs: (DUE - 10) * 1000 });
  try {
    const run = await started(h);
    const firing = run.call("run_at", [SPEC, { id: "heat" }]).then(
      () => "fired",
      (e: BridgeError) => e.code,
    );
    // The host stalls (keep-alives stop) across 06:30 and past the ttl (30 s),
    // then wakes: its wait wakes first and finds the lease's time up.
    h.store.stall();
    await h.clock.set((DUE + 50) * 1000);
    const end = await run.ended;
    assert.match(end.message, /lease lost/);
    assert.notEqual(await firing, "fired");
  } finally {
    await h.close();
  }
});

Deno.test("records that no longer matter are removed when a run starts", async () => {
  const h = hostHarness({ startMs: DUE * 1000 });
  try {
    const old = DUE - RECORD_RETENTION_S - 2 * 86400;
    const stale = { due: old, done: old, late: false, spec: SPEC, catch_up: 0, next: old + 86400 };
    const fresh = { ...stale, due: DUE - 86400, next: DUE };
    await h.store.put(h.layout.scheduleKey(TASK, "stale"), JSON.stringify(stale));
    await h.store.put(h.layout.scheduleKey(TASK, "fresh"), JSON.stringify(fresh));
    await started(h);
    await settle(h);
    assert.equal(await h.store.get(h.layout.scheduleKey(TASK, "stale")), undefined);
    assert.equal((await record(h, "fresh"))?.due, DUE - 86400);
  } finally {
    await h.close();
  }
});

Deno.test("a record is written only while the run holds the task: another token refuses it", async () => {
  const h = hostHarness({ startMs: (DUE - 10) * 1000 });
  try {
    const run = await started(h);
    const fired = run.call("wait", [SPEC, { id: "heat" }]);
    // Someone else's `running` value (as after a take-over the runner has not noticed yet).
    await h.store.put(h.layout.statusKey(TASK, "running"), '{"host":"elsewhere"}');
    await h.clock.advance(10_000);
    assert.equal(await fired, DUE);
    await h.waitLog(TASK, /schedule "heat": the firing due at \d+ ran but is not recorded/);
    assert.equal(await record(h, "heat"), undefined);
  } finally {
    await h.close();
  }
});

Deno.test("a run_at whose function ends the script still records its firing: the next run does not repeat it", async () => {
  const tmpDir = await Deno.makeTempDir({ prefix: "moat-sched-" });
  const pool = new SandboxPool({ warm: 0, tmpDir, limits: { cpu: 10_000, heartbeat: 3_600 } });
  // 06:35: the 06:30 firing was missed, and is caught up at once.
  const h = hostHarness({ isolation: pool, startMs: (DUE + 300) * 1000 });
  const ran = () =>
    h.logger.lines.filter((l) => l.source === TASK && l.message.startsWith("RAN ")).map((l) =>
      l.message
    );
  const starts = () =>
    h.logger.lines.filter((l) => l.source === TASK && l.message.startsWith("ARMED")).length;
  try {
    await h.store.put(h.layout.timezoneKey, "UTC");
    await h.store.put(`${h.layout.runConfigPrefix}restart`, "1");
    await h.scripts.add(
      "s",
      `moat.setup();
moat.run_at("${SPEC}", ({ due, late }) => {
  moat.logger.info("RAN " + due + " " + late);
  moat.end();
}, { id: "heat", catch_up: 600 });
moat.logger.info("ARMED");`,
      { language: "javascript" },
    );
    await h.tasks.add("s", TASK);
    await h.host.start();
    await withTimeout(
      h.logger.waitFor((l) => l.source === TASK && /^ended: ok/.test(l.message)),
      60_000,
      "the first run to end",
    );
    assert.deepEqual(ran(), [`RAN ${DUE} true`]);
    assert.equal((await record(h, "heat"))?.due, DUE);
    // It restarts after 1 s (virtual): the firing is done, it waits for tomorrow.
    await h.clock.advance(2_000);
    await withTimeout(
      h.logger.waitFor((l) => l.source === TASK && l.message === "ARMED" && starts() >= 2),
      60_000,
      "the second run",
    );
    await quietPeriod(500);
    assert.deepEqual(ran(), [`RAN ${DUE} true`], "not again");
  } finally {
    await h.close();
    await pool.close();
    await Deno.remove(tmpDir, { recursive: true });
  }
});
