import assert from "node:assert/strict";
import { VirtualClock } from "./virtual_clock.ts";

Deno.test("a VirtualClock stands still until it is advanced", async () => {
  const clock = new VirtualClock(1000);
  let woke = false;
  const p = clock.sleepUntil(2000).then(() => (woke = true));
  assert.equal(clock.now(), 1000);
  assert.equal(clock.pendingSleeps, 1);
  await clock.advance(999);
  assert.equal(woke, false);
  await clock.advance(1);
  await p;
  assert.equal(woke, true);
  assert.equal(clock.now(), 2000);
  assert.equal(clock.pendingSleeps, 0);
});

Deno.test("a sleep until a past time resolves at once", async () => {
  const clock = new VirtualClock(5000);
  await clock.sleepUntil(4000);
  await clock.sleepUntil(5000);
  assert.equal(clock.pendingSleeps, 0);
});

Deno.test("advance wakes sleepers in time order, each seeing its own due time", async () => {
  const clock = new VirtualClock(0);
  const seen: string[] = [];
  for (const [name, at] of [["c", 300], ["a", 100], ["b", 200], ["a2", 100]] as const) {
    void clock.sleepUntil(at).then(() => seen.push(`${name}@${clock.now()}`));
  }
  await clock.advance(1000);
  assert.deepEqual(seen, ["a@100", "a2@100", "b@200", "c@300"]);
  assert.equal(clock.now(), 1000);
});

Deno.test("continuations run between wake-ups and may sleep again within the same advance", async () => {
  const clock = new VirtualClock(0);
  const seen: number[] = [];
  const loop = async () => {
    for (let i = 0; i < 5; i++) {
      await clock.sleepUntil(clock.now() + 100);
      await Promise.resolve(); // a longer promise chain
      seen.push(clock.now());
    }
  };
  const done = loop();
  await clock.advance(450);
  assert.deepEqual(seen, [100, 200, 300, 400]);
  await clock.advance(50);
  await done;
  assert.deepEqual(seen, [100, 200, 300, 400, 500]);
});

Deno.test("set jumps forward at once and wakes every due sleeper in order", async () => {
  const clock = new VirtualClock(0);
  const seen: string[] = [];
  void clock.sleepUntil(200).then(() => seen.push(`b@${clock.now()}`));
  void clock.sleepUntil(100).then(() => seen.push(`a@${clock.now()}`));
  void clock.sleepUntil(900).then(() => seen.push(`c@${clock.now()}`));
  await clock.set(500);
  assert.deepEqual(seen, ["a@500", "b@500"]);
  assert.equal(clock.pendingSleeps, 1);
});

Deno.test("set backwards wakes nobody, and the sleeper still wakes at its time", async () => {
  const clock = new VirtualClock(1000);
  let wokeAt: number | undefined;
  void clock.sleepUntil(1500).then(() => (wokeAt = clock.now()));
  await clock.set(200);
  assert.equal(wokeAt, undefined);
  assert.equal(clock.now(), 200);
  await clock.advance(1299);
  assert.equal(wokeAt, undefined);
  await clock.advance(1);
  assert.equal(wokeAt, 1500);
});

Deno.test("an aborted sleep rejects with the reason and leaves the queue", async () => {
  const clock = new VirtualClock(0);
  const ac = new AbortController();
  const p = clock.sleepUntil(100, ac.signal);
  assert.equal(clock.pendingSleeps, 1);
  ac.abort(new Error("stop"));
  await assert.rejects(p, /stop/);
  assert.equal(clock.pendingSleeps, 0);
  await assert.rejects(clock.sleepUntil(100, ac.signal), /stop/);
});

Deno.test("advanceToNext jumps to the earliest sleep and reports the time", async () => {
  const clock = new VirtualClock(0);
  void clock.sleepUntil(70);
  void clock.sleepUntil(30);
  assert.equal(clock.nextDue, 30);
  assert.equal(await clock.advanceToNext(), 30);
  assert.equal(await clock.advanceToNext(), 70);
  assert.equal(await clock.advanceToNext(), undefined);
});

Deno.test("runUntilIdle runs every sleep, but not past maxMs", async () => {
  const clock = new VirtualClock(0);
  const seen: number[] = [];
  void clock.sleepUntil(10).then(() => seen.push(10));
  void clock.sleepUntil(10_000).then(() => seen.push(10_000));
  assert.equal(await clock.runUntilIdle({ maxMs: 5000 }), 10);
  assert.deepEqual(seen, [10]);
  assert.equal(await clock.runUntilIdle(), 10_000);
  assert.deepEqual(seen, [10, 10_000]);
});

Deno.test("runUntilIdle stops a sleeper that re-arms forever", async () => {
  const clock = new VirtualClock(0);
  const ac = new AbortController();
  const forever = async () => {
    for (;;) await clock.sleepUntil(clock.now() + 1, ac.signal);
  };
  const done = forever().catch(() => {});
  await assert.rejects(clock.runUntilIdle({ maxWakeups: 50 }), /still busy after 50 wake-ups/);
  ac.abort();
  await done;
});

Deno.test("a VirtualClock refuses a non-finite start and a negative advance", async () => {
  assert.throws(() => new VirtualClock(Number.NaN), /Cannot start a VirtualClock at "NaN"/);
  await assert.rejects(new VirtualClock(0).advance(-1), /Cannot advance a VirtualClock by "-1"/);
});
