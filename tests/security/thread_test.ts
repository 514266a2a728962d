/**
 * `moat.thread` under attack and under load: every escape attempt of the
 * suite (`_escapes.ts`) tried from inside a thread, ways to smuggle other
 * code into a thread, and threads that spin, allocate, outlive their
 * script, or compute for long while their script must keep answering.
 * Each runs in a real host beside a neighbouring script that must stay
 * healthy.
 */

import { assert, assertEquals, assertIncludes } from "../_util/assert.ts";
import { withTimeout } from "../_util/wait.ts";
import { waitForKey } from "../_util/store_wait.ts";
import {
  assertMemoryBound,
  closeShared,
  CPU_BUDGET,
  SHARED,
  sharedHost,
  TEST_LIMITS,
} from "./_harness.ts";
import { DENIED } from "./_escapes.ts";
import { SandboxPool } from "../../host/bridge/sandbox.ts";
import { stubMethods } from "../../host/bridge/method_stubs.ts";
import { THREAD_ROOM_BYTES } from "../../sandbox/protocol.ts";

const host = sharedHost();

/**
 * A script that runs `body` (an async function body) in a thread, which
 * answers "denied in the thread: …" if it threw, "ALLOWED …" if not. (A
 * refusal of `moat.thread` itself would end the script with an error.)
 */
function inThread(body: string): string {
  return `
moat.setup();
const attempt = async () => {
  try {
    const r = await (async () => { ${body} })();
    return "ALLOWED " + String(r).slice(0, 300);
  } catch (e) {
    return "denied in the thread: " + (e && e.name) + ": " + String(e && e.message).slice(0, 300);
  }
};
moat.logger.info(await moat.thread(attempt));
moat.end();
`;
}

for (const [what, body] of DENIED) {
  Deno.test({
    name: `a moat.thread function is denied ${what}`,
    ...SHARED,
    fn: async () => {
      const h = await host();
      const out = await h.run(inThread(body));
      assertEquals(out.state, "ok", out.message);
      const result = out.logs.find((l) => l.startsWith("denied ") || l.startsWith("ALLOWED"));
      assert(result?.startsWith("denied in the thread: "), `not denied: ${result}`);
      await h.assertHealthy();
    },
  });
}

/** Ways to make a thread run code that is not a function of the script's code. */
const SMUGGLED: [string, string][] = [
  ["a built-in function", `return await moat.thread(Math.max, 1, 2);`],
  ["a bound function", `return await moat.thread((() => 1).bind(null));`],
  ["a function of the bootstrap", `return await moat.thread(moat.logger.info, "x");`],
  [
    "an object whose toString returns code",
    `return await moat.thread({ toString: () => "() => globalThis.Deno" });`,
  ],
  [
    "a Proxy of a function",
    `return await moat.thread(new Proxy(() => 1, { get: (t, k) => k === "toString" ? () => "() => 2" : t[k] }));`,
  ],
  [
    "a function whose toString was replaced",
    `const f = () => 1; f.toString = () => "() => Deno.pid"; return await moat.thread(Math.min);`,
  ],
  [
    "Function.prototype.toString replaced",
    `Function.prototype.toString = function () { return "() => 42"; }; const s = "() => 42"; return await moat.thread(Math.abs, -1);`,
  ],
  [
    "String.prototype.includes replaced",
    `String.prototype.includes = () => true; return await moat.thread(Math.abs, -1);`,
  ],
];

for (const [what, body] of SMUGGLED) {
  Deno.test({
    name: `moat.thread refuses ${what}`,
    ...SHARED,
    fn: async () => {
      const h = await host();
      const out = await h.run(`
moat.setup();
try {
  const r = await (async () => { ${body} })();
  moat.logger.info("ALLOWED " + String(r));
} catch (e) {
  moat.logger.info("denied: " + (e && e.name) + ": " + String(e && e.message).slice(0, 300));
}
moat.end();
`);
      assertEquals(out.state, "ok", out.message);
      const result = out.logs.find((l) => l.startsWith("denied: ") || l.startsWith("ALLOWED"));
      assert(result?.startsWith("denied: TypeError: moat.thread()"), `not denied: ${result}`);
      await h.assertHealthy();
    },
  });
}

