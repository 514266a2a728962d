/**
 * Signals to a `moat run` host, through the real CLI in a process group of
 * its own: SIGTERM or SIGINT to the whole group (what systemd's default
 * `KillMode=control-group` and Ctrl-C in a terminal send) reach the host
 * only, so every script stops cleanly; and when the host dies by SIGKILL,
 * its sandbox processes go with it.
 */

import { assert, assertEquals } from "../_util/assert.ts";
import { startEtcd } from "../_util/etcd_server.ts";
import { type MoatProcess, runMoat, spawnMoat } from "../_util/cli.ts";
import { withTimeout } from "../_util/wait.ts";
import { EtcdStore } from "../../host/store/etcd_store.ts";

const STAYS = 'moat.setup();\nmoat.on_stop(() => moat.logger.info("on_stop ran"));\n' +
  'moat.on_start(() => moat.logger.info("up"));\n';
/** Its Worker never yields after start-up: the sandbox's main thread must still go. */
const SPINS = 'moat.setup();\nmoat.on_start(() => moat.logger.info("up"));\n' +
  "moat.run(() => {\n  for (;;) Math.random();\n});\n";
const TASKS = ["a", "b"];

const st = (path: string, key: string) => `/moat/status/run/${path}/:task/${key}`;

/**
 * A private etcd with the script `stays` behind the tasks `sig/a` and
 * `sig/b` (and, with `spin`, the script `spins` behind `sig/spin`), and a
 * `moat run` host for them in a process group of its own.
 */
async function withHost(
  options: { spin: boolean },
  fn: (ctx: { store: EtcdStore; host: MoatProcess; env: Record<string, string> }) => Promise<void>,
): Promise<void> {
  const etcd = await startEtcd();
  const store = new EtcdStore({ endpoints: [etcd.endpoint] });
  const dir = await Deno.makeTempDir({ prefix: "moat-signals-" });
  let host: MoatProcess | undefined;
  try {
    const env = { MOAT_ETCD: etcd.endpoint, MOAT_HOST: "sig", MOAT_AMQP: "none" };
    const moat = (...a: string[]) => runMoat(a, { env });
    await Deno.writeTextFile(`${dir}/stays.ts`, STAYS);
    const def = await moat("script", "def", "add", "stays", `${dir}/stays.ts`);
    assertEquals(def.code, 0, def.stderr);
    const tasks: [string, string][] = TASKS.map((n) => ["stays", n]);
    if (options.spin) {
      // The spinning script is not to be stopped by its limits in this test.
      for (const [key, value] of [["heartbeat", "3600"], ["cpu", "3600"], ["cpu_window", "3600"]]) {
        await store.put(`/moat/config/run/${key}`, value!);
      }
      await Deno.writeTextFile(`${dir}/spins.ts`, SPINS);
      const spins = await moat("script", "def", "add", "spins", `${dir}/spins.ts`);
      assertEquals(spins.code, 0, spins.stderr);
      tasks.push(["spins", "spin"]);
    }
    for (const [script, n] of tasks) {
      const add = await moat("script", "add", script, `sig/${n}`);
      assertEquals(add.code, 0, add.stderr);
    }
    host = spawnMoat(["run"], { env, detached: true });
    for (const [, n] of tasks) {
      await host.waitForLine((l) => l.includes(`[sig/${n}] up`), 60_000, `sig/${n} up`);
    }
    await fn({ store, host, env });
  } finally {
    if (host !== undefined) {
      host.kill("SIGKILL");
      await host.status;
    }
    await store.close();
    await Deno.remove(dir, { recursive: true });
    await etcd.stop();
  }
}

/** Fields 3… of `/proc/<pid>/stat` (f[0] state, f[1] ppid, f[2] pgrp, f[19] start time). */
function statFields(pid: number): string[] | undefined {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  } catch {
    return undefined;
  }
}

