/**
 * Clean state through the real `moat` CLI and a real `moat run` host against
 * a private etcd: a deleted task leaves no status or error records (deleted
 * with the CLI, by hand while a host watches, or by hand while none does);
 * `moat script def delete --force` names the tasks it orphans, which end with
 * state `fail` naming the script and are not retried; the tasks that use a
 * script are read from the tasks, not from stored back-references; a
 * one-shot task (`--restart 0`) runs once; a clean restart clears `crashed`.
 */

import { assert, assertEquals, assertIncludes } from "../_util/assert.ts";
import { withTimeout } from "../_util/wait.ts";
import { etcdctl, startEtcd } from "../_util/etcd_server.ts";
import { type MoatProcess, runMoat, spawnMoat } from "../_util/cli.ts";
import { EtcdStore } from "../../host/store/etcd_store.ts";

/** Runs until it is stopped; records an error first when its data says so. */
const STAYS = "moat.setup();\n" +
  "moat.on_start(async () => {\n" +
  '  if (moat.data.get("fail")) await moat.set_error("owch", "it hurts");\n' +
  '  moat.logger.info("up");\n' +
  "});\n";
/** Ends at once. */
const ONCE = 'moat.setup();\nmoat.run(() => moat.logger.info("once"));\n';
/** Bound of a wait for what must happen: generous, it only catches a hang. */
const WAIT_MS = 60_000;

type Env = Record<string, string>;

/** A private etcd, a store on it, a temp folder, and `moat` with `env`; all closed after `fn`. */
async function withEtcd(
  host: string,
  fn: (c: {
    store: EtcdStore;
    endpoint: string;
    dir: string;
    env: Env;
    moat: (...args: string[]) => ReturnType<typeof runMoat>;
    hosts: MoatProcess[];
  }) => Promise<void>,
): Promise<void> {
  const etcd = await startEtcd();
  const store = new EtcdStore({ endpoints: [etcd.endpoint] });
  const dir = await Deno.makeTempDir({ prefix: "moat-clean-" });
  const env = { MOAT_ETCD: etcd.endpoint, MOAT_HOST: host, MOAT_AMQP: "none" };
  const hosts: MoatProcess[] = [];
  try {
    await fn({
      store,
      endpoint: etcd.endpoint,
      dir,
      env,
      moat: (...args) => runMoat(args, { env }),
      hosts,
    });
  } finally {
    for (const h of hosts) h.kill("SIGTERM");
    for (const h of hosts) await withTimeout(h.status, WAIT_MS, "a host to stop");
    await store.close();
    await Deno.remove(dir, { recursive: true });
    await etcd.stop();
  }
}

async function ok(r: Promise<{ code: number; stdout: string; stderr: string }>, what: string) {
  const res = await r;
  assertEquals(res.code, 0, `${what}: ${res.stderr}`);
  return res;
}

/** Keys below `prefix`. */
async function keys(store: EtcdStore, prefix: string): Promise<string[]> {
  return (await store.range(prefix)).kvs.map((kv) => kv.key);
}

/** The ids of the error records whose `loc` is `task`. */
async function recordsOf(store: EtcdStore, task: string): Promise<string[]> {
  return (await store.range("/moat/status/errors/")).kvs
    .filter((kv) => kv.key.endsWith("/loc") && kv.value === task)
    .map((kv) => kv.key.slice(0, -"/loc".length));
}

const line = (task: string, text: string) => (l: string) => l.includes(`[${task}] ${text}`);