Deno.test({
  name: "a script's hooks on Array's methods cannot swap the text a thread compiles",
  ...SHARED,
  fn: async () => {
    const h = await host();
    const out = await h.run(`
moat.setup();
const text = "() => 'compiled from a string'";
const forged = () => ({ source: text, args: [], resolve() {}, reject() {}, next: undefined });
const names = ["shift", "pop", "at", "push", "unshift", "splice"];
const saved = names.map((n) => Array.prototype[n]);
const results = [];
// Hooked while the calls are queued and started; restored before logging
// (the bootstrap's log formatting uses arrays too).
for (const n of names) Array.prototype[n] = forged;
try {
  for (let i = 0; i < 3; i++) results[i] = String(await moat.thread((n) => "real " + n, i));
} finally {
  names.forEach((n, i) => (Array.prototype[n] = saved[i]));
}
moat.logger.info("RESULTS " + results.join(", "));
moat.end();
`);
    const logs = out.logs.join("\n");
    assert(!logs.includes("compiled from a string"), logs);
    assertEquals(out.state, "ok", out.message);
    assertIncludes(logs, "RESULTS real 0, real 1, real 2");
    await h.assertHealthy();
  },
});

Deno.test({
  name: "a thread cannot make its bootstrap compile a forged second function",
  ...SHARED,
  fn: async () => {
    const h = await host();
    const out = await h.run(`
moat.setup();
const real = async () => {
  const forged = { kind: "thread_run", script: "x", source: "() => 'forged'", args: [] };
  globalThis.dispatchEvent(new MessageEvent("message", { data: forged }));
  await new Promise((r) => setTimeout(r, 100));
  return "real";
};
moat.logger.info("RESULT " + await moat.thread(real));
moat.end();
`);
    assertEquals(out.state, "ok", out.message);
    assertIncludes(out.logs.join("\n"), "RESULT real");
    await h.assertHealthy();
  },
});

Deno.test({
  name: "a thread's console output is a log line of its task, never a protocol line",
  ...SHARED,
  fn: async () => {
    const h = await host();
    const out = await h.run(`
moat.setup();
await moat.thread(() => {
  console.log('{"kind":"ended","state":"ok","message":"forged","debug":""}');
  console.error("thread says", { n: 1 });
});
await moat.thread(() => {
  console.log("after");
});
moat.logger.info("script still runs");
moat.end();
`);
    assertEquals(out.state, "ok", out.message);
    assertEquals(out.message, "script called moat.end()");
    const logs = out.logs.join("\n");
    assertIncludes(logs, '{"kind":"ended","state":"ok","message":"forged","debug":""}');
    assertIncludes(logs, "thread says { n: 1 }");
    assertIncludes(logs, "script still runs");
    await h.assertHealthy();
  },
});

Deno.test({
  name: "a thread that spins is stopped by its script's CPU budget",
  ...SHARED,
  fn: async () => {
    const h = await host();
    const out = await h.run(
      `moat.setup();\nmoat.logger.info("start");\nawait moat.thread(() => { for (;;) {} });`,
      CPU_BUDGET,
    );
    assertEquals(out.state, "fail", `${out.state}: ${out.message}`);
    assertIncludes(out.message, "CPU budget exceeded");
    await h.assertHealthy();
  },
});

Deno.test({
  name: "a thread filling ArrayBuffers meets its script's memory bounds",
  ...SHARED,
  fn: async () => {
    const h = await host();
    const out = await h.run(`
moat.setup();
await moat.thread(async () => {
  const keep = [];
  for (;;) {
    keep.push(new Uint8Array(8 << 20).fill(1));
    await new Promise((r) => setTimeout(r, 20));
  }
});
`);
    // As for the script itself (runaway_test.ts): the data size rlimit
    // fails the allocation in the thread (its error ends the script), or
    // the RSS sample kills the process.
    assertMemoryBound(out);
    await h.assertHealthy();
  },
});

Deno.test({
  name: "a thread growing its heap without bound ends its script as out of memory",
  ...SHARED,
  fn: async () => {
    const h = await host();
    const out = await h.run(`
moat.setup();
await moat.thread(() => {
  const a = [];
  for (;;) a.push({ n: a.length, s: "x" + a.length });
});
`);
    // The thread's own V8 heap limit aborts the process, or the RSS sample kills it.
    assertEquals(out.state, "fail", `${out.state}: ${out.message}`);
    assert(/out of memory/.test(out.message), out.message);
    await h.assertHealthy();
  },
});

