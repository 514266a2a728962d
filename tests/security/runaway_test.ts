/**
 * Starvation and crash attempts: scripts that spin, block, flood the
 * bridge, or allocate without bound, each a real script run by a real host.
 * Each must be stopped and recorded, and the host and a neighbouring script
 * must stay healthy.
 *
 * Each attempt sets on its task the one limit it is about (CPU_BUDGET,
 * HEARTBEAT, memory); every other limit is far out of reach (TEST_LIMITS),
 * so that a busy machine cannot make another limit fire first.
 */

import { assert, assertEquals, assertIncludes } from "../_util/assert.ts";
import { withTimeout } from "../_util/wait.ts";
import {
  assertMemoryBound,
  closeShared,
  CPU_BUDGET,
  HEARTBEAT,
  SHARED,
  sharedHost,
} from "./_harness.ts";

const host = sharedHost();

/**
 * Attempts that must end `fail` with a message matching `why`, with the
 * task keys that set the limit they are about.
 */
const KILLED: [string, string, RegExp, Record<string, string>][] = [
  ["a busy loop", `moat.setup();\nwhile (true) {}`, /CPU budget exceeded/, CPU_BUDGET],
  [
    "a catastrophic regular expression",
    `moat.setup();\n/^(a+)+$/.test("a".repeat(60) + "b");`,
    /CPU budget exceeded/,
    CPU_BUDGET,
  ],
  [
    "a microtask loop",
    `moat.setup();\nconst f = () => Promise.resolve().then(f);\nf();`,
    // Each turn's promise waits for the next one: the chain grows as it
    // spins, so the heap may fill before the second of CPU is used.
    /CPU budget exceeded|out of memory/,
    CPU_BUDGET,
  ],
  [
    "an async loop that never yields to timers",
    `moat.setup();\nfor (;;) await null;`,
    /CPU budget exceeded/,
    CPU_BUDGET,
  ],
  [
    "a timer that spins each time it fires",
    `moat.setup();\nsetInterval(() => { const t = Date.now(); while (Date.now() - t < 400) {} }, 0);`,
    /CPU budget exceeded/,
    CPU_BUDGET,
  ],
  [
    "blocking in Atomics.wait (no CPU, no answer)",
    `moat.setup();\nAtomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0);`,
    /stopped answering the heartbeat/,
    HEARTBEAT,
  ],
  [
    "spinning in on_stop after a normal end",
    `moat.setup();\nmoat.on_stop(() => { while (true) {} });\nmoat.end();`,
    /CPU budget exceeded/,
    CPU_BUDGET,
  ],
  [
    "a log flood",
    `moat.setup();\nfor (;;) console.log("flood");`,
    // Lines the pipe cannot take yet pile up in the sandbox process, and
    // how fast they come depends on the machine: the flood meets the
    // message rate, the CPU budget or the memory bound, never the clock.
    /bridge flood|CPU budget exceeded|out of memory/,
    CPU_BUDGET,
  ],
  [
    "a flood of calls it never awaits",
    `moat.setup();\nfor (;;) { try { moat.time_at("12 hr").catch(() => {}); } catch {} }`,
    // The message rate, or the CPU budget where the machine is too busy for that rate.
    /bridge flood|CPU budget exceeded/,
    CPU_BUDGET,
  ],
  [
    "growing the heap without bound",
    `moat.setup();\nconst a = [];\nfor (;;) a.push({ n: a.length, s: "x" + a.length });`,
    /out of memory/,
    // The pool's memory bound; its CPU budget and heartbeat are out of reach.
    {},
  ],
  [
    "growing a Map without bound",
    `moat.setup();\nconst m = new Map();\nfor (let i = 0; ; i++) m.set(i, [i, i + 1, i + 2]);`,
    /out of memory/,
    {},
  ],
];

for (const [what, code, why, keys] of KILLED) {
  Deno.test({
    name: `a script is stopped and recorded as fail for ${what}`,
    ...SHARED,
    fn: async () => {
      const h = await host();
      const out = await h.run(code, keys);
      assertEquals(out.state, "fail", `${out.state}: ${out.message}`);
      assert(why.test(out.message), out.message);
      // The neighbour kept answering (how quickly: deno task bench).
      await h.assertHealthy();
    },
  });
}

/** Attempts the script survives, with the abuse refused. */
Deno.test({
  name: "calls beyond the task's call_rate are refused with code limit",
  ...SHARED,
  fn: async () => {
    const h = await host();
    const out = await h.run(
      `
moat.setup();
let ok = 0, limited = 0;
for (let i = 0; i < 600; i++) {
  try { await moat.time_at("12 hr"); ok++; } catch (e) { if (e.code === "limit") limited++; }
}
moat.logger.info("RATE " + ok + " " + limited);
moat.end();
`,
      { call_rate: "50" },
    );
    assertEquals(out.state, "ok", out.message);
    const [ok, limited] = out.logs.find((l) => l.startsWith("RATE "))!.split(" ").slice(1)
      .map(Number);
    assert(limited! > 0 && ok! >= 50, `ok ${ok}, limited ${limited}`);
    await h.assertHealthy();
  },
});

