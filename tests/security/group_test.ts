/**
 * Sandbox groups (the `group` run setting): scripts of one group share one
 * sandbox process, one Worker each. Each test runs real scripts in a real
 * host. The neighbour of the security suite is itself a member of group
 * "sec", so that every attempt made from that group must also leave a
 * sibling in the same process undisturbed. docs/security.md, "Why one
 * script per process", says what a group shares.
 */

import { assert, assertEquals, assertIncludes } from "../_util/assert.ts";
import { withTimeout } from "../_util/wait.ts";
import { waitForKey } from "../_util/store_wait.ts";
import {
  closeShared,
  HEARTBEAT,
  NEIGHBOUR_PATH,
  type SecurityHost,
  SHARED,
  sharedHost,
} from "./_harness.ts";
import { DENIED } from "./_escapes.ts";

const GROUP = { group: "sec" };
const host = sharedHost(undefined, GROUP);

/** The sandbox pid the runner of `path` logged for its `run`-th start (1 = first). */
function pidOf(h: SecurityHost, path: string, run = 1): number | undefined {
  const starts = h.logger.lines
    .filter((l) => l.source === path)
    .map((l) => /^started script .* \(sandbox pid (\d+)\)$/.exec(l.message)?.[1])
    .filter((p) => p !== undefined);
  const pid = starts[run - 1];
  return pid === undefined ? undefined : Number(pid);
}

/** Wait until the runner of `path` has started its `run`-th run. */
async function started(h: SecurityHost, path: string, run = 1): Promise<number> {
  await withTimeout(
    h.logger.waitFor(() => pidOf(h, path, run) !== undefined),
    120_000,
    `run ${run} of ${path} to start`,
  );
  return pidOf(h, path, run)!;
}

/** Lines `path` logged so far. */
function logsOf(h: SecurityHost, path: string): string[] {
  return h.logger.lines.filter((l) => l.source === path).map((l) => l.message);
}

/** Wait until `path` has logged a line matching `pred`. */
function logged(h: SecurityHost, path: string, pred: (m: string) => boolean): Promise<void> {
  return withTimeout(
    h.logger.waitFor((l) => l.source === path && pred(l.message)),
    60_000,
    `a line of ${path}`,
  );
}

let n = 0;

/** Start `code` as a new task with task keys `keys` (and its data `data`); resolves with its path. */
async function start(
  h: SecurityHost,
  code: string,
  keys: Record<string, string>,
  data: [string, string][] = [],
): Promise<string> {
  const name = `member${++n}`;
  const path = `sec/${name}`;
  await h.services.scripts.add(name, code, { language: "javascript" });
  await h.services.tasks.add(name, path, {
    data,
    settings: Object.entries({ retry: "600", ...keys }),
  });
  await started(h, path);
  return path;
}

/** Delete the task at `path` and wait for its runner to finish. */
async function remove(h: SecurityHost, path: string): Promise<void> {
  const runner = h.host.runner(path);
  await h.services.tasks.delete(path);
  if (runner) await withTimeout(runner.done, 60_000, `the runner of ${path} to finish`);
}

/** Run `body` (an async function body); log "denied: …" if it throws, "ALLOWED …" if not. */
function tryIt(body: string): string {
  return `
moat.setup();
try {
  const r = await (async () => { ${body} })();
  moat.logger.info("ALLOWED " + String(r).slice(0, 300));
} catch (e) {
  moat.logger.info("denied: " + (e && e.name) + ": " + String(e && e.message).slice(0, 300));
}
moat.end();
`;
}

Deno.test({
  name: "a grouped script shares its group's process, and an ungrouped one does not",
  ...SHARED,
  fn: async () => {
    const h = await host();
    const shared = await start(h, `moat.setup(); await moat.stopping;`, GROUP);
    const own = await start(h, `moat.setup(); await moat.stopping;`, {});
    const neighbour = pidOf(h, NEIGHBOUR_PATH);
    assert(neighbour !== undefined, "the neighbour's start was not logged");
    assertEquals(pidOf(h, shared), neighbour);
    assert(pidOf(h, own) !== neighbour, "an ungrouped script ran in the group's process");
    await remove(h, shared);
    await remove(h, own);
    await h.assertHealthy();
  },
});

// The escapes of the security suite, tried from a member of the neighbour's group.
for (const [what, body] of DENIED) {
  Deno.test({
    name: `a grouped script is denied ${what}`,
    ...SHARED,
    fn: async () => {
      const h = await host();
      const out = await h.run(tryIt(body), GROUP);
      assertEquals(out.state, "ok", out.message);
      const result = out.logs.find((l) => l.startsWith("denied: ") || l.startsWith("ALLOWED"));
      assert(result?.startsWith("denied: "), `not denied: ${result}`);
      await h.assertHealthy();
    },
  });
}

