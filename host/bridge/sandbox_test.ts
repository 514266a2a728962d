/**
 * Tests of the sandbox bridge. Each test runs real sandbox processes.
 */

import { stubMethods as makeStubs } from "./method_stubs.ts";
import assert from "node:assert/strict";
import type { LogLevel } from "../../sandbox/protocol.ts";
import {
  BridgeError,
  type MethodTable,
  SandboxPool,
  type ScriptEnd,
  type ScriptHandle,
  type StartOptions,
} from "./sandbox.ts";

/** Reject loudly when `p` has not settled within `ms`. */
async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Limits of every pool here: the CPU budget and the heartbeat far out of
 * reach, so that a busy machine cannot end a script by them first (no test
 * here is about them; tests/security/runaway_test.ts is).
 */
const FAR = { cpu: 10_000, cpuWindow: 60, heartbeat: 3_600 };

/** A promise with its resolver, for awaiting events from handlers. */
function signal<T = void>(): { promise: Promise<T>; resolve(v: T): void } {
  let resolve: (v: T) => void = () => {};
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

const stubMethods: MethodTable = makeStubs({
  time_at: () => Promise.resolve(1_700_000_000),
  wait: () => Promise.resolve(1_700_000_000),
  run_at: () => Promise.resolve({ due: 1_700_000_000, late: false }),
  fired: () => Promise.resolve(null),
});

interface Run {
  pool: SandboxPool;
  script: ScriptHandle;
  logs: [LogLevel, string][];
  /** Resolves on the first log line containing `text`. */
  logged(text: string): Promise<void>;
}

async function start(
  code: string,
  options: Partial<StartOptions> & { pool?: SandboxPool } = {},
): Promise<Run> {
  const pool = options.pool ?? new SandboxPool({ warm: 0, limits: FAR });
  const logs: [LogLevel, string][] = [];
  const waiters: { text: string; resolve(): void }[] = [];
  const script = await pool.start({
    task: "test/task",
    script: "test/script",
    methods: stubMethods,
    ...options,
    code,
    onLog: (level, message) => {
      logs.push([level, message]);
      for (const w of waiters) if (message.includes(w.text)) w.resolve();
    },
  });
  return {
    pool,
    script,
    logs,
    logged(text: string) {
      if (logs.some(([, m]) => m.includes(text))) return Promise.resolve();
      const s = signal();
      waiters.push({ text, resolve: s.resolve });
      return s.promise;
    },
  };
}

/** Run `code` to its end (bounded) and close the pool. */
async function run(
  code: string,
  options: Partial<StartOptions> = {},
): Promise<{ end: ScriptEnd; logs: [LogLevel, string][]; messages: string[] }> {
  const r = await start(code, options);
  try {
    const end = await within(r.script.ended, 60_000, "script end");
    return { end, logs: r.logs, messages: r.logs.map(([, m]) => m) };
  } finally {
    await r.pool.close();
  }
}

function pidAlive(pid: number): boolean {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    // A zombie (state Z) is gone for our purposes; the host reaps it.
    return !/^\d+ \(.*\) Z/.test(stat);
  } catch {
    return false;
  }
}

Deno.test("a script that logs and ends ends ok, and its console output reaches onLog", async () => {
  const { end, logs } = await run(`
    moat.setup();
    console.log("hello", { a: 1 });
    console.error("oops");
    moat.logger.warn("careful", 42);
    moat.end();
  `);
  assert.deepEqual(end, { state: "ok", message: "script called moat.end()", debug: "" });
  assert.deepEqual(logs, [
    ["info", "hello { a: 1 }"],
    ["error", "oops"],
    ["warn", "careful 42"],
  ]);
});

Deno.test("a script that throws at top level ends with error and the error's message", async () => {
  const { end } = await run(`moat.setup(); throw new RangeError("porch light is broken");`);
  assert.equal(end.state, "error");
  assert.equal(end.message, "porch light is broken");
  assert.match(end.debug, /RangeError: porch light is broken/);
  assert.match(end.debug, /moat-script:test%2Fscript/);
});

Deno.test("a script with a syntax error ends with error", async () => {
  const { end } = await run(`moat.setup(); let = ;`);
  assert.equal(end.state, "error");
  assert.match(end.message, /Unexpected/);
});

