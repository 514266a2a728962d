import assert from "node:assert/strict";
import { readLimits, TokenBucket } from "./limits.ts";
import { ScriptGuard } from "./_watchdog.ts";
import { DEFAULT_LIMITS } from "./limits.ts";

Deno.test("readLimits takes /config/run, lets the task win, and ignores bad values", () => {
  const warnings: string[] = [];
  const got = readLimits(
    { cpu: "2", memory: "256", heartbeat: "zero" },
    { cpu: "0.5", call_rate: "10", memory: "1", ttl: "30" },
    (m) => warnings.push(m),
  );
  assert.deepEqual(got, { cpu: 0.5, memory: 256, callRate: 10 });
  assert.equal(warnings.length, 2);
  assert.match(warnings[0]!, /heartbeat = "zero"/);
  assert.match(warnings[1]!, /task memory = "1": not a number >= 32/);
});

Deno.test("a token bucket allows its rate times its burst, then refills with time", () => {
  let now = 0;
  const b = new TokenBucket(10, { burst: 2, now: () => now });
  let n = 0;
  while (b.take()) n++;
  assert.equal(n, 20);
  now += 500;
  n = 0;
  while (b.take()) n++;
  assert.equal(n, 5);
});

function guard(limits = {}) {
  const kills: string[] = [];
  const pings: number[] = [];
  const g = new ScriptGuard(
    { ...DEFAULT_LIMITS, cpu: 1, cpuWindow: 2, heartbeat: 3, memory: 100, ...limits },
    { kill: (r) => kills.push(r), ping: (id) => pings.push(id) },
    { cpuMs: 500, rssBytes: 0 },
    0,
  );
  return { g, kills, pings };
}

Deno.test("the guard kills once the CPU used within the window passes the budget", () => {
  const { g, kills } = guard();
  // Half a core for 10 s: 0.5 s per 1 s, never more than 1 s per 2 s window.
  for (let t = 250; t <= 10_000; t += 250) {
    g.tick(t, { cpuMs: 500 + t / 2, rssBytes: 0 }, false);
    g.pong(t);
  }
  assert.deepEqual(kills, []);
  // Then a full core: passes 1 s per 2 s soon after.
  for (let t = 10_250; t <= 14_000 && kills.length === 0; t += 250) {
    g.tick(t, { cpuMs: 5500 + (t - 10_000), rssBytes: 0 }, false);
    g.pong(t);
  }
  assert.equal(kills.length, 1);
  assert.match(kills[0]!, /CPU budget exceeded: .* \(limit: cpu = 1 s per cpu_window = 2 s\)/);
});

Deno.test("the guard kills on memory and on a silent heartbeat, but not after a host stall", () => {
  const m = guard();
  m.g.tick(250, { cpuMs: 500, rssBytes: 101 * 2 ** 20 }, false);
  assert.match(m.kills[0]!, /^out of memory: the sandbox process used 101 MiB/);

  const h = guard();
  for (let t = 250; t <= 3000; t += 250) h.g.tick(t, { cpuMs: 500, rssBytes: 0 }, false);
  assert.deepEqual(h.kills, []);
  assert.ok(h.pings.length >= 3);
  h.g.tick(3250, { cpuMs: 500, rssBytes: 0 }, false);
  assert.match(h.kills[0]!, /stopped answering the heartbeat/);

  const s = guard();
  s.g.tick(10_000, { cpuMs: 500, rssBytes: 0 }, true); // the host was stalled for 10 s
  assert.deepEqual(s.kills, []);
});
