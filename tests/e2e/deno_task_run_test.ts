/**
 * `deno task run`, the deployment from a checkout: it starts the host as
 * `moat run` does, configured from the environment (MOAT_ETCD, MOAT_HOST,
 * MOAT_AMQP) and from the arguments after it, against a private etcd; and a
 * SIGTERM to `deno task` reaches the host, which stops its scripts cleanly.
 */

import { assert, assertEquals, assertIncludes } from "../_util/assert.ts";
import { startEtcd } from "../_util/etcd_server.ts";
import { runMoat, spawnMoat } from "../_util/cli.ts";
import { withTimeout } from "../_util/wait.ts";
import { EtcdStore } from "../../host/store/etcd_store.ts";

/** The checkout, where `deno task` finds deno.json. */
const ROOT = new URL("../../", import.meta.url).pathname;
/** `deno task run ARGS…`, run in the checkout as a user types it. */
const TASK_RUN = { launcher: ["task", "run"], cwd: ROOT };

const ENDS = 'moat.setup();\nmoat.logger.info("hello", 40 + 2);\nmoat.end();\n';
const STAYS = 'moat.setup();\nmoat.on_stop(() => moat.logger.info("on_stop ran"));\n' +
  'moat.on_start(() => moat.logger.info("up"));\n';

const st = (path: string, key: string) => `/moat/status/run/${path}/:task/${key}`;

async function withEtcd(
  fn: (ctx: { store: EtcdStore; env: Record<string, string>; dir: string }) => Promise<void>,
) {
  const etcd = await startEtcd();
  const store = new EtcdStore({ endpoints: [etcd.endpoint] });
  const dir = await Deno.makeTempDir({ prefix: "moat-task-run-" });
  try {
    await fn({ store, env: { MOAT_ETCD: etcd.endpoint, MOAT_AMQP: "none" }, dir });
  } finally {
    await store.close();
    await Deno.remove(dir, { recursive: true });
    await etcd.stop();
  }
}

/** Store `code` as script `name` and make it task `task`, with the `moat` CLI. */
async function addTask(env: Record<string, string>, dir: string, name: string, code: string) {
  const file = `${dir}/${name}.ts`;
  await Deno.writeTextFile(file, code);
  const def = await runMoat(["script", "def", "add", name, file], { env });
  assertEquals(def.code, 0, def.stderr);
}

Deno.test("deno task run --once runs this host's tasks, configured from the environment", async () => {
  await withEtcd(async ({ store, env, dir }) => {
    await addTask(env, dir, "ends", ENDS);
    for (const task of ["box/ends", "other/ends"]) {
      const add = await runMoat(["script", "add", "ends", task], { env });
      assertEquals(add.code, 0, add.stderr);
    }
    // MOAT_HOST from the environment picks the tasks below /task/box/.
    const r = await runMoat(["--once"], { ...TASK_RUN, env: { ...env, MOAT_HOST: "box" } });
    assertEquals(r.code, 0, r.stderr);
    assertIncludes(r.stderr, "[box/ends] hello 42");
    assert(!r.stderr.includes("other/ends"), r.stderr);
    assertEquals((await store.get(st("box/ends", "state")))?.value, "ok");
    assertEquals(await store.get(st("other/ends", "state")), undefined);
  });
});

Deno.test("deno task run takes moat run's options after it, and SIGTERM stops it cleanly", async () => {
  await withEtcd(async ({ store, env, dir }) => {
    await addTask(env, dir, "stays", STAYS);
    const add = await runMoat(["script", "add", "stays", "box/stays"], { env });
    assertEquals(add.code, 0, add.stderr);
    // --host after `run` wins over MOAT_HOST, as it does for `moat run`.
    const host = spawnMoat(["--host", "box", "--log-level", "debug"], {
      ...TASK_RUN,
      env: { ...env, MOAT_HOST: "nobody" },
    });
    try {
      await host.waitForLine((l) => l.includes("[box/stays] up"), 60_000, "the task to start");
      assert((await store.get(st("box/stays", "running"))) !== undefined);
      // SIGTERM to `deno task` (a supervisor stopping it) must reach the host.
      host.kill("SIGTERM");
      const status = await withTimeout(host.status, 60_000, "deno task run to stop");
      assertEquals(status.code, 0, host.lines.join("\n"));
      assert(host.lines.some((l) => l.includes("[box/stays] on_stop ran")), host.lines.join("\n"));
      assertEquals((await store.get(st("box/stays", "state")))?.value, "ok");
      assertEquals(await store.get(st("box/stays", "running")), undefined);
    } finally {
      host.kill("SIGKILL");
      await host.status;
    }
  });
});