/** The child processes of `pid` (a host's sandboxes), each with its start time. */
function childrenOf(pid: number): Map<number, string> {
  const out = new Map<number, string>();
  for (const t of Deno.readDirSync(`/proc/${pid}/task`)) {
    const text = Deno.readTextFileSync(`/proc/${pid}/task/${t.name}/children`).trim();
    for (const c of text === "" ? [] : text.split(" ").map(Number)) {
      const start = statFields(c)?.[19];
      if (start !== undefined) out.set(c, start);
    }
  }
  return out;
}

/** Whether the process `pid` that started at `start` is gone (a zombie counts as gone). */
function isGone(pid: number, start: string): boolean {
  const f = statFields(pid);
  return f === undefined || f[19] !== start || f[0] === "Z" || f[0] === "X";
}

async function stopsCleanly(signal: "SIGTERM" | "SIGINT"): Promise<void> {
  await withHost({ spin: false }, async ({ store, host, env }) => {
    const sandboxes = childrenOf(host.pid);
    assert(sandboxes.size >= TASKS.length, `sandbox processes: ${[...sandboxes.keys()]}`);
    // The host leads its own group (spawned detached); its sandboxes are not in it.
    assertEquals(statFields(host.pid)?.[2], String(host.pid));
    for (const pid of sandboxes.keys()) {
      assert(statFields(pid)?.[2] !== String(host.pid), `sandbox ${pid} is in the host's group`);
    }
    Deno.kill(-host.pid, signal);
    const status = await withTimeout(host.status, 60_000, "the host to stop");
    const log = host.lines.join("\n");
    assertEquals(status.code, 0, log);
    assert(host.lines.some((l) => l.includes(`${signal}: stopping every script`)), log);
    assert(!log.includes("exited unexpectedly"), log);
    for (const n of TASKS) {
      assert(host.lines.some((l) => l.includes(`[sig/${n}] on_stop ran`)), log);
      assert(host.lines.some((l) => l.includes(`[sig/${n}] ended: ok`)), log);
      assertEquals((await store.get(st(`sig/${n}`, "state")))?.value, "ok", log);
      assertEquals(await store.get(st(`sig/${n}`, "running")), undefined);
    }
    const errors = await runMoat(["errors", "sig", "--json"], { env });
    assertEquals(errors.code, 0, errors.stderr);
    assertEquals(JSON.parse(errors.stdout), [], "no error record");
    const { kvs } = await store.range("/moat/status/errors/");
    assertEquals(kvs.map((kv) => kv.key), [], "no error record in etcd");
  });
}

Deno.test("SIGTERM to the host's process group stops every script cleanly", async () => {
  await stopsCleanly("SIGTERM");
});

Deno.test("SIGINT to the host's process group (Ctrl-C) stops every script cleanly", async () => {
  await stopsCleanly("SIGINT");
});

// The spec is "gone within 2 s"; the bound below only catches a hang on a
// busy machine, and the figure is printed.
Deno.test("when the host dies by SIGKILL, every sandbox process goes, a spinning one too", async () => {
  await withHost({ spin: true }, async ({ host }) => {
    const sandboxes = childrenOf(host.pid);
    assert(sandboxes.size >= TASKS.length + 1, `sandbox processes: ${[...sandboxes.keys()]}`);
    const t0 = performance.now();
    host.kill("SIGKILL");
    let left = [...sandboxes].filter(([pid, start]) => !isGone(pid, start));
    while (left.length > 0 && performance.now() - t0 < 10_000) {
      await new Promise((r) => setTimeout(r, 20));
      left = left.filter(([pid, start]) => !isGone(pid, start));
    }
    const ms = performance.now() - t0;
    assertEquals(left.map(([pid]) => pid), [], `sandboxes still there ${ms.toFixed(0)} ms later`);
    console.log(
      `[measured] ${sandboxes.size} sandbox processes gone ${
        ms.toFixed(0)
      } ms after kill -9 of the host`,
    );
  });
});
