import assert from "node:assert/strict";
import type { Clock } from "./clock.ts";
import { localIso } from "./zone.ts";
import { TimeSpecError } from "./time_spec.ts";
import { VirtualClock } from "./virtual_clock.ts";
import { runAt, waitTarget, waitUntilSpec } from "./wait.ts";

const BERLIN = "Europe/Berlin";
const ms = (iso: string) => Date.parse(iso);

/** Track whether a promise has settled, without awaiting it. */
function track<T>(p: Promise<T>) {
  const state: { done: boolean; value?: T; error?: unknown } = { done: false };
  p.then((v) => Object.assign(state, { done: true, value: v }), (e) => {
    Object.assign(state, { done: true, error: e });
  });
  return state;
}

Deno.test("wait until the last Friday of the month, 07:30, Berlin, runs on a virtual clock", async () => {
  const clock = new VirtualClock(ms("2026-03-01T10:00:00+01:00"));
  const w = track(waitUntilSpec("-1 fri 7 hr 30 min", { clock, zone: BERLIN }));
  await clock.advance(25 * 86_400_000);
  assert.equal(w.done, false);
  await clock.runUntilIdle();
  assert.equal(w.done, true);
  assert.equal(localIso(w.value!, BERLIN), "2026-03-27T07:30:00+01:00");
  assert.equal(clock.now(), w.value! * 1000);
});

Deno.test("wait fires at the end of a spring-forward gap", async () => {
  const clock = new VirtualClock(ms("2026-03-29T00:00:00+01:00"));
  const w = track(waitUntilSpec("2 hr 30 min", { clock, zone: BERLIN }));
  await clock.runUntilIdle();
  assert.equal(localIso(w.value!, BERLIN), "2026-03-29T03:00:00+02:00");
});

Deno.test("wait with only a now waits until that time", async () => {
  const clock = new VirtualClock(1_000_000_000_000);
  const w = track(waitUntilSpec([], { clock, zone: "UTC", now: 1_000_000_060 }));
  const v = track(waitUntilSpec("1000000090", { clock, zone: "UTC" }));
  await clock.advance(59_999);
  assert.equal(w.done, false);
  await clock.advance(1);
  assert.equal(w.value, 1_000_000_060);
  assert.equal(v.done, false);
  await clock.advance(30_000);
  assert.equal(v.value, 1_000_000_090);
  assert.equal(waitTarget("", { clock, zone: "UTC" }), clock.now() / 1000);
});

Deno.test("wait does not fire early when the clock is set back while it sleeps", async () => {
  const start = ms("2026-06-01T11:00:00Z");
  const clock = new VirtualClock(start);
  const w = track(waitUntilSpec("12 hr", { clock, zone: "UTC" }));
  await clock.set(start - 86_400_000); // a day back
  await clock.advance(86_400_000 + 3_599_000); // to 11:59:59 of the original day
  assert.equal(w.done, false);
  await clock.advance(1000);
  assert.equal(w.value, ms("2026-06-01T12:00:00Z") / 1000);
});

Deno.test("wait fires at once, with its target, when the clock jumps past it", async () => {
  const clock = new VirtualClock(ms("2026-06-01T11:00:00Z"));
  const w = track(waitUntilSpec("12 hr", { clock, zone: "UTC" }));
  await clock.set(ms("2026-06-01T15:00:00Z"));
  assert.equal(w.value, ms("2026-06-01T12:00:00Z") / 1000);
});

Deno.test("wait sleeps again when the clock wakes it before the target", async () => {
  const inner = new VirtualClock(ms("2026-06-01T11:00:00Z"));
  let spurious = 2;
  // A clock whose first wake-ups come too early, as after a clock was set back.
  const early: Clock = {
    now: () => inner.now(),
    sleepUntil: (atMs, signal) =>
      spurious-- > 0 ? Promise.resolve() : inner.sleepUntil(atMs, signal),
  };
  const w = track(waitUntilSpec("12 hr", { clock: early, zone: "UTC" }));
  await inner.advance(3_599_000);
  assert.equal(w.done, false);
  assert.equal(spurious, -1);
  await inner.advance(1000);
  assert.equal(w.value, ms("2026-06-01T12:00:00Z") / 1000);
});