Deno.test("a script that never calls setup ends with error", async () => {
  const { end } = await run(`const x = 1;`);
  assert.deepEqual(end, { state: "error", message: "script did not call moat.setup()", debug: "" });
});

Deno.test("calling anything before setup ends the script with error", async () => {
  const { end } = await run(`moat.on_start(() => {}); moat.setup();`);
  assert.equal(end.state, "error");
  assert.equal(end.message, "moat.on_start() called before moat.setup()");
  const logger = await run(`try { moat.logger.info("x"); } catch {} moat.setup(); moat.end();`);
  assert.equal(logger.end.state, "error", "catching the error does not save the script");
  assert.equal(logger.end.message, "moat.logger.info() called before moat.setup()");
});

Deno.test("calling setup twice ends the script with error", async () => {
  const { end } = await run(`moat.setup(); moat.setup(); moat.end();`);
  assert.equal(end.state, "error");
  assert.equal(end.message, "moat.setup() called more than once");
});

Deno.test("calling run twice ends the script with error", async () => {
  const { end } = await run(`moat.setup(); moat.run(async () => {}); moat.run(async () => {});`);
  assert.equal(end.state, "error");
  assert.equal(end.message, "moat.run() called more than once");
});

Deno.test("end takes no parameters", async () => {
  const { end } = await run(`moat.setup(); moat.end("now");`);
  assert.equal(end.state, "error");
  assert.equal(end.message, "moat.end() takes no parameters");
});

Deno.test("an unhandled rejected promise ends the script with error", async () => {
  const { end } = await run(`
    moat.setup();
    Promise.reject(new TypeError("nobody caught me"));
    moat.run(() => new Promise(() => {}));
  `);
  assert.equal(end.state, "error");
  assert.equal(end.message, "nobody caught me");
});

Deno.test("an exception in a timer callback ends the script with error", async () => {
  const { end } = await run(`
    moat.setup();
    setTimeout(() => { throw new Error("from a timer"); }, 1);
  `);
  assert.equal(end.state, "error");
  assert.equal(end.message, "from a timer");
});

Deno.test("on_start functions run in order, may add more, then run; its return ends ok", async () => {
  const { end, messages } = await run(`
    moat.setup();
    moat.on_start(async () => {
      console.log("start 1");
      moat.on_start(() => console.log("start 3 (added by 1)"));
    });
    moat.on_start(() => console.log("start 2"));
    moat.run(async () => { console.log("run"); });
    console.log("top level done");
  `);
  assert.deepEqual(end, { state: "ok", message: "run function returned", debug: "" });
  assert.deepEqual(messages, [
    "top level done",
    "start 1",
    "start 2",
    "start 3 (added by 1)",
    "run",
  ]);
});

Deno.test("top-level await works", async () => {
  const { end, messages } = await run(`
    moat.setup();
    const t = await moat.time_at("12 hr");
    console.log("t", t);
    moat.end();
  `);
  assert.equal(end.state, "ok");
  assert.deepEqual(messages, ["t 1700000000"]);
});

Deno.test("stop() resolves stopping, runs on_stop in reverse order, and ends ok", async () => {
  const r = await start(`
    moat.setup();
    moat.on_stop(() => console.log("stop 1"));
    moat.on_stop(async () => { await null; console.log("stop 2"); });
    moat.on_stop(() => { throw new Error("stop 3 fails"); });
    moat.stopping.then(() => console.log("stopping resolved"));
    console.log("running");
  `);
  try {
    await within(r.logged("running"), 60_000, "script running");
    const end = await within(r.script.stop("task deleted"), 60_000, "stop");
    assert.deepEqual(end, { state: "ok", message: "stopped: task deleted", debug: "" });
    assert.deepEqual(r.logs.map(([, m]) => m), [
      "running",
      "stopping resolved",
      "on_stop function failed: stop 3 fails",
      "stop 2",
      "stop 1",
    ]);
    assert.equal(pidAlive(r.script.pid), false);
  } finally {
    await r.pool.close();
  }
});

