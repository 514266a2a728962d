/**
 * The run protocol on a fake isolation, MemoryStore and VirtualClock
 * (host/testing/host_harness.ts): leases, restarts and retries, take-overs,
 * code changes and the order of a stop, in virtual time.
 */

import assert from "node:assert/strict";
import { ErrorRecords } from "../capabilities/error_records.ts";
import { type HostHarness, hostHarness } from "../testing/host_harness.ts";
import type { FakeScript } from "../testing/fake_isolation.ts";
import { unixText } from "../scripts/definitions.ts";

const TASK = "h/t";

/** A harness running task h/t of script s; returns its first (fake) script. */
async function started(
  h: HostHarness,
  code = "moat.setup();",
): Promise<FakeScript> {
  await h.scripts.add("s", code, { language: "javascript" });
  await h.tasks.add("s", TASK);
  await h.host.start();
  return await h.isolation.next();
}

/** Let `ms` of virtual time pass once the runner logged `re` (it then waits on the clock). */
async function after(h: HostHarness, re: RegExp, ms: number): Promise<string> {
  const line = await h.waitLog(TASK, re);
  await h.clock.advance(ms);
  return line;
}

Deno.test("a run takes the running lease, writes started, and keeps the lease past its ttl", async () => {
  const h = hostHarness();
  try {
    const run = await started(h);
    const token = JSON.parse((await h.status(TASK, "running"))!);
    assert.equal(token.host, "h");
    assert.equal(await h.status(TASK, "started"), unixText(h.clock.now()));
    assert.deepEqual(h.transitions.map((t) => t.state), ["start"]);
    assert.deepEqual(run.events.map((e) => e.event), ["data"]);
    // Three ttls (30 s each) later the lease is still ours: it was refreshed.
    for (let i = 0; i < 9; i++) await h.clock.advance(10_000);
    assert.equal(run.outcome, undefined, "the run goes on");
    assert.equal(JSON.parse((await h.status(TASK, "running"))!).id, token.id);
    assert.ok(h.store.keepAlives >= 5, `${h.store.keepAlives} keep-alives`);
  } finally {
    await h.close();
  }
});

Deno.test("a run waits while another host holds the lease, and starts once it is given back", async () => {
  const h = hostHarness();
  try {
    const other = await h.store.grantLease(30);
    const running = h.layout.statusKey(TASK, "running");
    await h.store.put(running, '{"host":"elsewhere"}', { lease: other.id });
    await h.scripts.add("s", "moat.setup();", { language: "javascript" });
    await h.tasks.add("s", TASK);
    await h.host.start();
    await h.waitLog(TASK, /waiting: the task is running elsewhere/);
    assert.equal(h.isolation.started.length, 0);
    await other.revoke();
    const run = await h.isolation.next();
    assert.equal(run.task, TASK);
    assert.equal(JSON.parse((await h.status(TASK, "running"))!).host, "h");
  } finally {
    await h.close();
  }
});

Deno.test("a run whose lease is lost is killed at once, recorded as fail, and retried", async () => {
  const h = hostHarness();
  try {
    const run = await started(h);
    h.store.stall();
    await h.clock.advance(30_000); // the ttl: the lease expires
    const end = await run.ended;
    assert.equal(end.state, "fail");
    assert.match(end.message, /^lease lost: /);
    assert.deepEqual(h.isolation.log.map((e) => e.what), ["start", "kill"], "no on_stop");
    await h.waitStatus(TASK, "state", "fail");
    assert.match((await h.status(TASK, "message"))!, /lease lost/);
    h.store.resume();
    await after(h, /ended \(fail\); retry in 1 s/, 1000);
    const again = await h.isolation.next();
    assert.equal(again.task, TASK);
  } finally {
    await h.close();
  }
});

Deno.test("a normal end restarts after `restart` s, doubled for each quick end in a row", async () => {
  const h = hostHarness();
  try {
    const first = await started(h);
    first.end("ok");
    await after(h, /ended \(ok\); restart in 2 s$/, 1999);
    assert.equal(h.isolation.started.length, 1, "not before 2 s");
    await h.clock.advance(1);
    const second = await h.isolation.next();
    second.end("ok");
    await after(h, /restart in 4 s \(ended within 10 s 2 times in a row\)/, 4000);
    const third = await h.isolation.next();
    third.end("ok");
    await after(h, /restart in 8 s \(ended within 10 s 3 times in a row\)/, 8000);
    const fourth = await h.isolation.next();
    await h.clock.advance(10_000); // a run that lasts: the back-off is over
    fourth.end("ok");
    await h.waitLog(TASK, /restart in 2 s$/, 2);
  } finally {
    await h.close();
  }
});