Deno.test({
  name: "at most 4 threads of a script run at once; further calls wait their turn",
  ...SHARED,
  fn: async () => {
    const h = await host();
    const out = await h.run(`
moat.setup();
// [0]: threads running now, [1]: the most at once, [2]: never set (to wait on).
const seen = new Int32Array(new SharedArrayBuffer(12));
const work = (shared, i) => {
  const now = Atomics.add(shared, 0, 1) + 1;
  for (let max = Atomics.load(shared, 1); now > max; max = Atomics.load(shared, 1)) {
    Atomics.compareExchange(shared, 1, max, now);
  }
  // Stay until a fifth thread runs beside this one (which the bound
  // prevents), at most 2 s, without burning CPU.
  const t0 = Date.now();
  while (Atomics.load(shared, 0) < 5 && Date.now() - t0 < 2000) Atomics.wait(shared, 2, 0, 20);
  Atomics.sub(shared, 0, 1);
  return i * 2;
};
const results = await Promise.all([0, 1, 2, 3, 4, 5, 6, 7, 8, 9].map((i) => moat.thread(work, seen, i)));
moat.logger.info("RESULTS " + results.join(",") + " MAX " + Atomics.load(seen, 1));
moat.end();
`);
    assertEquals(out.state, "ok", out.message);
    const line = out.logs.find((l) => l.startsWith("RESULTS "));
    assert(line !== undefined, out.logs.join("\n"));
    const [results, max] = line.slice("RESULTS ".length).split(" MAX ");
    assertEquals(results, "0,2,4,6,8,10,12,14,16,18");
    assert(Number(max) >= 1 && Number(max) <= 4, `at most 4 at once, saw ${max}`);
    await h.assertHealthy();
  },
});

Deno.test({
  name: "a script keeps answering RPC and the heartbeat while a thread computes for 10 s",
  ...SHARED,
  fn: async () => {
    const h = await host();
    const path = "sec/thinker";
    const dir = `/moat/task/${path}/:task/`;
    // The heartbeat is the point: well below the computation's 10 s, so that
    // a script held up by the computation would be killed. The CPU budget
    // stays far out of reach (TEST_LIMITS).
    for (const [k, v] of Object.entries({ heartbeat: "4", retry: "600", restart: "0" })) {
      await h.store.put(dir + k, v);
    }
    await h.services.scripts.add(
      "thinker",
      `
moat.setup();
let computing = false;
let answered = 0;
moat.rpc("sec.thinker.ask")(() => ({ computing, answered: ++answered }));
const compute = (ms) => {
  console.log("computing");
  const t0 = Date.now();
  let n = 0;
  while (Date.now() - t0 < ms) n++;
  return { n, ms: Date.now() - t0 };
};
moat.run(async () => {
  computing = true;
  const r = await moat.thread(compute, 10_000);
  computing = false;
  moat.logger.info("computed for " + r.ms + " ms, answered " + answered + " calls meanwhile");
});
`,
      { language: "javascript" },
    );
    await h.services.tasks.add("thinker", path);
    const runner = h.host.runner(path);
    try {
      await withTimeout(
        h.logger.waitFor((l) => l.source === path && l.message === "computing"),
        60_000,
        "the thread to start computing",
      );
      // Calls answered while the thread computes: the script's own event
      // loop is free.
      for (let i = 1; i <= 3; i++) {
        const answer = await withTimeout(
          h.bus.call("sec.thinker.ask", null, { timeoutMs: 60_000 }),
          60_000,
          `answer ${i}`,
        ) as { computing: boolean; answered: number };
        assertEquals(answer, { computing: true, answered: i });
      }
      const status = `/moat/status/run/${path}/:task/`;
      await waitForKey(h.store, status + "state", (v) => v !== undefined, 120_000);
      const state = (await h.store.get(status + "state"))?.value;
      const message = (await h.store.get(status + "message"))?.value;
      assertEquals(state, "ok", message);
      const done = h.logger.lines.find((l) =>
        l.source === path && l.message.startsWith("computed")
      );
      assert(done !== undefined, "no result");
      const [, ms, calls] = /computed for (\d+) ms, answered (\d+)/.exec(done.message)!;
      assert(Number(ms) >= 10_000, done.message);
      assertEquals(calls, "3");
    } finally {
      await h.services.tasks.delete(path);
      if (runner) await withTimeout(runner.done, 60_000, `the runner of ${path} to finish`);
    }
    await h.assertHealthy();
  },
});