Deno.test("on_stop functions are bounded in total time", async () => {
  const r = await start(
    `moat.setup(); moat.on_stop(() => new Promise(() => {})); console.log("running");`,
    // The grace time after which the host kills it is far out of reach.
    { onStopBudgetMs: 100, stopGraceMs: 600_000 },
  );
  try {
    await within(r.logged("running"), 60_000, "script running");
    const end = await within(r.script.stop("bye"), 60_000, "stop");
    assert.equal(end.state, "ok");
    assert.ok(r.logs.some(([l, m]) => l === "warn" && /within 100 ms/.test(m)));
  } finally {
    await r.pool.close();
  }
});

Deno.test("a script that ignores stop is killed after the grace time and fails", async () => {
  const r = await start(
    `moat.setup(); moat.on_stop(() => { while (true) {} }); console.log("running");`,
    { stopGraceMs: 300 },
  );
  try {
    await within(r.logged("running"), 60_000, "script running");
    const end = await within(r.script.stop("bye"), 60_000, "stop");
    assert.equal(end.state, "fail");
    assert.match(end.message, /did not end within 300 ms/);
    assert.equal(pidAlive(r.script.pid), false);
  } finally {
    await r.pool.close();
  }
});

Deno.test("kill() ends a spinning script and its process is gone", async () => {
  const r = await start(`moat.setup(); console.log("spinning"); while (true) {}`);
  try {
    await within(r.logged("spinning"), 60_000, "script spinning");
    const pid = r.script.pid;
    assert.equal(pidAlive(pid), true);
    const end = await within(r.script.kill("CPU budget exceeded"), 60_000, "kill");
    assert.deepEqual(end, { state: "fail", message: "CPU budget exceeded", debug: "" });
    assert.equal(pidAlive(pid), false);
  } finally {
    await r.pool.close();
  }
});

Deno.test("moat.time_at is answered by the handler with validated arguments", async () => {
  const seen: unknown[] = [];
  const methods: MethodTable = {
    ...stubMethods,
    time_at: (args, ctx) => {
      seen.push(args, ctx.task);
      return Promise.resolve(1234);
    },
  };
  const { end, messages } = await run(
    `
    moat.setup();
    console.log(await moat.time_at(["12", "hr", 10, "min"], { now: 5, current: null }));
    console.log(await moat.time_at("12 hr"));
    moat.end();
  `,
    { methods },
  );
  assert.equal(end.state, "ok");
  assert.deepEqual(messages, ["1234", "1234"]);
  assert.deepEqual(seen, [
    [["12", "hr", 10, "min"], { now: 5, current: null }],
    "test/task",
    ["12 hr", {}],
    "test/task",
  ]);
});

Deno.test("bad arguments are refused with bad_args and reach the script as a MoatError", async () => {
  let called = false;
  const methods: MethodTable = {
    ...stubMethods,
    time_at: () => {
      called = true;
      return Promise.resolve(1);
    },
  };
  const { end, messages } = await run(
    `
    moat.setup();
    try { await moat.time_at(12); } catch (e) { console.log(e.name, e.code, e.message); }
    try { await moat.time_at("x", { soon: true }); } catch (e) { console.log(e.code, e.message); }
    moat.end();
  `,
    { methods },
  );
  assert.equal(end.state, "ok");
  assert.equal(called, false);
  assert.deepEqual(messages, [
    "MoatError bad_args Cannot call time_at: time spec must be a string or an array, got 12",
    'bad_args Cannot call time_at: unknown option "soon"',
  ]);
});

