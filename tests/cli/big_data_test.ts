/**
 * Big data the CLI did not write (issue 13): a task whose `data/` folder
 * holds more than gRPC's default 4 MiB message limit, written straight
 * into etcd. Every command still works, a host starts and runs tasks, a
 * host's watch survives the data being deleted by hand, and deleting the
 * task removes its data. A host whose watch cannot resume (its revision was
 * compacted while it was cut off) re-reads the tree and says so.
 */

import { assert, assertEquals, assertIncludes } from "../_util/assert.ts";
import { startEtcd } from "../_util/etcd_server.ts";
import { startTcpProxy } from "../_util/tcp_proxy.ts";
import { runMoat, spawnMoat } from "../_util/cli.ts";
import { withTimeout } from "../_util/wait.ts";
import { EtcdStore } from "../../host/store/etcd_store.ts";

const STAYS = 'moat.setup();\nmoat.on_start(() => moat.logger.info("up"));\n';
const HOST = "bighost";
/** 1 MB: below etcd's default request limit (1.5 MiB), five of them above gRPC's 4 MiB. */
const VALUE_BYTES = 1_000_000;
const UP_MS = 60_000;

const taskDir = (task: string) => `/moat/task/${HOST}/${task}/:task/`;

/** Write five 1 MB values under a task's data/, as another program would. */
async function fillData(store: EtcdStore, task: string): Promise<void> {
  for (let i = 0; i < 5; i++) {
    await store.put(`${taskDir(task)}data/blob${i}`, `${task}:${i}:`.padEnd(VALUE_BYTES, "x"));
  }
}

Deno.test("moat commands and hosts work with a task holding 5 MB of data written by hand", async (t) => {
  const etcd = await startEtcd();
  const store = new EtcdStore({ endpoints: [etcd.endpoint] });
  const dir = await Deno.makeTempDir({ prefix: "moat-big-" });
  const env = { MOAT_ETCD: etcd.endpoint, MOAT_HOST: HOST, MOAT_AMQP: "none" };
  const moat = (...args: string[]) => runMoat(args, { env });
  const ok = async (...args: string[]) => {
    const r = await moat(...args);
    assertEquals(r.code, 0, `moat ${args.join(" ")}: ${r.stderr}`);
    return r;
  };
  try {
    const file = `${dir}/stays.ts`;
    await Deno.writeTextFile(file, STAYS);
    await ok("script", "def", "add", "stays", file);
    for (const task of ["big", "big2"]) {
      await ok("script", "add", "stays", `${HOST}/${task}`);
      await fillData(store, task);
    }

    await t.step("script list, status and errors read the 10 MB tree", async () => {
      const list = await ok("script", "list");
      assertIncludes(list.stdout, `${HOST}/big`);
      assertIncludes(list.stdout, `${HOST}/big2`);
      const json = JSON.parse((await ok("script", "list", "--json")).stdout) as unknown[];
      assertEquals(json.length, 2);
      await ok("status");
      await ok("errors");
    });

    await t.step(
      "a host starts, runs a new task, and survives the data being deleted by hand",
      async () => {
        const host = spawnMoat(["run"], { env });
        try {
          await ok("script", "add", "stays", `${HOST}/fresh`);
          await host.waitForLine((l) => l.includes(`[${HOST}/fresh] up`), UP_MS, "fresh up");
          // One revision deleting 5 MB, whose watch response carries every
          // old value: the host's watch must live on.
          assertEquals(await store.delete(`${taskDir("big2")}data/`, { prefix: true }), 5);
          await ok("script", "add", "stays", `${HOST}/after`);
          await host.waitForLine(
            (l) => l.includes(`[${HOST}/after] up`),
            UP_MS,
            "a task added after the delete up",
          );
          assert(
            !host.lines.some((l) => /RESOURCE_EXHAUSTED|watch failed/.test(l)),
            host.lines.join("\n"),
          );
        } finally {
          host.kill("SIGTERM");
          const status = await withTimeout(host.status, 60_000, "the host to stop");
          assertEquals(status.code, 0, host.lines.join("\n"));
        }
      },
    );

    await t.step("script delete removes a task with its 5 MB of data", async () => {
      await ok("script", "delete", `${HOST}/big`);
      assertEquals((await store.range(taskDir("big"))).kvs.length, 0);
      const list = await ok("script", "list");
      assert(!list.stdout.includes(`${HOST}/big\n`), list.stdout);
      await ok("status");
    });
  } finally {
    await store.close();
    await Deno.remove(dir, { recursive: true });
    await etcd.stop();
  }
});

Deno.test("a host whose watch resumes at a compacted revision re-reads the tree and logs it", async () => {
  const etcd = await startEtcd();
  const proxy = startTcpProxy(Number(new URL(etcd.endpoint).port));
  const store = new EtcdStore({ endpoints: [etcd.endpoint] });
  const dir = await Deno.makeTempDir({ prefix: "moat-big-" });
  const env = { MOAT_ETCD: etcd.endpoint, MOAT_HOST: HOST, MOAT_AMQP: "none" };
  const ok = async (...args: string[]) => {
    const r = await runMoat(args, { env });
    assertEquals(r.code, 0, `moat ${args.join(" ")}: ${r.stderr}`);
  };
  // The host reaches etcd through the proxy, so that the test can cut it off.
  const host = spawnMoat(["run"], { env: { ...env, MOAT_ETCD: proxy.endpoint } });
  try {
    const file = `${dir}/stays.ts`;
    await Deno.writeTextFile(file, STAYS);
    await ok("script", "def", "add", "stays", file);
    await ok("script", "add", "stays", `${HOST}/kept`);
    await ok("script", "add", "stays", `${HOST}/gone`);
    for (const task of ["kept", "gone"]) {
      await host.waitForLine((l) => l.includes(`[${HOST}/${task}] up`), UP_MS, `${task} up`);
    }
    await proxy.cut();
    // Behind the host's back: a task added, one deleted, then a compaction
    // past both, so that the watch cannot replay them.
    await ok("script", "add", "stays", `${HOST}/added`);
    await ok("script", "delete", `${HOST}/gone`);
    const revision = await store.put("/moat/fence", "1");
    await store.compact(revision);
    proxy.reconnect();

    await host.waitForLine(
      (l) => /watch on \/moat\/ failed at revision \d+: .*; re-reading the tree/.test(l),
      UP_MS,
      "the warning about the failed watch",
    );
    await host.waitForLine((l) => /watch on \/moat\/ recovered/.test(l), UP_MS, "the recovery");
    await host.waitForLine((l) => l.includes(`[${HOST}/added] up`), UP_MS, "the added task up");
    await host.waitForLine(
      (l) => l.includes(`[${HOST}/gone]`) && l.includes("task deleted"),
      UP_MS,
      "the deleted task stopped",
    );
    // The task that did not change kept running: it was not started again.
    assertEquals(host.lines.filter((l) => l.includes(`[${HOST}/kept] up`)).length, 1);
    // And the watch follows the tree again.
    await ok("script", "add", "stays", `${HOST}/later`);
    await host.waitForLine((l) => l.includes(`[${HOST}/later] up`), UP_MS, "a later task up");
  } finally {
    host.kill("SIGTERM");
    await withTimeout(host.status, 60_000, "the host to stop");
    await store.close();
    await proxy.close();
    await Deno.remove(dir, { recursive: true });
    await etcd.stop();
  }
});
