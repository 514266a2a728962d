/**
 * `moat script …` run as a user runs it, against a private etcd: stdout,
 * stderr, exit codes, and the keys written (read back with the store and
 * with etcdctl).
 */

import { assert, assertEquals, assertIncludes } from "../_util/assert.ts";
import { etcdctl, startEtcd } from "../_util/etcd_server.ts";
import { refusalCheck, runMoat } from "../_util/cli.ts";
import { EtcdStore } from "../../host/store/etcd_store.ts";

const GOOD = 'moat.setup();\nmoat.logger.info("hello");\nmoat.end();\n';

Deno.test("moat script commands work against a real etcd and refuse bad input", async (t) => {
  const etcd = await startEtcd();
  const store = new EtcdStore({ endpoints: [etcd.endpoint] });
  const dir = await Deno.makeTempDir({ prefix: "moat-cli-" });
  const env = { MOAT_ETCD: etcd.endpoint, MOAT_HOST: "testhost" };
  const moat = (...args: string[]) => runMoat(args, { env });
  const dump = () => etcdctl(etcd.endpoint, "get", "--prefix", "/moat");
  const refused = refusalCheck(dump);
  try {
    const good = `${dir}/good.ts`;
    await Deno.writeTextFile(good, GOOD);
    const bad = `${dir}/bad.ts`;
    await Deno.writeTextFile(bad, "moat.setup();\nlet x = ;\n");
    const imp = `${dir}/imp.ts`;
    await Deno.writeTextFile(imp, 'import x from "npm:left-pad";\nmoat.setup();\n');

    await t.step("def add stores code, language, descr, created, timestamp", async () => {
      const r = await moat("script", "def", "add", "porch/light", good, "Porch", "light");
      assertEquals(r.code, 0, r.stderr);
      assertEquals(r.stdout, "added script porch/light\n");
      const base = "/moat/meta/script/porch/light/:code/";
      assertEquals((await store.get(base + "code"))?.value, GOOD);
      assertEquals((await store.get(base + "language"))?.value, "typescript");
      assertEquals((await store.get(base + "descr"))?.value, "Porch light");
      const created = Number((await store.get(base + "created"))?.value);
      assert(Math.abs(created - Date.now() / 1000) < 60, `created ${created}`);
      assertEquals(
        (await store.get(base + "timestamp"))?.value,
        (await store.get(base + "created"))?.value,
      );
      const text = await etcdctl(etcd.endpoint, "get", base + "language", "--print-value-only");
      assertEquals(text.trim(), "typescript");
    });

    await t.step("def add reads code from standard input for -", async () => {
      const r = await runMoat(["script", "def", "add", "lib/js", "-", "--language", "javascript"], {
        env,
        stdin: "moat.setup();\n",
      });
      assertEquals(r.code, 0, r.stderr);
      assertEquals(
        (await store.get("/moat/meta/script/lib/js/:code/code"))?.value,
        "moat.setup();\n",
      );
      assertEquals(
        (await store.get("/moat/meta/script/lib/js/:code/language"))?.value,
        "javascript",
      );
    });

    await t.step("def add refuses an existing name", async () => {
      await refused(
        () => moat("script", "def", "add", "porch/light", good),
        1,
        'script "porch/light" already exists',
      );
    });

    await t.step("def add refuses code that fails the check, with NAME:LINE:COL", async () => {
      const before = await dump();
      const r = await moat("script", "def", "add", "broken", bad);
      assertEquals(r.code, 1);
      assertIncludes(r.stderr, "broken:2:9: Expression expected.");
      assertIncludes(r.stderr, 'error: "broken" failed the check');
      assertEquals(await dump(), before);
      const r2 = await moat("script", "def", "add", "importer", imp);
      assertEquals(r2.code, 1);
      assertIncludes(r2.stderr, "importer:1:1: import statements are not allowed");
      assertEquals(await dump(), before);
    });

    await t.step(
      "def list prints name, language and description; --json for machines",
      async () => {
        const r = await moat("script", "def", "list");
        assertEquals(r.code, 0, r.stderr);
        assertEquals(r.stdout, "lib/js       javascript\nporch/light  typescript  Porch light\n");
        const j = await moat("script", "def", "list", "porch", "--json");
        const list = JSON.parse(j.stdout);
        assertEquals(list.length, 1);
        assertEquals(list[0].name, "porch/light");
        assertEquals(list[0].language, "typescript");
      },
    );

    await t.step("def update promotes new code and keeps the old one; revert swaps", async () => {
      const v2 = `${dir}/v2.ts`;
      await Deno.writeTextFile(v2, "moat.setup();\n// v2\n");
      const r = await moat("script", "def", "update", "porch/light", v2);
      assertEquals(r.code, 0, r.stderr);
      assertEquals(
        (await moat("script", "def", "get", "porch/light")).stdout,
        "moat.setup();\n// v2\n",
      );
      assertEquals((await moat("script", "def", "get", "porch/light", "--old")).stdout, GOOD);
      await refused(
        () => moat("script", "def", "update", "porch/light", bad),
        1,
        "porch/light:2:9",
      );
      const rv = await moat("script", "def", "revert", "porch/light");
      assertEquals(rv.code, 0, rv.stderr);
      assertEquals((await moat("script", "def", "get", "porch/light")).stdout, GOOD);
      assertEquals(
        (await moat("script", "def", "get", "porch/light", "--old")).stdout,
        "moat.setup();\n// v2\n",
      );
      await refused(
        () => moat("script", "def", "get", "porch/light", "--new"),
        1,
        "has no new code",
      );
      await refused(() => moat("script", "def", "revert", "lib/js"), 1, "no old code");
    });

    await t.step("script add creates the task and records it in the script's tasks/", async () => {
      const r = await moat(
        "script",
        "add",
        "porch/light",
        "testhost/porch",
        "on=7",
        "level=0.5",
        "Front",
        "door",
      );
      assertEquals(r.code, 0, r.stderr);
      const base = "/moat/task/testhost/porch/:task/";
      assertEquals((await store.get(base + "taskdef"))?.value, "task/script");
      assertEquals((await store.get(base + "script"))?.value, "porch/light");
      assertEquals((await store.get(base + "descr"))?.value, "Front door");
      assertEquals((await store.get(base + "data/on"))?.value, "7");
      assertEquals((await store.get(base + "data/level"))?.value, "0.5");
      const loc = (await store.get(base + "script_loc"))?.value ?? "";
      assert(loc !== "");
      const back = await etcdctl(
        etcd.endpoint,
        "get",
        `/moat/meta/script/porch/light/:code/tasks/${loc}`,
        "--print-value-only",
      );
      assertEquals(back.trim(), "testhost/porch");
      const l = await moat("script", "list");
      assertEquals(l.stdout, "testhost/porch  porch/light  Front door\n");
    });

    await t.step("script param shows and sets data; key= deletes", async () => {
      assertEquals((await moat("script", "param", "testhost/porch")).stdout, "level=0.5\non=7\n");
      const r = await moat("script", "param", "testhost/porch", "on=9", "level=");
      assertEquals(r.code, 0, r.stderr);
      assertEquals(r.stdout, "on=9\n");
      assertEquals(await store.get("/moat/task/testhost/porch/:task/data/level"), undefined);
    });

    await t.step("def delete refuses while tasks use the script, naming them", async () => {
      await refused(() => moat("script", "def", "delete", "porch/light"), 1, "testhost/porch");
    });

    await t.step("script delete removes the task and its tasks/ entry", async () => {
      const r = await moat("script", "delete", "testhost/porch");
      assertEquals(r.code, 0, r.stderr);
      assertEquals((await store.range("/moat/task/")).kvs.length, 0);
      assertEquals((await store.range("/moat/meta/script/porch/light/:code/tasks/")).kvs.length, 0);
      const d = await moat("script", "def", "delete", "porch/light");
      assertEquals(d.code, 0, d.stderr);
      assertEquals((await store.range("/moat/meta/script/porch/")).kvs.length, 0);
    });

    await t.step("def delete --force deletes a script that tasks use", async () => {
      assertEquals((await moat("script", "add", "lib/js", "testhost/x")).code, 0);
      const r = await moat("script", "def", "delete", "lib/js", "--force");
      assertEquals(r.code, 0, r.stderr);
      assertEquals((await moat("script", "delete", "testhost/x")).code, 0);
    });

    await t.step("bad input gets a clear error and changes nothing", async () => {
      await refused(() => moat("script", "frobnicate"), 2, 'unknown command "frobnicate"');
      await refused(() => moat("nothing"), 2, 'unknown command "nothing"');
      await refused(() => moat("script", "def", "list", "--bogus"), 2, "--bogus");
      await refused(() => moat("--bogus", "script"), 2, "--bogus");
      await refused(() => moat("script", "def", "add", "x"), 2, "missing arguments");
      await refused(() => moat("script", "def", "add", "", good), 2, "must not be empty");
      await refused(
        () => moat("script", "def", "add", "a/:code", good),
        2,
        'tagged segment ":code"',
      );
      await refused(() => moat("script", "def", "add", "a/../b", good), 2, 'must not contain ".."');
      await refused(() => moat("script", "def", "add", "a//b", good), 2, "empty segment");
      await refused(() => moat("script", "def", "add", "/a", good), 2, "empty segment");
      await refused(
        () => moat("script", "def", "add", "nofile", `${dir}/missing.ts`),
        2,
        "does not exist",
      );
      await refused(
        () => moat("script", "def", "add", "x", good, "--language", "cobol"),
        2,
        "--language",
      );
      await refused(
        () => moat("script", "def", "get", "nosuch"),
        1,
        'script "nosuch" does not exist',
      );
      await refused(
        () => moat("script", "def", "update", "nosuch", good),
        1,
        'script "nosuch" does not exist',
      );
      await refused(
        () => moat("script", "add", "nosuch", "testhost/t"),
        1,
        'script "nosuch" does not exist',
      );
      await refused(
        () => moat("script", "add", "lib/js", "testhost/t"),
        1,
        'script "lib/js" does not exist',
      );
      await refused(() => moat("script", "add", "x", "onlyhost"), 2, "must start with the host");
      await refused(
        () => moat("script", "param", "testhost/none"),
        1,
        'task "testhost/none" does not exist',
      );
      await refused(
        () => moat("script", "param", "testhost/none", "a=1", "novalue"),
        2,
        '"novalue" is not key=value',
      );
      await refused(() => moat("script", "delete", "testhost/none"), 1, "does not exist");
      await refused(() => moat("script", "def", "list", "a", "b"), 2, "too many arguments");
      await refused(() => moat("--etcd", "ftp://x", "script", "def", "list"), 2, "--etcd");
    });

    await t.step("help is printed at every level", async () => {
      for (
        const args of [["--help"], ["script", "-h"], ["script", "def", "--help"], [
          "script",
          "def",
          "add",
          "--help",
        ], ["script", "param", "-h"]]
      ) {
        const r = await moat(...args);
        assertEquals(r.code, 0, `${args.join(" ")}: ${r.stderr}`);
        assertIncludes(r.stdout, "Usage: moat");
      }
      assertIncludes(
        (await moat("script", "def", "add", "--help")).stdout,
        "NAME FILE|- [DESCRIPTION…]",
      );
    });

    await t.step("an unreachable etcd is one clear line, not a hang", async () => {
      const port = (() => {
        const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
        const p = (l.addr as Deno.NetAddr).port;
        l.close();
        return p;
      })();
      const t0 = performance.now();
      const r = await runMoat(["script", "def", "list"], {
        env: { MOAT_ETCD: `http://127.0.0.1:${port}` },
      });
      const took = performance.now() - t0;
      assertEquals(r.code, 1);
      assertEquals(r.stderr.trim().split("\n").length, 1, r.stderr);
      assert(r.stderr.startsWith("error: "), r.stderr);
      assertIncludes(r.stderr, `127.0.0.1:${port}`);
      // The CLI gives up after 5 s; this bound only catches one that never does
      // (a retry loop), not a slow machine.
      assert(took < 60_000, `took ${took} ms`);
    });
  } finally {
    await store.close();
    await Deno.remove(dir, { recursive: true });
    await etcd.stop();
  }
});
