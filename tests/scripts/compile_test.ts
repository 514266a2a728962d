/**
 * `deno task compile`: where Deno's runtime (denort) can be had, it builds
 * `moat` and `moat-sandbox`, and the compiled host runs a task in the
 * compiled sandbox against a private etcd; where it cannot, it fails with
 * exit code 3 and one line saying why. Which of the two happened is printed.
 */

import { assert, assertEquals, assertIncludes } from "../_util/assert.ts";
import { startEtcd } from "../_util/etcd_server.ts";
import { makeSandboxWrapper } from "../_util/sandbox_wrapper.ts";
import { withTimeout } from "../_util/wait.ts";
import {
  BuildCheckError,
  checkSandbox,
  hostCompileArgs,
  RUNTIME_UNAVAILABLE,
  runtimeProblem,
  sandboxCompileArgs,
} from "../../scripts/compile.ts";
import { sandboxRunFlags } from "../../host/bridge/sandbox.ts";
import { SandboxPool } from "../../host/bridge/sandbox.ts";
import { stubMethods } from "../../host/bridge/method_stubs.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
const dec = new TextDecoder();

/** Run `deno task compile --output DIR/moat` with `env`; its exit code and stderr. */
async function compile(dir: string, env: Record<string, string> = {}) {
  const res = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", `${ROOT}scripts/compile.ts`, "--output", `${dir}/moat`],
    env,
    stdout: "piped",
    stderr: "piped",
  }).output();
  return { code: res.code, stderr: dec.decode(res.stderr) };
}

/** The `error: …` lines of `stderr`: exactly one, returned. */
function oneError(stderr: string): string {
  const errors = stderr.split("\n").filter((l) => l.startsWith("error: "));
  assertEquals(errors.length, 1, stderr);
  assert(!stderr.includes("Stack backtrace"), `raw deno output leaked: ${stderr}`);
  return errors[0]!;
}