Deno.test("a deleted task leaves no status and no error records", async (t) => {
  await withEtcd("h1", async ({ store, endpoint, dir, env, moat, hosts }) => {
    await Deno.writeTextFile(`${dir}/stays.ts`, STAYS);
    await ok(moat("script", "def", "add", "stays", `${dir}/stays.ts`), "def add");
    for (const task of ["h1/a", "h1/b", "h1/c"]) {
      await ok(moat("script", "add", "stays", task, "fail=true"), `add ${task}`);
    }
    let host = spawnMoat(["run"], { env });
    hosts.push(host);
    for (const task of ["h1/a", "h1/b", "h1/c"]) {
      await host.waitForLine(line(task, "up"), WAIT_MS, `${task} up`);
      assert((await keys(store, `/moat/status/run/${task}/:task/`)).length > 0, task);
      assertEquals((await recordsOf(store, task)).length, 1, `${task}'s record`);
    }

    await t.step("moat script delete removes the task's status and records", async () => {
      const r = await ok(moat("script", "delete", "h1/a"), "delete");
      assertEquals(r.stdout, "deleted task h1/a\n");
      assertEquals(await keys(store, "/moat/status/run/h1/a/"), []);
      assertEquals(await recordsOf(store, "h1/a"), []);
      // The host stops the run and writes nothing back.
      await host.waitForLine(line("h1/a", "task deleted: stopped"), WAIT_MS, "a stopped");
      assertEquals(await keys(store, "/moat/status/run/h1/a/"), []);
      assertEquals(await recordsOf(store, "h1/a"), []);
      const s = await moat("status", "h1/a");
      assertEquals(s.code, 1);
      assertEquals(s.stderr, 'error: no task at or below "h1/a"\n');
    });

    await t.step("a task deleted by hand loses its status through the host", async () => {
      await etcdctl(endpoint, "del", "--prefix", "/moat/task/h1/b/");
      await host.waitForLine(
        line("h1/b", "task deleted: removed its status and error records"),
        WAIT_MS,
        "b's status removed",
      );
      assertEquals(await keys(store, "/moat/status/run/h1/b/"), []);
      assertEquals(await recordsOf(store, "h1/b"), []);
      const e = await ok(moat("errors", "--json"), "errors");
      assertEquals((JSON.parse(e.stdout) as { loc: string }[]).map((x) => x.loc), ["h1/c"]);
    });

    await t.step("a host that starts removes the status of tasks deleted meanwhile", async () => {
      host.kill("SIGTERM");
      await withTimeout(host.status, WAIT_MS, "the host to stop");
      // Deleted while no host ran; and a status written by hand whose
      // `running` key says a run still holds it.
      await etcdctl(endpoint, "del", "--prefix", "/moat/task/h1/c/");
      await store.put("/moat/status/run/h1/held/:task/started", "1700000000");
      await store.put("/moat/status/run/h1/held/:task/running", "someone");
      const shown = await ok(moat("status", "--json"), "status");
      const rows = JSON.parse(shown.stdout) as { path: string; gone?: boolean }[];
      assertEquals(rows.map((r) => [r.path, r.gone]), [["h1/c", true], ["h1/held", true]]);
      assertIncludes((await moat("status")).stdout, "(task deleted)");

      host = spawnMoat(["run"], { env });
      hosts.push(host);
      await host.waitForLine(
        line("h1/c", "task deleted: removed its status and error records"),
        WAIT_MS,
        "c's status swept",
      );
      assertEquals(await keys(store, "/moat/status/run/h1/c/"), []);
      assertEquals(await recordsOf(store, "h1/c"), []);
      // Held by a run: left alone.
      assertEquals((await keys(store, "/moat/status/run/h1/held/")).length, 2);
    });
  });
});

