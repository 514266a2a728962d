/**
 * `deno task compile`: it builds a `moat` binary that answers `--help`, or,
 * where Deno's runtime cannot be had, fails with one clear line.
 */

import { assert, assertEquals, assertIncludes } from "../_util/assert.ts";
import { compileArgs, runtimeProblem } from "../../scripts/compile.ts";

const ROOT = new URL("../../", import.meta.url).pathname;

Deno.test("deno task compile builds dist/moat, or says in one line why it cannot", async () => {
  const dir = await Deno.makeTempDir({ prefix: "moat-compile-" });
  try {
    const out = `${dir}/moat`;
    const res = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-all", `${ROOT}scripts/compile.ts`, "--output", out],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(res.stderr);
    if (res.success) {
      const help = await new Deno.Command(out, { args: ["--help"], stdout: "piped" }).output();
      assertEquals(help.code, 0);
      assertIncludes(new TextDecoder().decode(help.stdout), "moat: the MoaT user-scripts runtime");
      return;
    }
    assertEquals(res.code, 1);
    const errors = stderr.split("\n").filter((l) => l.startsWith("error: "));
    assertEquals(errors.length, 1, stderr);
    assert(
      /^error: (deno compile cannot download Deno's runtime|DENORT_BIN names)/.test(errors[0]!),
      stderr,
    );
    assertIncludes(errors[0]!, "docs/compile.md");
    assert(!stderr.includes("Stack backtrace"), `raw deno output leaked: ${stderr}`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("compile passes the moat task's permissions and embeds the sandbox module and the types", () => {
  const args = compileArgs("/tmp/x/moat");
  // Only --allow-all lets the host read /proc, where it watches its sandboxes.
  assert(args.includes("--allow-all"), args.join(" "));
  const included = args.flatMap((a, i) => args[i - 1] === "--include" ? [a] : []);
  assertEquals(included.map((f) => f.slice(ROOT.length)), [
    "sandbox/process.ts",
    "types/moat.d.ts",
  ]);
  assertEquals(args.slice(-3), ["--output", "/tmp/x/moat", `${ROOT}cli.ts`]);
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