Deno.test({
  name: "a member cannot read or disturb another member's RPC replies, data, tree events or logs",
  ...SHARED,
  fn: async () => {
    const h = await host();
    const secret = "grp-" + crypto.randomUUID();
    const rpc = "grp_" + crypto.randomUUID().slice(0, 8);
    await h.store.put("/moat/grp/node/v", JSON.stringify("t0"));
    // A: serves an RPC answered from its data, watches a tree node, logs both.
    const a = await start(
      h,
      `
moat.setup();
moat.rpc(${JSON.stringify(rpc)})((x) => "A:" + x + ":" + moat.data.get("note"));
const node = await moat.tree.lookup("grp", "node");
moat.monitor(node)((c) => moat.logger.info("tree " + c.node.get("v")));
let stop = false;
moat.stopping.then(() => (stop = true));
for (let seen; !stop; ) {
  const v = moat.data.get("note");
  if (v !== seen) moat.logger.info((seen === undefined ? "ready " : "note ") + (seen = v));
  await new Promise((r) => setTimeout(r, 50));
}
`,
      GROUP,
      [["note", secret]],
    );
    // B: the same group; as many calls in flight as it can (their ids are
    // the same numbers as A's), logging everything its moat shows it.
    const b = await start(
      h,
      `
moat.setup();
moat.logger.info("B started");
let stop = false;
moat.stopping.then(() => (stop = true));
for (let round = 0; !stop; round++) {
  const got = await Promise.all(Array.from({ length: 20 }, () => moat.time_at("12 hr")));
  const view = [...moat.data.keys()].map((k) => [k, moat.data.get(k)]);
  moat.logger.info("B round " + round + " " + got.length + " " + JSON.stringify(view));
  await new Promise((r) => setTimeout(r, 50));
}
`,
      GROUP,
    );
    assertEquals(pidOf(h, a), pidOf(h, b));
    await logged(h, a, (m) => m === "ready " + secret);
    await logged(h, b, (m) => m.startsWith("B round 3 "));
    // RPC: every reply goes to the caller, made by A from A's data.
    for (let i = 0; i < 20; i++) {
      assertEquals(await h.bus.call(rpc, i, { timeoutMs: 30_000 }), `A:${i}:${secret}`);
    }
    // Data and tree events reach A only.
    const note2 = secret + "-2";
    await h.store.put(`/moat/task/${a}/:task/data/note`, JSON.stringify(note2));
    await logged(h, a, (m) => m === "note " + note2);
    await h.store.put("/moat/grp/node/v", JSON.stringify(secret + "-tree"));
    await logged(h, a, (m) => m === "tree " + secret + "-tree");
    const rounds = logsOf(h, b).filter((m) => m.startsWith("B round ")).length;
    await logged(h, b, (m) => m.startsWith(`B round ${rounds + 2} `));
    assertEquals(await h.bus.call(rpc, "last", { timeoutMs: 30_000 }), `A:last:${note2}`);
    // B saw none of it, and every line of B is its own.
    for (const line of logsOf(h, b)) {
      assert(!line.includes(secret), `B saw A's traffic: ${line}`);
      assert(
        !line.startsWith("note ") && !line.startsWith("tree "),
        `A's line in B's log: ${line}`,
      );
    }
    for (const m of logsOf(h, b).filter((m) => m.startsWith("B round "))) {
      assertIncludes(m, " 20 []"); // all 20 calls answered; B's data view is its own (empty)
    }
    // A's script lines are A's (log lines are never handed to another member).
    for (const line of logsOf(h, a)) assert(!line.startsWith("B "), `B's line in A's log: ${line}`);
    // Neither was disturbed: both are on their first run.
    assertEquals(h.host.runner(a)?.runs, 1);
    assertEquals(h.host.runner(b)?.runs, 1);
    await remove(h, a);
    await remove(h, b);
    await h.assertHealthy();
  },
});

Deno.test({
  name: "a grouped script's moat.thread runs, and its group's other members keep running",
  ...SHARED,
  fn: async () => {
    const h = await host();
    const out = await h.run(
      `
moat.setup();
const sums = await Promise.all([1, 2, 3].map((k) =>
  moat.thread((n) => { let s = 0; for (let i = 0; i <= n; i++) s += i; return s; }, k * 1000)
));
moat.logger.info("sums " + sums.join(","));
moat.end();
`,
      GROUP,
    );
    assertEquals(out.state, "ok", out.message);
    assert(out.logs.includes("sums 500500,2001000,4501500"), JSON.stringify(out.logs));
    await h.assertHealthy();
  },
});