Deno.test("wait honours current true, false and null", async () => {
  const clock = new VirtualClock(ms("2026-06-01T12:45:00Z"));
  assert.equal(
    await waitUntilSpec("12 hr", { clock, zone: "UTC", current: true }),
    ms("2026-06-01T12:45:00Z") / 1000,
  );
  const f = track(waitUntilSpec("12 hr", { clock, zone: "UTC", current: false }));
  const n = track(waitUntilSpec("12 hr", { clock, zone: "UTC" }));
  await clock.advanceToNext();
  assert.equal(f.value, ms("2026-06-01T13:00:00Z") / 1000);
  assert.equal(n.done, false);
  await clock.runUntilIdle();
  assert.equal(n.value, ms("2026-06-02T12:00:00Z") / 1000);
});

Deno.test("an aborted wait rejects with the reason", async () => {
  const clock = new VirtualClock(0);
  const ac = new AbortController();
  const w = waitUntilSpec("12 hr", { clock, zone: "UTC", signal: ac.signal });
  ac.abort(new Error("script stopped"));
  await assert.rejects(w, /script stopped/);
  assert.equal(clock.pendingSleeps, 0);
  await assert.rejects(
    waitUntilSpec("12 hr", { clock, zone: "UTC", signal: ac.signal }),
    /stopped/,
  );
});

Deno.test("a wait for a bad spec rejects with a TimeSpecError", async () => {
  const clock = new VirtualClock(0);
  await assert.rejects(waitUntilSpec("7 hrs", { clock, zone: "UTC" }), TimeSpecError);
  await assert.rejects(waitUntilSpec("31 dy 2 mo", { clock, zone: "UTC" }), /never matches/);
});

Deno.test("run_at calls the function once, when the time arrives", async () => {
  const clock = new VirtualClock(ms("2026-06-01T11:00:00Z"));
  const calls: number[] = [];
  const timer = runAt("12 hr", (at) => calls.push(at), { clock, zone: "UTC" });
  const target = ms("2026-06-01T12:00:00Z") / 1000;
  assert.equal(timer.next, target);
  await clock.advance(3_599_999);
  assert.deepEqual(calls, []);
  await clock.advance(1);
  assert.deepEqual(calls, [target]);
  assert.equal(timer.next, undefined);
  await clock.advance(2 * 86_400_000);
  assert.deepEqual(calls, [target]);
  timer.cancel(); // a no-op now
});

Deno.test("run_at does not call a cancelled function, and cancel can be called twice", async () => {
  const clock = new VirtualClock(0);
  let called = false;
  const timer = runAt("12 hr", () => (called = true), { clock, zone: "UTC" });
  timer.cancel();
  timer.cancel();
  assert.equal(timer.next, undefined);
  await clock.runUntilIdle();
  assert.equal(called, false);
  assert.equal(clock.pendingSleeps, 0);
});

Deno.test("run_at stops when its signal aborts", async () => {
  const clock = new VirtualClock(0);
  const ac = new AbortController();
  let called = false;
  const timer = runAt("12 hr", () => (called = true), { clock, zone: "UTC", signal: ac.signal });
  ac.abort();
  await clock.runUntilIdle();
  assert.equal(called, false);
  assert.equal(timer.next, undefined);
});

Deno.test("run_at survives clock jumps: back does not fire, forward fires at once", async () => {
  const start = ms("2026-06-01T11:00:00Z");
  const clock = new VirtualClock(start);
  const calls: number[] = [];
  runAt("12 hr", (at) => calls.push(at), { clock, zone: "UTC" });
  await clock.set(start - 7 * 86_400_000);
  await clock.advance(6 * 86_400_000);
  assert.deepEqual(calls, []);
  await clock.set(start + 86_400_000);
  assert.deepEqual(calls, [ms("2026-06-01T12:00:00Z") / 1000]);
});

Deno.test("run_at hands what the function throws to onError", async () => {
  const clock = new VirtualClock(0);
  const errors: unknown[] = [];
  runAt("0 hr 1 min", () => Promise.reject(new Error("boom")), {
    clock,
    zone: "UTC",
    onError: (e) => errors.push(e),
  });
  await clock.runUntilIdle();
  assert.equal(errors.length, 1);
  assert.match(String(errors[0]), /boom/);
});

Deno.test("run_at throws a bad spec at once", () => {
  const clock = new VirtualClock(0);
  assert.throws(() => runAt("- fri", () => {}, { clock, zone: "UTC" }), TimeSpecError);
  assert.equal(clock.pendingSleeps, 0);
});