Deno.test("def delete --force names the tasks it orphans; they fail once and wait", async (t) => {
  await withEtcd("h2", async ({ store, dir, env, moat, hosts }) => {
    await Deno.writeTextFile(`${dir}/stays.ts`, STAYS);
    await ok(moat("script", "def", "add", "lib", `${dir}/stays.ts`), "def add");
    await ok(moat("script", "add", "lib", "h2/o1"), "add o1");
    // A task made by hand: no back-reference in the script's tasks/.
    await store.put("/moat/task/h2/hand/:task/taskdef", "task/script");
    await store.put("/moat/task/h2/hand/:task/script", "lib");
    const host = spawnMoat(["run"], { env });
    hosts.push(host);
    for (const task of ["h2/o1", "h2/hand"]) {
      await host.waitForLine(line(task, "up"), WAIT_MS, `${task} up`);
    }

    await t.step("the users of a script are read from the tasks themselves", async () => {
      const r = await moat("script", "def", "delete", "lib");
      assertEquals(r.code, 1);
      assertIncludes(r.stderr, 'script "lib" is used by tasks h2/hand, h2/o1');
      const j = await ok(moat("script", "def", "list", "lib", "--json"), "def list");
      assertEquals((JSON.parse(j.stdout) as { tasks: string[] }[])[0]!.tasks, [
        "h2/hand",
        "h2/o1",
      ]);
      // A stale back-reference (its task deleted by hand) blocks nothing.
      await ok(moat("script", "def", "add", "other", `${dir}/stays.ts`), "def add other");
      await store.put("/moat/meta/script/other/:code/tasks/stale", "h2/ghost");
      const d = await ok(moat("script", "def", "delete", "other"), "delete other");
      assertEquals(d.stderr, "");
    });

    await t.step("--force names the orphans; each ends with fail and no retry", async () => {
      const r = await ok(moat("script", "def", "delete", "lib", "--force"), "delete --force");
      assertEquals(r.stdout, "deleted script lib\n");
      assertIncludes(r.stderr, "tasks h2/hand, h2/o1 now have no script lib");
      for (const task of ["h2/o1", "h2/hand"]) {
        await host.waitForLine(
          line(task, "ended (fail); not retrying until script lib exists"),
          WAIT_MS,
          `${task} given up`,
        );
      }
      const s = await ok(moat("status", "h2", "--json"), "status");
      for (const row of JSON.parse(s.stdout) as { state: string; message: string }[]) {
        assertEquals(row.state, "fail");
        assertIncludes(row.message, 'script "lib" does not exist: the task is orphaned');
      }
      const e = await ok(moat("errors", "h2/o1"), "errors");
      assertIncludes(e.stdout, 'script "lib" does not exist');
      // One failed start each: the orphan is not retried.
      for (const task of ["h2/o1", "h2/hand"]) {
        assertEquals(host.lines.filter(line(task, "ended: fail")).length, 1, task);
      }
    });

    await t.step("adding the script again starts the orphans", async () => {
      await ok(moat("script", "def", "add", "lib", `${dir}/stays.ts`), "def add again");
      for (const task of ["h2/o1", "h2/hand"]) {
        await host.waitForLine(
          (l) => line(task, "up")(l) && host.lines.filter(line(task, "up")).length >= 2,
          WAIT_MS,
          `${task} up again`,
        );
      }
      const s = await ok(moat("status", "h2", "--json"), "status");
      for (const row of JSON.parse(s.stdout) as { state: string }[]) {
        assertEquals(row.state, "run");
      }
    });
  });
});

Deno.test("a one-shot task runs once; a clean restart clears the crashed note", async (t) => {
  await withEtcd("h3", async ({ store, dir, env, moat, hosts }) => {
    await Deno.writeTextFile(`${dir}/once.ts`, ONCE);
    await ok(moat("script", "def", "add", "once", `${dir}/once.ts`), "def add");

    await t.step("--restart 0 runs once; the default restarts", async () => {
      await ok(moat("script", "add", "once", "h3/one", "--restart", "0"), "add one");
      await ok(moat("script", "add", "once", "h3/again"), "add again");
      const host = spawnMoat(["run"], { env });
      hosts.push(host);
      await host.waitForLine(line("h3/one", "ended (ok); not restarting"), WAIT_MS, "one done");
      await host.waitForLine(line("h3/again", "ended (ok); restart in"), WAIT_MS, "again");
      assertEquals(host.lines.filter(line("h3/one", "once")).length, 1);
      host.kill("SIGTERM");
      await withTimeout(host.status, WAIT_MS, "the host to stop");
      await ok(moat("script", "delete", "h3/again"), "delete again");
    });

    await t.step("a start after a clean end removes crashed", async () => {
      const status = "/moat/status/run/h3/one/:task/";
      // The last run crashed: started, neither running nor stopped after it.
      await store.put(status + "started", "1700000000");
      await store.delete(status + "stopped");
      const first = await ok(moat("run", "--once"), "run --once");
      assertIncludes(first.stderr, "taking over: the run started at");
      assertEquals((await store.get(status + "crashed"))?.value, "1700000000");
      const j = JSON.parse((await ok(moat("status", "h3/one", "--json"), "status")).stdout);
      assertEquals(j[0].crashed, 1700000000);

      await ok(moat("run", "--once"), "run --once again");
      assertEquals(await store.get(status + "crashed"), undefined);
      const j2 = JSON.parse((await ok(moat("status", "h3/one", "--json"), "status")).stdout);
      assertEquals(j2[0].state, "ok");
      assertEquals(j2[0].crashed, undefined);
    });
  });
});
