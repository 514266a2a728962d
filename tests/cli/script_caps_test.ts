/**
 * `moat script caps` through the real CLI against a private etcd: show,
 * set (JSON, YAML, standard input) and clear a script's and a task's
 * capability manifest; bad manifests and bad usage change nothing.
 */

import { assert, assertEquals, assertIncludes } from "../_util/assert.ts";
import { etcdctl, startEtcd } from "../_util/etcd_server.ts";
import { refusalCheck, runMoat } from "../_util/cli.ts";

const GOOD = 'moat.setup();\nmoat.logger.info("hello");\nmoat.end();\n';
const SCRIPT_CAPS = "/moat/meta/script/lamp/:code/caps";
const TASK_CAPS = "/moat/task/h1/porch/:task/caps";

Deno.test("moat script caps shows, sets and clears capability manifests", async (t) => {
  const etcd = await startEtcd();
  const dir = await Deno.makeTempDir({ prefix: "moat-caps-" });
  const env = { MOAT_ETCD: etcd.endpoint, MOAT_HOST: "h1" };
  const moat = (args: string[], stdin?: string) =>
    runMoat(args, { env, ...(stdin !== undefined ? { stdin } : {}) });
  const dump = () => etcdctl(etcd.endpoint, "get", "--prefix", "/moat");
  const get = async (key: string) =>
    (await etcdctl(etcd.endpoint, "get", "--print-value-only", key)).trim();
  const refused = refusalCheck(dump);
  try {
    await Deno.writeTextFile(`${dir}/lamp.ts`, GOOD);
    assertEquals((await moat(["script", "def", "add", "lamp", `${dir}/lamp.ts`])).code, 0);
    assertEquals((await moat(["script", "add", "lamp", "h1/porch"])).code, 0);

    await t.step("a script without a manifest says so", async () => {
      const r = await moat(["script", "caps", "lamp"]);
      assertEquals(r.code, 0, r.stderr);
      assertEquals(r.stdout, "");
      assertIncludes(r.stderr, "script lamp has no capability manifest");
    });

    await t.step("--set stores canonical JSON; the manifest prints as JSON or YAML", async () => {
      const file = `${dir}/caps.json`;
      await Deno.writeTextFile(
        file,
        '{ "rpc": {"serve": ["lamp.*"]}, "tree": {"read": ["/device/"]}, "limits": {"monitors": 5} }',
      );
      const r = await moat(["script", "caps", "lamp", "--set", file]);
      assertEquals(r.code, 0, r.stderr);
      assertIncludes(r.stdout, "stored the capability manifest of script lamp");
      assertEquals(
        await get(SCRIPT_CAPS),
        '{"rpc":{"serve":["lamp.*"]},"tree":{"read":["device"]},"limits":{"monitors":5}}',
      );
      const shown = await moat(["script", "caps", "lamp", "--json"]);
      assertEquals(shown.code, 0, shown.stderr);
      assertEquals(JSON.parse(shown.stdout), {
        rpc: { serve: ["lamp.*"] },
        tree: { read: ["device"] },
        limits: { monitors: 5 },
      });
      const yaml = await moat(["script", "caps", "lamp", "--yaml"]);
      assertEquals(yaml.code, 0, yaml.stderr);
      assertIncludes(yaml.stdout, "rpc:\n  serve:\n    - lamp.*");
    });

    await t.step("YAML on standard input works too, for a task's own manifest", async () => {
      const r = await moat(
        ["script", "caps", "--task", "h1/porch", "--set", "-"],
        "alert:\n  send: [lamp.#]\nload: [lib/units]\n",
      );
      assertEquals(r.code, 0, r.stderr);
      assertEquals(await get(TASK_CAPS), '{"alert":{"send":["lamp.#"]},"load":["lib/units"]}');
      const shown = await moat(["script", "caps", "--task", "h1/porch"]);
      assertEquals(JSON.parse(shown.stdout), { alert: { send: ["lamp.#"] }, load: ["lib/units"] });
    });

    await t.step("bad manifests and bad usage are refused, naming the problem", async () => {
      const bad = `${dir}/bad.json`;
      await Deno.writeTextFile(bad, '{"rpc": {"serve": ["bad name!"]}}');
      await refused(() => moat(["script", "caps", "lamp", "--set", bad]), 2, "rpc.serve:");
      await Deno.writeTextFile(bad, '{"thread": 1, "tree": {}}');
      await refused(
        () => moat(["script", "caps", "lamp", "--set", bad]),
        2,
        "thread: must be true or false, not 1",
      );
      await Deno.writeTextFile(bad, '{"threads": false}');
      await refused(
        () => moat(["script", "caps", "lamp", "--set", bad]),
        2,
        'unknown member "threads"',
      );
      await Deno.writeTextFile(bad, '{"limits": {"queue_ttl": 5}}');
      await refused(
        () => moat(["script", "caps", "lamp", "--set", bad]),
        2,
        'unknown key "queue_ttl"',
      );
      await Deno.writeTextFile(bad, "{ not: [json");
      await refused(
        () => moat(["script", "caps", "lamp", "--set", bad]),
        2,
        "neither JSON nor YAML",
      );
      await refused(() => moat(["script", "caps"]), 2, "name a script, or a task with --task");
      await refused(
        () => moat(["script", "caps", "lamp", "--task", "h1/porch"]),
        2,
        "not both",
      );
      await refused(
        () => moat(["script", "caps", "lamp", "--clear", "--set", bad]),
        2,
        "--set and --clear exclude each other",
      );
      await refused(() => moat(["script", "caps", "nosuch"]), 1, "nosuch");
      const r = await moat(["script", "caps", "lamp", "--set", `${dir}/none.json`]);
      assertEquals(r.code, 2);
      assert(r.stderr.includes('Try "moat script caps --help"'), r.stderr);
    });

    await t.step("--clear removes a manifest", async () => {
      const r = await moat(["script", "caps", "--task", "h1/porch", "--clear"]);
      assertEquals(r.code, 0, r.stderr);
      assertEquals(await get(TASK_CAPS), "");
      assertEquals(await get(SCRIPT_CAPS) !== "", true);
      const shown = await moat(["script", "caps", "--task", "h1/porch"]);
      assertIncludes(shown.stderr, "task h1/porch has no capability manifest of its own");
    });

    await t.step(
      "script check --caps warns of literal uses the manifest does not grant",
      async () => {
        const code = [
          "moat.setup();",
          'await moat.call("door.open", null);',
          'await moat.call("sun.rise");',
          'moat.rpc("door.open")(() => 1);',
          'await moat.alert("door.x");',
          'moat.on_alert("#")(() => {});',
          'await moat.load("lib/x");',
          'await moat.tree.lookup("config", "site");',
          'await moat.data.set("other", 1);',
          'const n = "door.open";',
          "await moat.call(n);",
          "await moat.thread((a: number) => a + 1, 1);",
          "moat.end();",
          "",
        ].join("\n");
        const file = `${dir}/porch.ts`;
        await Deno.writeTextFile(file, code);
        const caps = `${dir}/porch-caps.yaml`;
        await Deno.writeTextFile(
          caps,
          "rpc: {serve: [lamp.*], call: [sun.*]}\nalert: {send: [lamp.#], receive: [door.#]}\n" +
            "load: []\ntree: {read: [device/]}\ndata: {write: [count]}\nthread: false\n",
        );
        const r = await moat(["script", "check", file, "--caps", caps, "--no-typecheck"]);
        assertEquals(r.code, 0, r.stderr);
        assertEquals(r.stdout, `${file}: ok\n`);
        assertEquals(r.stderr.split("\n").filter((l) => l !== ""), [
          `${file}:2:17: warning: rpc.call "door.open" is not granted by the manifest`,
          `${file}:4:10: warning: rpc.serve "door.open" is not granted by the manifest`,
          `${file}:5:18: warning: alert.send "door.x" is not granted by the manifest`,
          `${file}:6:15: warning: alert.receive "#" is not granted by the manifest`,
          `${file}:7:17: warning: load "lib/x" is not granted by the manifest`,
          `${file}:8:24: warning: tree.read "config/site" is not granted by the manifest`,
          `${file}:9:21: warning: data.write "other" is not granted by the manifest`,
          `${file}:12:7: warning: moat.thread ("thread": false) is not granted by the manifest`,
        ]);
        // A stored script is checked against its stored manifest.
        assertEquals(
          (await moat(["script", "def", "add", "porch", file, "--no-typecheck"])).code,
          0,
        );
        await Deno.writeTextFile(`${dir}/call.json`, '{"rpc": {"call": ["sun.*"]}}');
        assertEquals(
          (await moat(["script", "caps", "porch", "--set", `${dir}/call.json`])).code,
          0,
        );
        const stored = await moat(["script", "check", "porch", "--no-typecheck"]);
        assertEquals(stored.code, 0, stored.stderr);
        assertEquals(
          stored.stderr,
          'porch:2:17: warning: rpc.call "door.open" is not granted by the manifest\n',
        );
      },
    );

    await t.step("script config shows the manifest's limits with source manifest", async () => {
      // The script's manifest (limits.monitors = 5) applies: the task has none of its own.
      const r = await moat(["script", "config", "h1/porch", "--json", "monitors=9"]);
      assertEquals(r.code, 0, r.stderr);
      const rows = JSON.parse(r.stdout) as { key: string; value: number; source: string }[];
      const monitors = rows.find((row) => row.key === "monitors")!;
      assertEquals([monitors.value, monitors.source], [5, "manifest"]);
      assertEquals(rows.find((row) => row.key === "registrations")!.source, "default");
      const text = await moat(["script", "config", "h1/porch"]);
      assert(/^monitors\s+5\s+manifest\s/m.test(text.stdout), text.stdout);
    });

    await t.step("script try --caps runs the script under the manifest", async () => {
      const file = `${dir}/try.js`;
      await Deno.writeTextFile(
        file,
        "moat.setup();\n" +
          'try { await moat.call("door.open", null, { timeout: 1 }); } catch (e) { moat.logger.info("got " + e.code + " " + e.message); }\n' +
          "moat.end();\n",
      );
      await Deno.writeTextFile(`${dir}/try-caps.json`, '{"rpc": {"call": ["sun.*"]}}');
      const r = await moat([
        "script",
        "try",
        file,
        "--caps",
        `${dir}/try-caps.json`,
        "--no-typecheck",
        "--tz",
        "UTC",
      ]);
      assertEquals(r.code, 0, r.stdout + r.stderr);
      assertIncludes(
        r.stdout,
        'got denied denied: rpc.call "door.open" is not in this script\'s manifest',
      );
      const plain = await moat(["script", "try", file, "--no-typecheck", "--tz", "UTC"]);
      assert(!plain.stdout.includes("got denied"), plain.stdout);
      await Deno.writeTextFile(`${dir}/try-caps.json`, '{"rpc": {"call": "sun.*"}}');
      const bad = await moat(["script", "try", file, "--caps", `${dir}/try-caps.json`]);
      assertEquals(bad.code, 2, bad.stderr);
      assertIncludes(bad.stderr, "rpc.call: must be a list");
    });

    await t.step("--help describes the command", async () => {
      const r = await moat(["script", "caps", "--help"]);
      assertEquals(r.code, 0);
      assertIncludes(r.stdout, "--task TASK");
      assertIncludes(r.stdout, "capability manifest");
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
    await etcd.stop();
  }
});