/** Run `moat ARGS` (the compiled one) with `env`. */
async function moat(bin: string, args: string[], env: Record<string, string>) {
  const out = await new Deno.Command(bin, { args, env, stdout: "piped", stderr: "piped" })
    .output();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** What a built pair must do: run a task in the compiled sandbox, and refuse node: there. */
async function checkBuilt(dir: string) {
  const bin = `${dir}/moat`;
  const etcd = await startEtcd();
  try {
    // No MOAT_SANDBOX_BIN here: the host finds its sandbox by the one it was built with.
    const env = { MOAT_ETCD: etcd.endpoint, MOAT_AMQP: "none", MOAT_HOST: "box", TMPDIR: dir };
    const file = `${dir}/hello.ts`;
    await Deno.writeTextFile(
      file,
      'moat.setup();\nmoat.logger.info("hello", 40 + 2);\nmoat.end();\n',
    );
    for (
      const a of [["script", "def", "add", "hello", file], ["script", "add", "hello", "box/hello"]]
    ) {
      const r = await moat(bin, a, env);
      assertEquals(r.code, 0, r.stderr);
    }
    const run = await moat(bin, ["run", "--once"], env);
    assertEquals(run.code, 0, run.stderr);
    assertIncludes(run.stderr, "[box/hello] hello 42");
  } finally {
    await etcd.stop();
  }
  // The compiled sandbox's import map: node: built-ins refused.
  const pool = new SandboxPool({ warm: 0, sandboxBin: `${dir}/moat-sandbox`, tmpDir: dir });
  try {
    const logs: string[] = [];
    const script = await pool.start({
      task: "t/t",
      script: "t",
      methods: stubMethods(),
      code: 'moat.setup();\n(async () => { try { await import("node:process"); ' +
        'moat.logger.info("ALLOWED"); } catch (e) { moat.logger.info("denied: " + e.message); } ' +
        "moat.end(); })();\n",
      onLog: (_l, m) => logs.push(m),
    });
    const end = await withTimeout(script.ended, 60_000, "the script in moat-sandbox to end");
    assertEquals(end.state, "ok", end.message);
    assert(logs.some((l) => l.startsWith("denied: ")), logs.join("\n"));
  } finally {
    await pool.close();
  }
}

Deno.test("deno task compile builds moat and moat-sandbox that run a task, or says in one line why it cannot", async () => {
  const dir = await Deno.makeTempDir({ prefix: "moat-compile-" });
  try {
    const res = await compile(dir);
    if (res.code === 0) {
      console.log("[compile] built moat and moat-sandbox: checking that they run a task");
      await checkBuilt(dir);
      return;
    }
    console.log(
      "[compile] NOT BUILT: no Deno runtime (denort) on this machine; checked the message",
    );
    assertEquals(res.code, RUNTIME_UNAVAILABLE, res.stderr);
    const error = oneError(res.stderr);
    assert(
      /^error: (deno compile cannot download Deno's runtime|DENORT_BIN names|the runtime given as DENORT_BIN)/
        .test(error),
      res.stderr,
    );
    assertIncludes(error, "docs/compile.md");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("deno task compile refuses a full deno given as DENORT_BIN, in one line", async () => {
  const dir = await Deno.makeTempDir({ prefix: "moat-compile-" });
  try {
    // Deno accepts it, and makes a binary that runs as deno, not as moat.
    const res = await compile(dir, { DENORT_BIN: Deno.execPath() });
    assertEquals(res.code, RUNTIME_UNAVAILABLE, res.stderr);
    const error = oneError(res.stderr);
    assertIncludes(error, "is a full deno, not a denort");
    assertIncludes(error, "docs/compile.md");
    // The programs it made run as deno: removed, so that none is deployed.
    assertEquals([...Deno.readDirSync(dir)].map((e) => e.name), []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the sandbox is compiled with no permission and a sandbox's deno run flags", () => {
  const args = sandboxCompileArgs("/tmp/x/moat-sandbox", { heapMb: 96 });
  assert(!args.some((a) => a.startsWith("--allow")), args.join(" "));
  for (const flag of sandboxRunFlags(96)) assert(args.includes(flag), flag);
  assert(args.includes("--v8-flags=--max-old-space-size=96"));
  assertEquals(args.slice(-3), ["--output", "/tmp/x/moat-sandbox", `${ROOT}sandbox/process.ts`]);
});

Deno.test("the host is compiled with --allow-all, the API types, the type-check Worker and its sandbox's path", () => {
  const args = hostCompileArgs("/tmp/x/moat", "/tmp/e/moat.env");
  // Only --allow-all lets the host read /proc, where it watches its sandboxes.
  assert(args.includes("--allow-all"), args.join(" "));
  const included = args.flatMap((a, i) => args[i - 1] === "--include" ? [a] : []);
  // The API types, and the Worker that type-checks a hand-written new_code
  // (a Worker's module is not reached by static imports).
  assertEquals(included.map((f) => f.slice(ROOT.length)), [
    "types/moat.d.ts",
    "host/scripts/_typecheck_worker.ts",
  ]);
  // MOAT_SANDBOX_BIN, embedded from this file.
  assert(args.includes("--env-file=/tmp/e/moat.env"), args.join(" "));
  assertEquals(args.slice(-3), ["--output", "/tmp/x/moat", `${ROOT}cli.ts`]);
});

Deno.test("the build check accepts a sandbox that reports ready and refuses one that does not", async () => {
  const dir = await Deno.makeTempDir({ prefix: "moat-compile-" });
  try {
    // The source-form stand-in of moat-sandbox: deno run with the same flags.
    const wrapper = await makeSandboxWrapper(dir);
    await checkSandbox(wrapper.path);
    assertEquals(await wrapper.starts(), 1);
    const mute = `${dir}/mute`;
    await Deno.writeTextFile(mute, "#!/bin/sh\necho hello\n");
    await Deno.chmod(mute, 0o755);
    const err = await checkSandbox(mute).then(() => undefined, (e) => e);
    assert(err instanceof BuildCheckError, String(err));
    assertIncludes(err.message, 'its first line was "hello"');
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("runtimeProblem recognises the runtime download and DENORT_BIN failures only", () => {
  assertIncludes(
    runtimeProblem(
      "error: Writing deno compile executable\n    0: Setting up base binary.\n    1: error sending " +
        "request for url (https://dl.deno.land/release/v2.9.6/denort-x86_64-unknown-linux-gnu.zip): dns",
    )!,
    "cannot download Deno's runtime (denort from https://dl.deno.land/release/v2.9.6/denort-x86_64-unknown-linux-gnu.zip)",
  );
  assertIncludes(
    runtimeProblem("0: Could not find denort at '/x/denort'")!,
    'DENORT_BIN names "/x/denort"',
  );
  assertEquals(runtimeProblem('error: Module not found "file:///cli.ts"'), undefined);
});
