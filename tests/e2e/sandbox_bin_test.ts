/**
 * The compiled host's way of running scripts, in source form: a sandbox
 * program (`sandboxBin`, by default `MOAT_SANDBOX_BIN`) spawned without
 * arguments instead of `deno run … sandbox/process.ts`. The program here is
 * tests/_util/sandbox_wrapper.ts, which execs `deno run` with the flags the
 * compiled `moat-sandbox` is built with (docs/compile.md).
 */

import { assert, assertEquals, assertIncludes } from "../_util/assert.ts";
import { makeSandboxWrapper } from "../_util/sandbox_wrapper.ts";
import { startEtcd } from "../_util/etcd_server.ts";
import { runMoat } from "../_util/cli.ts";
import { withTimeout } from "../_util/wait.ts";
import { stubMethods } from "../../host/bridge/method_stubs.ts";
import { SandboxPool } from "../../host/bridge/sandbox.ts";
import { EtcdStore } from "../../host/store/etcd_store.ts";

const ROOT = new URL("../../", import.meta.url).pathname;

/** Limits a busy machine cannot reach first: no test here is about them. */
const FAR = { cpu: 10_000, cpuWindow: 60, heartbeat: 3_600 };

const methods = stubMethods({
  time_at: () => Promise.resolve(1_700_000_000),
  wait: () => Promise.resolve(1_700_000_000),
});

/** Logs "denied: …" if importing `specifier` throws, "ALLOWED" if not. */
const tryImport = (specifier: string) => `
moat.setup();
(async () => {
  try {
    await import(${JSON.stringify(specifier)});
    moat.logger.info("ALLOWED");
  } catch (e) {
    moat.logger.info("denied: " + String(e && e.message).slice(0, 200));
  }
  moat.end();
})();
`;

Deno.test("a pool runs scripts in its sandboxBin, started without arguments, with the sandbox's flags", async () => {
  const dir = await Deno.makeTempDir({ prefix: "moat-sandbox-bin-" });
  const wrapper = await makeSandboxWrapper(dir);
  const pool = new SandboxPool({ warm: 0, limits: FAR, sandboxBin: wrapper.path, tmpDir: dir });
  try {
    const logs: string[] = [];
    const run = async (code: string) => {
      const script = await pool.start({
        task: "test/task",
        script: "test/script",
        methods,
        code,
        onLog: (_level, message) => logs.push(message),
      });
      return await withTimeout(script.ended, 60_000, "the script to end");
    };
    const end = await run('moat.setup();\nmoat.logger.info("hi", 6 * 7);\nmoat.end();\n');
    assertEquals(end.state, "ok", end.message);
    assertIncludes(logs.join("\n"), "hi 42");
    // The import map among those flags: a node: built-in is refused.
    const denied = await run(tryImport("node:fs"));
    assertEquals(denied.state, "ok", denied.message);
    const result = logs.find((l) => l.startsWith("denied: ") || l === "ALLOWED");
    assert(result?.startsWith("denied: "), `not denied: ${result}`);
    assertIncludes(result!, "node built-ins are not available to scripts");
    assertEquals(await wrapper.starts(), 2);
  } finally {
    await pool.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("MOAT_SANDBOX_BIN names the sandbox program of deno task run", async () => {
  const etcd = await startEtcd();
  const store = new EtcdStore({ endpoints: [etcd.endpoint] });
  const dir = await Deno.makeTempDir({ prefix: "moat-sandbox-bin-" });
  try {
    const wrapper = await makeSandboxWrapper(dir);
    const env = { MOAT_ETCD: etcd.endpoint, MOAT_AMQP: "none", MOAT_HOST: "box" };
    const file = `${dir}/hello.ts`;
    await Deno.writeTextFile(
      file,
      'moat.setup();\nmoat.logger.info("hello", 40 + 2);\nmoat.end();\n',
    );
    for (
      const args of [["script", "def", "add", "hello", file], [
        "script",
        "add",
        "hello",
        "box/hello",
      ]]
    ) {
      const r = await runMoat(args, { env });
      assertEquals(r.code, 0, r.stderr);
    }
    const r = await runMoat(["--once"], {
      launcher: ["task", "run"],
      cwd: ROOT,
      env: { ...env, MOAT_SANDBOX_BIN: wrapper.path },
    });
    assertEquals(r.code, 0, r.stderr);
    assertIncludes(r.stderr, "[box/hello] hello 42");
    assertEquals((await store.get("/moat/status/run/box/hello/:task/state"))?.value, "ok");
    // Every sandbox of that host came from the wrapper: the one that ran the
    // task, and possibly a warm spare.
    assert(await wrapper.starts() >= 1, "the host did not start the sandbox program");
  } finally {
    await store.close();
    await Deno.remove(dir, { recursive: true });
    await etcd.stop();
  }
});
