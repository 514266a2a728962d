import assert from "node:assert/strict";
import { withTimeout } from "../testing/wait.ts";
import { busContract } from "./bus_contract.ts";
import { checkPattern, RpcTimeoutError, topicMatches } from "./bus.ts";
import { LocalBus } from "./local_bus.ts";

busContract(
  "LocalBus",
  (options) => Promise.resolve({ bus: new LocalBus(options), cleanup: () => Promise.resolve() }),
);

Deno.test("topicMatches follows RabbitMQ's topic exchange rules", () => {
  const cases: [string, string, boolean][] = [
    ["a.b", "a.b", true],
    ["a.b", "a.b.c", false],
    ["*", "a", true],
    ["*", "a.b", false],
    ["#", "a.b.c", true],
    ["a.#", "a", true],
    ["#.a", "a", true],
    ["a.#.b", "a.b", true],
    ["a.#.b", "a.x.y.b", true],
    ["a.#.b", "a.x.y.c", false],
    ["#.#", "a", true],
    ["*.#", "a", true],
    ["#.*", "a", true],
    ["*.*", "a", false],
    ["a.*.#", "a", false],
    ["a.*.#", "a.b.c.d", true],
  ];
  for (const [pattern, topic, want] of cases) {
    checkPattern(pattern);
    assert.equal(topicMatches(pattern, topic), want, `"${pattern}" vs "${topic}"`);
  }
});

// How fast: bus.topic_match_40_hashes in deno task bench. A matcher that
// backtracks would not end here at all.
Deno.test("topicMatches answers patterns with many #", () => {
  const pattern = Array.from({ length: 40 }, () => "#").join(".") + ".z";
  const topic = Array.from({ length: 60 }, () => "a").join(".");
  assert.equal(topicMatches(pattern, topic), false);
  assert.equal(topicMatches(pattern, topic + ".z"), true);
});

Deno.test("LocalBus drops waiting requests when the last server of a name stops", async () => {
  const bus = new LocalBus();
  try {
    const started = Promise.withResolvers<void>();
    const reg = await bus.serve("busy", () => {
      started.resolve();
      return new Promise(() => {});
    }, { maxInFlight: 1 });
    const first = bus.call("busy", 1, { timeoutMs: 5_000 }).catch((e) => e);
    await withTimeout(started.promise, 60_000, "the first request to start");
    const waiting = bus.call("busy", 2, { timeoutMs: 300 }).catch((e) => e);
    await reg.close();
    assert.ok((await first) instanceof Error);
    assert.ok((await waiting) instanceof RpcTimeoutError);
  } finally {
    await bus.close();
  }
});

Deno.test("LocalBus drops alerts beyond maxQueuedAlerts for a slow subscriber and logs it", async () => {
  const logged: string[] = [];
  const bus = new LocalBus({ maxQueuedAlerts: 2, log: (_l, m) => logged.push(m) });
  try {
    const gate = Promise.withResolvers<void>();
    const seen: unknown[] = [];
    const all = Promise.withResolvers<void>();
    await bus.onAlert("t", async (_t, d) => {
      seen.push(d);
      await gate.promise;
      if (seen.length === 3) all.resolve();
    });
    for (let i = 0; i < 5; i++) await bus.alert("t", i);
    gate.resolve();
    await withTimeout(all.promise, 60_000, "three alerts");
    assert.deepEqual(seen, [0, 1, 2]);
    assert.ok(logged.some((m) => m.includes('dropped alert "t"')), logged.join("\n"));
  } finally {
    await bus.close();
  }
});