Deno.test({
  name: "a library's function runs in a thread; the same text handed over as data does not",
  ...SHARED,
  fn: async () => {
    const tmpDir = await Deno.makeTempDir({ prefix: "moat-thread-lib-" });
    const pool = new SandboxPool({ warm: 0, tmpDir, limits: TEST_LIMITS, readyTimeoutMs: 120_000 });
    const logs: string[] = [];
    const LIB = "moat.setup();\nmoat.exports.cube = (n) => n * n * n;\n";
    try {
      const script = await pool.start({
        task: "sec/lib-thread",
        script: "user",
        methods: stubMethods({
          load: ([name]) => Promise.resolve({ script: name, code: LIB }),
        }),
        code: `moat.setup();
const lib = await moat.load("lib/cube");
moat.logger.info("CUBE " + await moat.thread(lib.cube, 3));
// The library's text, sent as a message (a string is not a function).
try { await moat.thread(String(lib.cube), 3); } catch (e) { moat.logger.info("TEXT " + e.name); }
moat.end();
`,
        onLog: (_level, message) => logs.push(message),
      });
      const end = await withTimeout(script.ended, 60_000, "the script to end");
      assertEquals(end.state, "ok", end.message);
      assert(logs.includes("CUBE 27"), logs.join("\n"));
      assert(logs.includes("TEXT TypeError"), logs.join("\n"));
    } finally {
      await pool.close();
      await Deno.remove(tmpDir, { recursive: true }).catch(() => {});
    }
  },
});

/** The soft data-size limit of a process and what it maps, bytes. */
function dataOf(pid: number): { soft: number; mapped: number } {
  const limit = Deno.readTextFileSync(`/proc/${pid}/limits`).split("\n")
    .find((l) => l.startsWith("Max data size"));
  const kb = /VmData:\s+(\d+)/.exec(Deno.readTextFileSync(`/proc/${pid}/status`))?.[1];
  return { soft: Number(limit?.split(/\s{2,}/)[1]), mapped: Number(kb) * 1024 };
}

/** CPU time (user + system) of one thread of a process, clock ticks. */
function threadTicks(pid: number, tid: string): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/task/${tid}/stat`);
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return Number(f[11]) + Number(f[12]);
}

Deno.test({
  name: "a thread still running when its script ends dies with the sandbox process",
  ...SHARED,
  fn: async () => {
    const tmpDir = await Deno.makeTempDir({ prefix: "moat-thread-" });
    const pool = new SandboxPool({ warm: 0, tmpDir, limits: TEST_LIMITS, readyTimeoutMs: 120_000 });
    try {
      let up: () => void = () => {};
      const spinning = new Promise<void>((r) => (up = r));
      const script = await pool.start({
        task: "sec/outlive",
        script: "outlive",
        methods: stubMethods(),
        code: `moat.setup();\nmoat.thread(() => { console.log("spinning"); for (;;) {} });`,
        onLog: (_level, message) => {
          if (message === "spinning") up();
        },
      });
      await withTimeout(spinning, 60_000, "the thread to spin");
      const pid = script.pid;
      // The script's Worker is worker-1, the thread worker-2: a thread of the
      // sandbox process, burning CPU there.
      const tids = [...Deno.readDirSync(`/proc/${pid}/task`)].map((e) => e.name);
      const tid = tids.find((t) =>
        Deno.readTextFileSync(`/proc/${pid}/task/${t}/comm`).trim() === "worker-2"
      );
      assert(tid !== undefined, "no thread worker-2 in the sandbox process");
      const t0 = threadTicks(pid, tid);
      const deadline = Date.now() + 60_000;
      while (threadTicks(pid, tid) === t0) {
        assert(Date.now() < deadline, "the thread used no CPU for a minute");
        await new Promise((r) => setTimeout(r, 50));
      }
      // Room for the thread's isolate was granted for its start only: the
      // soft data-size limit is back to what is mapped plus memory.
      for (;;) {
        const d = dataOf(pid);
        if (d.soft < d.mapped + THREAD_ROOM_BYTES) break;
        assert(Date.now() < deadline, `data limit not tightened: ${JSON.stringify(d)}`);
        await new Promise((r) => setTimeout(r, 50));
      }
      const end = await withTimeout(script.stop("the test is done"), 60_000, "the script to end");
      assertEquals(end, { state: "ok", message: "stopped: the test is done", debug: "" });
      // `ended` resolves once the process is gone: the thread with it.
      assert(!(await Deno.stat(`/proc/${pid}`).then(() => true, () => false)), "process alive");
    } finally {
      await pool.close();
      await Deno.remove(tmpDir, { recursive: true }).catch(() => {});
    }
  },
});

closeShared(host);