Deno.test({
  name: "calls beyond calls_in_flight are refused at the call site",
  ...SHARED,
  fn: async () => {
    const h = await host();
    const out = await h.run(
      `
moat.setup();
const ps = [];
let refused = "";
try { for (let i = 0; i < 100; i++) ps.push(moat.wait("12 hr").catch(() => {})); } catch (e) { refused = e.message; }
moat.logger.info("INFLIGHT " + ps.length + " " + refused);
moat.end();
`,
      { calls_in_flight: "10" },
    );
    assertEquals(out.state, "ok", out.message);
    assertIncludes(out.logs.join("\n"), "INFLIGHT 10 too many calls in flight (limit 10)");
    await h.assertHealthy();
  },
});

Deno.test({
  name: "log output beyond log_rate and log_volume is dropped and counted",
  ...SHARED,
  fn: async () => {
    const h = await host();
    const out = await h.run(
      `
moat.setup();
for (let i = 0; i < 200; i++) console.log("line " + i + " " + "y".repeat(2000));
moat.end();
`,
      { log_rate: "20", log_volume: "16" },
    );
    assertEquals(out.state, "ok", out.message);
    const lines = out.logs.filter((l) => l.startsWith("line "));
    assert(lines.length < 20, `${lines.length} lines got through`);
    assert(out.logs.some((l) => /log lines? of the script dropped/.test(l)), "no drop notice");
    await h.assertHealthy();
  },
});

Deno.test({
  name: "a message too large for the bridge is refused in the script",
  ...SHARED,
  fn: async () => {
    const h = await host();
    const out = await h.run(`
moat.setup();
try { await moat.time_at("x".repeat(2 * 1024 * 1024)); moat.logger.info("ALLOWED"); }
catch (e) { moat.logger.info("denied: " + e.name + ": " + e.message); }
moat.end();
`);
    assertEquals(out.state, "ok", out.message);
    assertIncludes(out.logs.join("\n"), "denied: RangeError");
    await h.assertHealthy();
  },
});

Deno.test({
  name:
    "ArrayBuffers filled outside the V8 heap are refused (data size rlimit) or the script is killed",
  ...SHARED,
  fn: async () => {
    const h = await host();
    const out = await h.run(
      `moat.setup();\nconst keep = [];\nfor (;;) { keep.push(new Uint8Array(8 << 20).fill(1)); await new Promise((r) => setTimeout(r, 20)); }`,
    );
    assertMemoryBound(out);
    await h.assertHealthy();
  },
});

Deno.test({
  name: "one huge ArrayBuffer is refused at once (data size rlimit) or the script is killed",
  ...SHARED,
  fn: async () => {
    const h = await host();
    const out = await h.run(`
moat.setup();
const b = new Uint8Array(6 * 1024 * 1024 * 1024);
b.fill(1);
moat.end();
`);
    assertMemoryBound(out, /allocation failed|Invalid typed array length/i);
    await h.assertHealthy();
  },
});

Deno.test({
  name: "unbounded recursion ends only the script, with error",
  ...SHARED,
  fn: async () => {
    const h = await host();
    const out = await h.run(`moat.setup();\nconst f = (n) => f(n + 1) + 1;\nf(0);`);
    assertEquals(out.state, "error");
    assertIncludes(out.message, "call stack");
    await h.assertHealthy();
  },
});

Deno.test({
  name: "a per-task cpu budget applies, is named in the message, and the task is retried",
  ...SHARED,
  fn: async () => {
    const h = await host();
    const path = "sec/spinner";
    const dir = `/moat/task/${path}/:task/`;
    await h.store.put(dir + "cpu", "0.5");
    // A window long enough that half a second of CPU counts however busy the machine is.
    await h.store.put(dir + "cpu_window", "3600");
    await h.store.put(dir + "retry", "0.2");
    await h.services.scripts.add("spinner", `moat.setup();\nwhile (true) {}`, {
      language: "javascript",
    });
    await h.services.tasks.add("spinner", path);
    const retried = (n: number) =>
      h.logger.lines.filter((l) => l.source === path && /ended \(fail\); retry in/.test(l.message))
        .length >= n;
    await withTimeout(h.logger.waitFor(() => retried(2)), 120_000, "two retries");
    const msg = (await h.store.get(`/moat/status/run/${path}/:task/message`))?.value ?? "";
    assertIncludes(msg, "limit: cpu = 0.5 s");
    const runner = h.host.runner(path);
    await h.services.tasks.delete(path);
    await withTimeout(runner!.done, 60_000, "the spinner's runner to finish");
    await h.assertHealthy();
  },
});

closeShared(host);