Deno.test("a handler's own error reaches the script as code and message only", async () => {
  const internal: unknown[] = [];
  const methods: MethodTable = {
    ...stubMethods,
    time_at: () => {
      throw new Error("etcd at 10.0.0.5:2379 said no (/work/main/secret/path.ts)");
    },
    wait: () => Promise.reject(new BridgeError("time_spec", 'Cannot parse time spec "7 hrs"')),
  };
  const { end, messages } = await run(
    `
    moat.setup();
    for (const m of ["time_at", "wait"]) {
      try { await moat[m]("7 hrs"); }
      catch (e) { console.log(JSON.stringify({ code: e.code, message: e.message, stack: e.stack })); }
    }
    moat.end();
  `,
    { methods, onInternalError: (err) => internal.push(err) },
  );
  assert.equal(end.state, "ok");
  const [a, b] = messages.map((m) => JSON.parse(m));
  assert.equal(a.code, "internal");
  assert.equal(a.message, "internal error");
  assert.equal(b.code, "time_spec");
  assert.equal(b.message, 'Cannot parse time spec "7 hrs"');
  for (const text of messages) {
    assert.doesNotMatch(text, /10\.0\.0\.5|secret|host\/bridge|sandbox_test|file:\/\//);
  }
  assert.equal(internal.length, 1, "the unexpected error is reported on the host");
});

Deno.test("a hostile sandbox's malformed and forbidden messages are refused without the host throwing", async () => {
  const aborted = signal<unknown>();
  const methods: MethodTable = {
    ...stubMethods,
    time_at: () => Promise.resolve(99),
    wait: (_args, { signal: s }) =>
      new Promise((_, reject) => {
        s.addEventListener("abort", () => {
          aborted.resolve(s.reason);
          reject(s.reason);
        });
      }),
  };
  const pool = new SandboxPool({
    warm: 0,
    limits: FAR,
    processModule: new URL("./testdata/rogue_process.ts", import.meta.url),
  });
  try {
    const r = await start("", { pool, methods });
    const end = await within(r.script.ended, 60_000, "rogue end");
    assert.deepEqual(end, { state: "ok", message: "rogue done", debug: "" });
    const report = r.logs.find(([l, m]) => l === "info" && m.startsWith("{"));
    assert.ok(report, "the rogue reports the replies it got");
    const replies = JSON.parse(report[1]);
    const code = (id: number) => replies[id]?.code;
    for (const id of [1, 2, 3, 4, 5]) assert.equal(code(id), "unknown_method", `call ${id}`);
    assert.equal(code(6), "bad_args");
    assert.equal(code(7), "bad_args");
    assert.deepEqual(replies[8], { value: 99 });
    assert.equal(code(9), "bad_message");
    assert.equal(code(10), "cancelled");
    assert.equal((await within(aborted.promise, 60_000, "abort") as BridgeError).code, "cancelled");
    const warnings = r.logs.filter(([l]) => l === "warn").map(([, m]) => m).join("\n");
    assert.match(warnings, /sandbox stdout: this is not JSON/);
    assert.match(warnings, /unknown message kind "zzz"/);
    assert.match(warnings, /log with unknown level "shout"/);
    assert.match(warnings, /call without a valid id/);
    assert.match(warnings, /ended with unknown state "great"/);
    assert.match(warnings, /a line of \d+ bytes was dropped/);
  } finally {
    await pool.close();
  }
});

Deno.test("cancelling a run_at aborts the host's wait and the callback never runs", async () => {
  const aborted = signal<unknown>();
  const methods: MethodTable = {
    ...stubMethods,
    run_at: (_args, { signal: s }) =>
      new Promise((_, reject) =>
        s.addEventListener("abort", () => {
          aborted.resolve(s.reason);
          reject(s.reason);
        })
      ),
  };
  const r = await start(
    `
    moat.setup();
    const timer = moat.run_at("12 hr", () => console.log("fired"));
    moat.on_start(async () => { timer.cancel(); console.log("cancelled"); });
  `,
    { methods },
  );
  try {
    const reason = await within(aborted.promise, 60_000, "abort");
    assert.equal((reason as BridgeError).code, "cancelled");
    await within(r.logged("cancelled"), 60_000, "log");
    assert.equal((await within(r.script.stop("done"), 60_000, "stop")).state, "ok");
    assert.ok(!r.logs.some(([, m]) => m === "fired"));
  } finally {
    await r.pool.close();
  }
});

Deno.test("run_at calls its function when the wait returns", async () => {
  const { end, messages } = await run(`
    moat.setup();
    moat.run_at("12 hr", (f) => { console.log("fired " + JSON.stringify(f)); moat.end(); });
  `);
  assert.equal(end.state, "ok");
  assert.deepEqual(messages, ['fired {"due":1700000000,"late":false}']);
});

Deno.test("run_at with an id reports its firing done once the function returned", async () => {
  const done = signal<unknown[]>();
  const methods: MethodTable = {
    ...stubMethods,
    run_at: () => Promise.resolve({ due: 1_700_000_000, late: true }),
    fired: (args) => {
      done.resolve(args);
      return Promise.resolve(null);
    },
  };
  const r = await start(
    `
    moat.setup();
    moat.run_at("12 hr", async ({ due, late }) => {
      await null;
      console.log("ran " + due + " " + late);
    }, { id: "heat", catch_up: 60 });
  `,
    { methods },
  );
  try {
    await within(r.logged("ran 1700000000 true"), 60_000, "the callback");
    assert.deepEqual(await within(done.promise, 60_000, "fired"), ["heat", 1_700_000_000]);
    assert.equal((await within(r.script.stop("done"), 60_000, "stop")).state, "ok");
  } finally {
    await r.pool.close();
  }
});

Deno.test("calls pending when the script ends are aborted on the host", async () => {
  const aborted = signal<unknown>();
  const methods: MethodTable = {
    ...stubMethods,
    wait: (_args, { signal: s }) =>
      new Promise(() => s.addEventListener("abort", () => aborted.resolve(s.reason))),
  };
  const { end } = await run(
    `moat.setup(); moat.wait("12 hr"); moat.on_start(async () => { await null; moat.end(); });`,
    { methods },
  );
  assert.equal(end.state, "ok");
  await within(aborted.promise, 60_000, "abort of the pending wait");
});

Deno.test("scripts cannot make code from text or reach the process", async () => {
  const { end, messages } = await run(`
    moat.setup();
    const tries = {
      eval: () => eval("1"),
      globalEval: () => globalThis.eval("1"),
      newFunction: () => new Function("return 1")(),
      fnConstructor: () => (() => 1).constructor("return 1")(),
      asyncConstructor: () => (async () => 1).constructor("return 1")(),
      generatorConstructor: () => (function* () {}).constructor("yield 1")(),
      asyncGeneratorConstructor: () => (async function* () {}).constructor("yield 1")(),
      reflectConstruct: () => Reflect.construct(Object.getPrototypeOf(() => 1).constructor, ["return 1"]),
      stringTimer: () => setTimeout("globalThis.x = 1", 0),
      denoStdout: () => Deno.stdout.writeSync(new TextEncoder().encode('{"kind":"ended"}\\n')),
      denoStdin: () => Deno.stdin.readSync(new Uint8Array(10)),
      nodeProcess: () => process.stdout.write("x\\n"),
      postMessage: () => postMessage("x"),
      close: () => close(),
      nestedWorker: () => new Worker("data:text/javascript,1", { type: "module" }),
      wasm: () => WebAssembly.Module,
      caches: () => caches.open("x"),
      broadcast: () => new BroadcastChannel("x"),
    };
    for (const [name, fn] of Object.entries(tries)) {
      try {
        await fn();
        console.log(name, "succeeded");
      } catch (e) {
        console.log(name, "failed", e.name);
      }
    }
    console.log("instanceof", (() => 1) instanceof Function);
    moat.end();
  `);
  assert.equal(end.state, "ok");
  const lines = messages.filter((m) => !m.startsWith("instanceof"));
  assert.equal(lines.length, 18);
  for (const m of lines) assert.match(m, / failed /);
  assert.ok(messages.includes("instanceof true"));
});

Deno.test("scripts cannot reach the network, files or modules", async () => {
  const { end, messages } = await run(`
    moat.setup();
    const tries = {
      fetch: () => fetch("http://127.0.0.1:2379/"),
      webSocket: () => new Promise((ok, fail) => {
        const ws = new WebSocket("ws://127.0.0.1:5672/"); ws.onerror = fail; ws.onopen = ok;
      }),
      readFile: () => Deno.readTextFile("/etc/passwd"),
      importNpmViaEval: () => eval('import("npm:luxon")'),
      importNpm: () => import("npm:luxon"),
      importNodeFs: () => import("node:fs"),
      importNodeProcess: () => import("node:process"),
      importFs: () => import("fs"),
      importFile: () => import("file:///etc/passwd"),
      importHttps: () => import("https://deno.land/x/y.ts"),
      importJsr: () => import("jsr:@std/path"),
      importExt: () => import("ext:deno_fs/30_fs.js"),
      importNodeFromData: () => import("data:text/javascript,await import('node:fs')"),
    };
    for (const [name, fn] of Object.entries(tries)) {
      try {
        await fn();
        console.log(name, "succeeded");
      } catch (e) {
        console.log(name, "failed");
      }
    }
    moat.end();
  `);
  assert.equal(end.state, "ok");
  assert.equal(messages.length, 13);
  for (const m of messages) assert.match(m, / failed$/);
});

Deno.test("a heap overflow ends the script with fail and the host carries on", async () => {
  const pool = new SandboxPool({ warm: 0, heapMb: 32, limits: FAR });
  try {
    const r = await start(
      `moat.setup(); const a = []; while (true) a.push(new Array(100000).fill({ x: a.length }));`,
      { pool },
    );
    const end = await within(r.script.ended, 60_000, "OOM end");
    assert.equal(end.state, "fail");
    assert.match(end.message, /ran out of memory|exited unexpectedly/);
    assert.equal(pidAlive(r.script.pid), false);
    const next = await start(`moat.setup(); moat.end();`, { pool });
    assert.equal((await within(next.script.ended, 60_000, "next end")).state, "ok");
  } finally {
    await pool.close();
  }
});

Deno.test("a warm pool starts each script in a fresh process and close() is safe twice", async () => {
  const pool = new SandboxPool({ warm: 1, limits: FAR });
  try {
    const a = await start(`moat.setup(); moat.end();`, { pool });
    const b = await start(`moat.setup(); moat.end();`, { pool });
    assert.notEqual(a.script.pid, b.script.pid);
    assert.equal((await within(a.script.ended, 60_000, "a")).state, "ok");
    assert.equal((await within(b.script.ended, 60_000, "b")).state, "ok");
    const c = await start(`moat.setup(); console.log("up");`, { pool });
    await within(c.logged("up"), 60_000, "c up");
    await pool.close();
    assert.deepEqual(await c.script.ended, {
      state: "fail",
      message: "sandbox pool closed",
      debug: "",
    });
    await pool.close();
    await assert.rejects(() => pool.start({ ...c, code: "", onLog: () => {} } as never), /closed/);
  } finally {
    await pool.close();
  }
});

Deno.test("a sandbox that dies unexpectedly ends the script with fail", async () => {
  const r = await start(`moat.setup(); console.log("up");`);
  try {
    await within(r.logged("up"), 60_000, "up");
    Deno.kill(r.script.pid, "SIGTERM");
    const end = await within(r.script.ended, 60_000, "end");
    assert.equal(end.state, "fail");
    assert.match(end.message, /exited unexpectedly \(signal SIGTERM\)/);
  } finally {
    await r.pool.close();
  }
});

/** The niceness (field 19 of stat) of every thread of a process. */
function threadNiceness(pid: number): number[] {
  const out: number[] = [];
  for (const t of Deno.readDirSync(`/proc/${pid}/task`)) {
    const stat = Deno.readTextFileSync(`/proc/${pid}/task/${t.name}/stat`);
    out.push(Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[16]));
  }
  return out;
}

Deno.test("every thread of a sandbox process runs at niceness 10, below the host", async () => {
  const own = threadNiceness(Deno.pid)[0]!;
  const r = await start(`moat.setup(); console.log("up");`);
  try {
    await within(r.logged("up"), 60_000, "up");
    const nice = threadNiceness(r.script.pid);
    assert.ok(nice.length >= 2, `threads: ${nice.length}`); // the process and its Worker, at least
    assert.deepEqual(new Set(nice), new Set([Math.min(own + 10, 19)]));
  } finally {
    await r.pool.close();
  }
  const plain = await start(`moat.setup(); console.log("up");`, {
    pool: new SandboxPool({ warm: 0, nice: null, limits: FAR }),
  });
  try {
    await within(plain.logged("up"), 60_000, "up");
    assert.deepEqual(new Set(threadNiceness(plain.script.pid)), new Set([own]));
  } finally {
    await plain.pool.close();
  }
  assert.throws(() => new SandboxPool({ warm: 0, nice: 25 }), /niceness 25/);
});