Deno.test("a failure retries after `retry` s, growing by 1.1 for each failure in a row", async () => {
  const h = hostHarness();
  try {
    let run = await started(h);
    for (const delay of ["1", "1.1", "1.21"]) {
      await h.clock.advance(10_000); // not a quick end
      run.end("error", "boom");
      await h.waitLog(TASK, new RegExp(`retry in ${delay.replace(".", "\\.")} s$`));
      await h.clock.advance(Number(delay) * 1000);
      run = await h.isolation.next();
    }
    assert.equal(await h.status(TASK, "state"), "error");
    assert.equal(await h.status(TASK, "message"), "boom");
    // An ok end resets the count: the next failure retries after 1 s again.
    await h.clock.advance(10_000);
    run.end("ok");
    await after(h, /restart in 2 s$/, 2000);
    run = await h.isolation.next();
    await h.clock.advance(10_000);
    run.end("error", "boom");
    await h.waitLog(TASK, /retry in 1 s$/, 2);
  } finally {
    await h.close();
  }
});

Deno.test("a crashed run is taken over: its start stays on record as crashed and in the job error", async () => {
  const h = hostHarness();
  try {
    // A run started and never recorded its end: its host died.
    await h.store.put(h.layout.statusKey(TASK, "started"), "1700000000");
    await started(h);
    assert.equal(await h.status(TASK, "crashed"), "1700000000");
    const records = await new ErrorRecords(h.store, h.layout, h.clock).list();
    const job = records.find((r) => r.tag === "job");
    assert.ok(job, "a job error record");
    assert.match(job.msg, /^the run started at 2023-11-14T22:13:20\.000Z crashed/);
  } finally {
    await h.close();
  }
});

Deno.test("a changed script restarts its tasks with the new code", async () => {
  const h = hostHarness();
  try {
    const first = await started(h, "moat.setup(); /* one */");
    assert.match(first.options.code, /one/);
    await h.scripts.update("s", "moat.setup(); /* two */");
    const second = await h.isolation.next();
    assert.match(second.options.code, /two/);
    assert.deepEqual(h.isolation.log.map((e) => [e.what, e.detail]).slice(0, 3), [
      ["start", "s"],
      ["stop", "restarting: script s changed"],
      ["start", "s"],
    ]);
    assert.equal((await first.ended).state, "ok");
  } finally {
    await h.close();
  }
});

Deno.test("a stop asks the script while it holds the lease, then records the end, then lets go", async () => {
  const h = hostHarness();
  try {
    const run = await started(h);
    const stop = run.stop.bind(run);
    let runningAtStop: string | undefined;
    run.stop = async (reason) => {
      runningAtStop = await h.status(TASK, "running");
      return await stop(reason);
    };
    await h.host.close();
    assert.ok(runningAtStop, "the lease was still held when the script was asked to stop");
    assert.equal(await h.status(TASK, "state"), "ok");
    assert.equal(await h.status(TASK, "message"), "stopped: host shutting down");
    assert.equal(await h.status(TASK, "stopped"), unixText(h.clock.now()));
    assert.equal(await h.status(TASK, "running"), undefined, "the lease was given back");
    assert.deepEqual(h.isolation.log.map((e) => e.what), ["start", "stop"]);
    assert.deepEqual(h.transitions.map((t) => t.state), ["start", "ok"]);
  } finally {
    await h.close();
  }
});

Deno.test("a run's methods write its task's data, and only while it holds the lease", async () => {
  const h = hostHarness();
  try {
    await h.scripts.add("s", "moat.setup();", { language: "javascript" });
    await h.tasks.add("s", TASK, { data: [["level", "1"]] });
    await h.host.start();
    const run = await h.isolation.next();
    assert.deepEqual(run.events[0], {
      event: "data",
      data: { values: { level: { value: 1, type: null } }, refs: {} },
    });
    await run.call("data_set", ["level", 5]);
    assert.equal((await h.store.get(h.layout.taskDir(TASK) + "data/level"))?.value, "5");
    const missing = await run.call("data_set", ["nope", 1]).then(() => undefined, (e) => e);
    assert.equal(missing?.code, "no_such_key");
  } finally {
    await h.close();
  }
});

Deno.test("a start reads /config/run once, for its run settings, limits and quotas", async () => {
  const h = hostHarness();
  try {
    await h.store.put(h.layout.runConfigPrefix + "restart", "5");
    const first = await started(h);
    const reads = () =>
      h.counts.log.filter((e) => e.op === "range" && e.key === h.layout.runConfigPrefix).length;
    assert.equal(reads(), 1);
    first.end("ok");
    await after(h, /ended \(ok\); restart in 5 s$/, 5000);
    await h.isolation.next();
    assert.equal(reads(), 2);
  } finally {
    await h.close();
  }
});

Deno.test("a task written key by key starts once: changes its start already saw restart nothing", async () => {
  const h = hostHarness();
  try {
    await h.scripts.add("s", "moat.setup();", { language: "javascript" });
    await h.host.start();
    const dir = h.layout.taskDir(TASK);
    await h.store.put(dir + "retry", "600");
    await h.store.put(dir + "cpu", "5");
    await h.tasks.add("s", TASK);
    await h.isolation.next();
    await h.host.reconciled();
    assert.deepEqual(h.isolation.log.map((e) => e.what), ["start"]);
    // A change after the start restarts it.
    await h.store.put(dir + "cpu", "6");
    await h.isolation.next();
    assert.deepEqual(h.isolation.log.map((e) => e.what), ["start", "stop", "start"]);
  } finally {
    await h.close();
  }
});
