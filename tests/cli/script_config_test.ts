/**
 * Run settings, data values and script files through the real `moat` CLI
 * against a private etcd: `moat script add --restart/--retry/--max-retry/--group`,
 * `moat script config`, `moat script param TASK KEY` and `--json`, typed
 * values, the maximum script size and non-UTF-8 files, and tree paths in
 * every PATH filter.
 */

import { assert, assertEquals, assertIncludes } from "../_util/assert.ts";
import { etcdctl, startEtcd } from "../_util/etcd_server.ts";
import { refusalCheck, runMoat } from "../_util/cli.ts";
import { EtcdStore } from "../../host/store/etcd_store.ts";
import { MAX_SCRIPT_BYTES } from "../../host/scripts/definitions.ts";

const GOOD = 'moat.setup();\nmoat.logger.info("hello");\nmoat.end();\n';
const TASK = "/moat/task/h1/porch/:task/";

interface ConfigRow {
  key: string;
  kind: string;
  value: number | string;
  source: string;
  default: number | string;
  installWide: boolean;
  task?: string;
  global?: string;
  ignored: string[];
}

Deno.test("run settings, data values and script files through the moat CLI", async (t) => {
  const etcd = await startEtcd();
  const store = new EtcdStore({ endpoints: [etcd.endpoint] });
  const dir = await Deno.makeTempDir({ prefix: "moat-config-" });
  const env = { MOAT_ETCD: etcd.endpoint, MOAT_HOST: "h1" };
  const moat = (...args: string[]) => runMoat(args, { env });
  const dump = () => etcdctl(etcd.endpoint, "get", "--prefix", "/moat");
  const refused = refusalCheck(dump);
  const config = async (task: string): Promise<Map<string, ConfigRow>> => {
    const r = await moat("script", "config", task, "--json");
    assertEquals(r.code, 0, r.stderr);
    return new Map((JSON.parse(r.stdout) as ConfigRow[]).map((row) => [row.key, row]));
  };
  try {
    const good = `${dir}/good.ts`;
    await Deno.writeTextFile(good, GOOD);
    assertEquals((await moat("script", "def", "add", "greet", good)).code, 0);

    await t.step(
      "script add --restart/--retry/--max-retry store run settings, not data",
      async () => {
        const r = await moat(
          "script",
          "add",
          "greet",
          "h1/porch",
          "who=Alice",
          "--restart",
          "0",
          "--retry",
          "5",
          "--max-retry",
          "60",
        );
        assertEquals(r.code, 0, r.stderr);
        assertEquals((await store.get(TASK + "restart"))?.value, "0");
        assertEquals((await store.get(TASK + "retry"))?.value, "5");
        assertEquals((await store.get(TASK + "max_retry"))?.value, "60");
        assertEquals((await store.range(TASK + "data/")).kvs.map((kv) => kv.key), [
          TASK + "data/who",
        ]);
        assertEquals((await moat("script", "param", "h1/porch")).stdout, "who=Alice\n");
        // The old mistake: restart=0 as a word is a data value, as documented,
        // and the CLI says so.
        const word = await moat("script", "add", "greet", "h1/word", "restart=0");
        assertEquals(word.code, 0, word.stderr);
        assertIncludes(word.stderr, 'warning: restart=… sets the task\'s data value "restart"');
        assertIncludes(word.stderr, "--restart S");
        assertEquals((await store.get("/moat/task/h1/word/:task/data/restart"))?.value, "0");
        assertEquals(await store.get("/moat/task/h1/word/:task/restart"), undefined);
        assertEquals((await moat("script", "delete", "h1/word")).code, 0);
      },
    );

    await t.step("script add refuses a bad run setting naming it, exit 2", async () => {
      await refused(
        () => moat("script", "add", "greet", "h1/other", "--restart", "soon"),
        2,
        'restart = "soon": not a non-negative number',
      );
      await refused(
        () => moat("script", "add", "greet", "h1/other", "--max-retry=-1"),
        2,
        "max_retry",
      );
    });

    await t.step("script add --group and script config group= set the sandbox group", async () => {
      const r = await moat("script", "add", "greet", "h1/grouped", "--group", "porch-lights");
      assertEquals(r.code, 0, r.stderr);
      const dir = "/moat/task/h1/grouped/:task/";
      assertEquals((await store.get(dir + "group"))?.value, "porch-lights");
      const rows = await config("h1/grouped");
      assertEquals(rows.get("group")?.value, "porch-lights");
      assertEquals(rows.get("group")?.source, "task");
      await refused(
        () => moat("script", "config", "h1/grouped", "group=a/b"),
        2,
        'cannot set group = "a/b"',
      );
      assertEquals((await moat("script", "config", "h1/grouped", "group=")).code, 0);
      assertEquals(await store.get(dir + "group"), undefined);
      assertEquals((await config("h1/grouped")).get("group")?.value, "");
      assertEquals((await moat("script", "delete", "h1/grouped")).code, 0);
    });

    await t.step("script config shows every setting with its value and source", async () => {
      await store.put("/moat/config/run/retry", "3");
      await store.put("/moat/config/run/memory", "256");
      await store.put("/moat/config/run/cpu", "lots");
      const rows = await config("h1/porch");
      // Every run setting, sandbox limit and quota is there.
      for (
        const key of [
          "ttl",
          "refresh",
          "restart",
          "retry",
          "max_retry",
          "cpu",
          "cpu_window",
          "memory",
          "heartbeat",
          "flood",
          "value_size",
          "error_records",
          "queue_ttl",
        ]
      ) assert(rows.has(key), `no row for ${key}`);
      assertEquals(rows.get("restart")?.value, 0);
      assertEquals(rows.get("restart")?.source, "task");
      assertEquals(rows.get("restart")?.default, 2);
      assertEquals(rows.get("retry")?.value, 5);
      assertEquals(rows.get("retry")?.source, "task");
      assertEquals(rows.get("retry")?.global, "3");
      assertEquals(rows.get("ttl")?.source, "default");
      assertEquals(rows.get("ttl")?.value, 30);
      assertEquals(rows.get("memory")?.value, 256);
      assertEquals(rows.get("memory")?.source, "/config/run");
      // A hand-typed bad value is shown as ignored, and the default holds.
      assertEquals(rows.get("cpu")?.value, 5);
      assertEquals(rows.get("cpu")?.source, "default");
      assertEquals(rows.get("cpu")?.ignored.length, 1);
      assertIncludes(rows.get("cpu")!.ignored[0]!, '"lots"');
      assertEquals(rows.get("queue_ttl")?.installWide, true);

      const text = await moat("script", "config", "h1/porch");
      assertEquals(text.code, 0, text.stderr);
      const lines = text.stdout.trimEnd().split("\n");
      assert(/^KEY\s+VALUE\s+SOURCE\s+DEFAULT\s+NOTE$/.test(lines[0]!), lines[0]);
      assert(lines.some((l) => /^restart\s+0\s+task\s+2$/.test(l)), text.stdout);
      assert(lines.some((l) => /^memory\s+256\s+\/config\/run\s+128$/.test(l)), text.stdout);
      assert(lines.some((l) => /^cpu\s+5\s+default\s+5\s+ignored: /.test(l)), text.stdout);
      await store.delete("/moat/config/run/cpu");
    });

    await t.step("script config key=value sets, key= removes, both checked first", async () => {
      const r = await moat("script", "config", "h1/porch", "ttl=60", "value_size=131072", "retry=");
      assertEquals(r.code, 0, r.stderr);
      assertEquals((await store.get(TASK + "ttl"))?.value, "60");
      assertEquals((await store.get(TASK + "value_size"))?.value, "131072");
      assertEquals(await store.get(TASK + "retry"), undefined);
      const rows = await config("h1/porch");
      assertEquals(rows.get("ttl")?.source, "task");
      assertEquals(rows.get("value_size")?.value, 131072);
      assertEquals(rows.get("retry")?.value, 3);
      assertEquals(rows.get("retry")?.source, "/config/run");
    });

    await t.step("script config refuses unknown keys and bad values naming the key", async () => {
      await refused(() => moat("script", "config", "h1/porch", "colour=red"), 2, '"colour"');
      await refused(() => moat("script", "config", "h1/porch", "colour="), 2, '"colour"');
      await refused(
        () => moat("script", "config", "h1/porch", "ttl=70", "restart=never"),
        2,
        'restart = "never"',
      );
      await refused(() => moat("script", "config", "h1/porch", "memory=1"), 2, "memory");
      await refused(
        () => moat("script", "config", "h1/porch", "queue_length=5"),
        2,
        "queue_length can only be set in /config/run",
      );
      await refused(
        () => moat("script", "config", "h1/nosuch"),
        1,
        'task "h1/nosuch" does not exist',
      );
    });

    await t.step(
      "script param TASK KEY reads one value; --json as a script reads them",
      async () => {
        await store.put("/moat/meta/script/greet/:code/types/level", "int");
        assertEquals((await moat("script", "param", "h1/porch", "level=7", "on=true")).code, 0);
        const one = await moat("script", "param", "h1/porch", "who");
        assertEquals(one.code, 0, one.stderr);
        assertEquals(one.stdout, "Alice\n");
        const j = await moat("script", "param", "h1/porch", "--json");
        assertEquals(j.code, 0, j.stderr);
        assertEquals(JSON.parse(j.stdout), { level: 7, on: true, who: "Alice" });
        const jl = await moat("script", "param", "h1/porch", "level", "--json");
        assertEquals(jl.stdout.trim(), "7");
        await refused(
          () => moat("script", "param", "h1/porch", "colour"),
          1,
          'task "h1/porch" has no data value "colour"',
        );
      },
    );

    await t.step("typed values that do not parse are usage errors naming the key", async () => {
      await refused(
        () => moat("script", "param", "h1/porch", "level=high"),
        2,
        'value of "level" "high" is not an int',
      );
      await refused(
        () => moat("script", "add", "greet", "h1/other", "level=1.5"),
        2,
        'value of "level" "1.5" is not an int',
      );
      // A stored value that does not fit its type: --json names the key.
      await store.put(TASK + "data/level", "warm");
      const r = await moat("script", "param", "h1/porch", "--json");
      assertEquals(r.code, 1, r.stderr);
      assertIncludes(r.stderr, 'data value "level"');
      assertIncludes(r.stderr, "is not an int");
      // The other values still read one by one.
      const who = await moat("script", "param", "h1/porch", "who", "--json");
      assertEquals(who.code, 0, who.stderr);
      assertEquals(JSON.parse(who.stdout), "Alice");
      await store.put(TASK + "data/level", "7");
    });

    await t.step("a script over the maximum size is refused before anything is sent", async () => {
      const big = `${dir}/big.ts`;
      await Deno.writeTextFile(big, "moat.setup();\n//" + "x".repeat(2 * 1024 * 1024) + "\n");
      await refused(
        () => moat("script", "def", "add", "big", big),
        2,
        `a script may be at most ${MAX_SCRIPT_BYTES} bytes`,
      );
      await refused(() => moat("script", "def", "update", "greet", big), 2, "bytes");
      const r = await moat("script", "def", "add", "big", big);
      assert(!/grpc|etcdserver|request is too large/i.test(r.stderr), r.stderr);
      // Just under the limit is fine.
      const fits = `${dir}/fits.ts`;
      const head = "moat.setup();\n//";
      await Deno.writeTextFile(fits, head + "y".repeat(MAX_SCRIPT_BYTES - head.length - 1) + "\n");
      const ok = await moat("script", "def", "add", "fits", fits, "--no-typecheck");
      assertEquals(ok.code, 0, ok.stderr);
      assertEquals(
        (await store.get("/moat/meta/script/fits/:code/code"))?.value.length,
        MAX_SCRIPT_BYTES,
      );
    });

    await t.step("a file that is not UTF-8 is refused, naming the file and the place", async () => {
      const latin1 = `${dir}/latin1.ts`;
      // "café" in ISO-8859-1: 0xe9 alone is no UTF-8.
      await Deno.writeFile(
        latin1,
        new Uint8Array([...new TextEncoder().encode("moat.setup();\n// caf"), 0xe9, 0x0a]),
      );
      await refused(
        () => moat("script", "def", "add", "latin", latin1),
        2,
        `"${latin1}" is not UTF-8 text: invalid byte 0xe9 at line 2`,
      );
      await refused(() => moat("script", "def", "update", "greet", latin1), 2, "is not UTF-8");
      // Nothing of it was stored under any name.
      assertEquals((await store.range("/moat/meta/script/latin/")).kvs.length, 0);
    });

    await t.step("every PATH filter is a tree path and says when it matches nothing", async () => {
      assertEquals((await moat("script", "add", "greet", "h1/porchsvc")).code, 0);
      assertEquals((await moat("script", "add", "greet", "h1/porch/light")).code, 0);
      const list = await moat("script", "list", "h1/porch");
      assertEquals(list.code, 0, list.stderr);
      assertEquals(
        list.stdout.trimEnd().split("\n").map((l) => l.split(/\s+/)[0]),
        ["h1/porch", "h1/porch/light"],
      );
      const slash = await moat("script", "list", "h1/porch/", "--json");
      assertEquals(
        (JSON.parse(slash.stdout) as { path: string }[]).map((x) => x.path),
        ["h1/porch", "h1/porch/light"],
      );
      const status = await moat("status", "h1/porch", "--json");
      assertEquals(status.code, 0, status.stderr);
      assertEquals(
        (JSON.parse(status.stdout) as { path: string }[]).map((x) => x.path),
        ["h1/porch", "h1/porch/light"],
      );
      // Error records: one of h1/porchsvc, none of h1/porch.
      const rec = "/moat/status/errors/sensor/r1/";
      await store.put(rec + "loc", "h1/porchsvc");
      await store.put(rec + "msg", "svc broke");
      await store.put(rec + "counter", "1");
      const errs = await moat("errors", "h1/porch");
      assertEquals(errs.code, 0, errs.stderr);
      assertEquals(errs.stdout, "");
      assertEquals(errs.stderr, "");
      assertIncludes((await moat("errors", "h1/porchsvc")).stdout, "svc broke");
      const defs = await moat("script", "def", "list", "gre");
      assertEquals(defs.code, 1);
      assertEquals(defs.stdout, "");
      assertEquals(defs.stderr, 'error: no script at or below "gre"\n');

      for (
        const args of [
          ["status", "nosuch"],
          ["status", "h1/porc"],
          ["errors", "nosuch"],
          ["script", "list", "h1/por"],
        ]
      ) {
        const r = await moat(...args);
        assertEquals(r.code, 1, `${args.join(" ")}: ${r.stderr}`);
        assertEquals(r.stdout, "", args.join(" "));
        assertEquals(r.stderr, `error: no task at or below "${args.at(-1)}"\n`, args.join(" "));
      }
      const json = await moat("status", "nosuch", "--json");
      assertEquals(json.code, 1);
      assertEquals(JSON.parse(json.stdout), []);
      assertIncludes(json.stderr, 'no task at or below "nosuch"');
      // Without a filter, an empty list is no error.
      const none = await runMoat(["status"], { env: { ...env, MOAT_ROOT: "/empty" } });
      assertEquals(none.code, 0, none.stderr);
      assertEquals(none.stderr, "");
    });
  } finally {
    await store.close();
    await Deno.remove(dir, { recursive: true });
    await etcd.stop();
  }
});