Deno.test({
  name: "stopping one member leaves the others of its group running in the same process",
  ...SHARED,
  fn: async () => {
    const h = await host();
    const ticker = `
moat.setup();
let stop = false;
moat.stopping.then(() => (stop = true));
for (let i = 0; !stop; i++) {
  moat.logger.info("tick " + i);
  await new Promise((r) => setTimeout(r, 100));
}
`;
    const keys = { group: "calm" };
    const one = await start(h, ticker, keys);
    const two = await start(h, ticker, keys);
    const pid = pidOf(h, one);
    assertEquals(pidOf(h, two), pid);
    const runner = h.host.runner(one);
    await remove(h, one);
    const end = await runner?.done;
    assertEquals(end?.state, "ok", end?.message); // stopped cleanly: its on_stop ran
    const ticks = logsOf(h, two).filter((m) => m.startsWith("tick ")).length;
    await logged(h, two, (m) => m === `tick ${ticks + 5}`);
    assertEquals(h.host.runner(two)?.runs, 1);
    // A new member joins the same process.
    const three = await start(h, ticker, keys);
    assertEquals(pidOf(h, three), pid);
    await remove(h, two);
    await remove(h, three);
    await h.assertHealthy();
  },
});

Deno.test({
  name: "a runaway member ends its group's process, is named, and every member restarts",
  ...SHARED,
  fn: async () => {
    const h = await host();
    const keys = { group: "wild", retry: "2" };
    const calm = await start(
      h,
      `moat.setup(); moat.logger.info("calm up"); await moat.stopping;`,
      keys,
    );
    const pid = pidOf(h, calm);
    // Spins on its first run only; its later runs are calm.
    const wild = await start(
      h,
      `
moat.setup();
const runs = moat.data.get("spun") ?? 0;
if (runs === 0) { await moat.data.set("spun", 1); for (;;) {} }
moat.logger.info("wild calm now");
await moat.stopping;
`,
      { ...keys, ...HEARTBEAT },
      [["spun", "0"]],
    );
    assertEquals(pidOf(h, wild), pid);
    // The calm member ends with its group, which names the culprit.
    const failed = async (path: string) => {
      const status = `/moat/status/run/${path}/:task/`;
      await waitForKey(h.store, status + "state", (v) => v === "fail", 120_000);
      return (await h.store.get(status + "message"))?.value ?? "";
    };
    const [named, own] = await Promise.all([failed(calm), failed(wild)]);
    assertIncludes(own, "stopped answering the heartbeat");
    assertIncludes(named, `sandbox group "wild" ended`);
    assertIncludes(named, `script "member${n}" of task ${wild}`);
    assertIncludes(named, "stopped answering the heartbeat");
    // Both start again, in a new process.
    const again = await started(h, calm, 2);
    await started(h, wild, 2);
    assert(again !== pid, "the group's process was not replaced");
    assertEquals(pidOf(h, wild, 2), again);
    await logged(h, wild, (m) => m === "wild calm now");
    await remove(h, calm);
    await remove(h, wild);
    await h.assertHealthy();
  },
});

Deno.test({
  name: "a member that spins when it is stopped ends its group's process, and is named",
  ...SHARED,
  fn: async () => {
    const h = await host();
    const keys = { group: "stuck", retry: "2" };
    const calm = await start(h, `moat.setup(); await moat.stopping;`, keys);
    // Spins once stopped, where no heartbeat limit reaches it (TEST_LIMITS).
    const spinner = await start(
      h,
      `moat.setup(); moat.on_stop(() => { for (;;) {} }); await moat.stopping;`,
      keys,
    );
    const name = `member${n}`;
    const pid = pidOf(h, calm);
    assertEquals(pidOf(h, spinner), pid);
    await remove(h, spinner);
    const status = `/moat/status/run/${calm}/:task/`;
    await waitForKey(h.store, status + "state", (v) => v === "fail", 120_000);
    const message = (await h.store.get(status + "message"))?.value ?? "";
    assertIncludes(message, `sandbox group "stuck" ended`);
    assertIncludes(message, `script "${name}" of task ${spinner} did not stop`);
    const again = await started(h, calm, 2);
    assert(again !== pid, "the group's process was not replaced");
    await remove(h, calm);
    await h.assertHealthy();
  },
});

Deno.test({
  name: "a member past its group's CPU budget ends the process, named by its threads' CPU",
  ...SHARED,
  fn: async () => {
    const h = await host();
    // The group's budget: the sum of its members' cpu, over the longest window.
    const keys = { group: "hot", retry: "600", cpu: "0.5", cpu_window: "3600" };
    const calm = await start(h, `moat.setup(); await moat.stopping;`, keys);
    const spinner = await start(h, `moat.setup(); await moat.thread(() => { for (;;) {} });`, keys);
    const name = `member${n}`;
    assertEquals(pidOf(h, spinner), pidOf(h, calm));
    const status = `/moat/status/run/${calm}/:task/`;
    await waitForKey(h.store, status + "state", (v) => v === "fail", 120_000);
    const message = (await h.store.get(status + "message"))?.value ?? "";
    assertIncludes(message, `CPU budget exceeded: sandbox group "hot"`);
    assertIncludes(message, `the member that used the most: script "${name}" of task ${spinner}`);
    await remove(h, calm);
    await remove(h, spinner);
    await h.assertHealthy();
  },
});

closeShared(host);
