/**
 * `moat script check` and the type check of `moat script def add/update`,
 * run as a user runs them: a child process, its stdout, stderr and exit
 * code, against a private etcd where a stored script is checked.
 */

import { assert, assertEquals, assertIncludes } from "../_util/assert.ts";
import { etcdctl, startEtcd } from "../_util/etcd_server.ts";
import { runMoat } from "../_util/cli.ts";

const EXAMPLES = new URL("../../examples/", import.meta.url).pathname;

const TYPE_ERRORS = "moat.setup();\nawait moat.wait(12);\nmoat.setpu();\n";

async function tempFiles(files: Record<string, string>): Promise<{ dir: string; path: string[] }> {
  const dir = await Deno.makeTempDir({ prefix: "moat-check-" });
  const path: string[] = [];
  for (const [name, text] of Object.entries(files)) {
    await Deno.writeTextFile(`${dir}/${name}`, text);
    path.push(`${dir}/${name}`);
  }
  return { dir, path };
}

Deno.test("script check passes every example script", async () => {
  const files = [...Deno.readDirSync(EXAMPLES)].filter((e) => e.name.endsWith(".ts"))
    .map((e) => `${EXAMPLES}${e.name}`).sort();
  assert(files.length >= 9, `only ${files.length} examples`);
  const r = await runMoat(["script", "check", ...files]);
  assertEquals(r.code, 0, r.stdout + r.stderr);
  assertEquals(r.stdout, files.map((f) => `${f}: ok\n`).join(""));
  assertEquals(r.stderr, "");
});

Deno.test("script check reports type errors as FILE:LINE:COL and exits 1", async () => {
  const { dir, path } = await tempFiles({
    "bad.ts": TYPE_ERRORS,
    "good.ts":
      'moat.setup();\nconst t: number = await moat.time_at("7 hr");\nmoat.logger.info(t);\n',
  });
  try {
    const r = await runMoat(["script", "check", ...path]);
    assertEquals(r.code, 1, r.stderr);
    const lines = r.stdout.trimEnd().split("\n");
    assertEquals(lines.length, 3, r.stdout);
    assert(lines[0]!.startsWith(`${path[0]}:2:17: No overload matches this call.`), lines[0]);
    assertIncludes(lines[0]!, "Argument of type 'number' is not assignable");
    assertEquals(
      lines[1],
      `${path[0]}:3:6: Property 'setpu' does not exist on type 'Moat'. Did you mean 'setup'?`,
    );
    assertEquals(lines[2], `${path[1]}: ok`);
    assertEquals(r.stderr, "error: 2 problems in 1 of 2 scripts\n");
    // --no-typecheck: only syntax and imports.
    const n = await runMoat(["script", "check", "--no-typecheck", path[0]!]);
    assertEquals(n.code, 0, n.stdout + n.stderr);
    assertEquals(n.stdout, `${path[0]}: ok\n`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("script check reports syntax and import errors once, without type noise", async () => {
  const { dir, path } = await tempFiles({
    "syntax.ts": "moat.setup();\nlet x = ;\n",
    "imp.ts": 'import x from "npm:left-pad";\nmoat.setup();\n',
  });
  try {
    const r = await runMoat(["script", "check", ...path]);
    assertEquals(r.code, 1, r.stderr);
    assertEquals(
      r.stdout,
      `${path[0]}:2:9: Expression expected.\n${path[1]}:1:1: ` +
        "import statements are not allowed; use moat.load() to use another script\n",
    );
    assertEquals(r.stderr, "error: 2 problems in 2 of 2 scripts\n");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("script check checks JavaScript for unknown members and wrong arguments, not for strictness", async () => {
  const { dir, path } = await tempFiles({
    "bad.js": "moat.setup();\nmoat.logger.inf('x');\nmoat.run_at('7 hr');\n",
    "loose.js": "moat.setup();\nconst n = await moat.tree.lookup('a');\n" +
      "moat.logger.info(n.path, (x) => x);\n",
  });
  try {
    const r = await runMoat(["script", "check", ...path]);
    assertEquals(r.code, 1, r.stderr);
    const lines = r.stdout.trimEnd().split("\n");
    assertEquals(
      lines[0],
      `${path[0]}:2:13: Property 'inf' does not exist on type 'MoatLogger'. Did you mean 'info'?`,
    );
    assert(lines[1]!.startsWith(`${path[0]}:3:6: Expected 2-3 arguments, but got 1.`), lines[1]);
    assertEquals(lines[2], `${path[1]}: ok`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("script check refuses a missing file with a usage error", async () => {
  const r = await runMoat(["script", "check", "/nonexistent/porch.ts"]);
  assertEquals(r.code, 2, r.stderr);
  assertEquals(r.stdout, "");
  assertEquals(r.stderr, 'error: file "/nonexistent/porch.ts" does not exist\n');
});

Deno.test("script check NAME checks a stored script; def add/update refuse type errors unless --no-typecheck", async (t) => {
  const etcd = await startEtcd();
  const env = { MOAT_ETCD: etcd.endpoint, MOAT_HOST: "testhost" };
  const moat = (...args: string[]) => runMoat(args, { env });
  const dump = () => etcdctl(etcd.endpoint, "get", "--prefix", "/moat");
  const { dir, path } = await tempFiles({
    "bad.ts": TYPE_ERRORS,
    "good.ts": "moat.setup();\nmoat.end();\n",
  });
  const [bad, good] = path as [string, string];
  try {
    await t.step("def add with a type error is refused and changes nothing", async () => {
      const before = await dump();
      const r = await moat("script", "def", "add", "porch", bad);
      assertEquals(r.code, 1, r.stderr);
      assertIncludes(r.stderr, "porch:2:17: No overload matches this call.");
      assertIncludes(
        r.stderr,
        "porch:3:6: Property 'setpu' does not exist on type 'Moat'. Did you mean 'setup'?",
      );
      assertIncludes(r.stderr, 'error: "porch" failed the check (2 problems); nothing was changed');
      assertEquals(await dump(), before);
    });

    await t.step("def add --no-typecheck stores it (the syntax check still runs)", async () => {
      const r = await moat("script", "def", "add", "porch", bad, "--no-typecheck");
      assertEquals(r.code, 0, r.stderr);
      assertEquals(r.stdout, "added script porch\n");
      const code = await etcdctl(
        etcd.endpoint,
        "get",
        "/moat/meta/script/porch/:code/code",
        "--print-value-only",
      );
      assertEquals(code.trimEnd(), TYPE_ERRORS.trimEnd());
      const s = await moat("script", "def", "add", "broken", `${dir}/syntax.ts`, "--no-typecheck");
      assertEquals(s.code, 2, s.stderr); // no such file: a usage error
      await Deno.writeTextFile(`${dir}/syntax.ts`, "moat.setup(\n");
      const before = await dump();
      const y = await moat("script", "def", "add", "broken", `${dir}/syntax.ts`, "--no-typecheck");
      assertEquals(y.code, 1, y.stderr);
      assertIncludes(y.stderr, "broken:2:1: ')' expected.");
      assertEquals(await dump(), before);
    });

    await t.step("script check NAME reads the stored code and reports under its name", async () => {
      const r = await moat("script", "check", "porch");
      assertEquals(r.code, 1, r.stderr);
      assert(r.stdout.startsWith("porch:2:17: No overload matches this call."), r.stdout);
      assertIncludes(r.stdout, "porch:3:6: Property 'setpu' does not exist");
      assertEquals(r.stderr, "error: 2 problems in 1 of 1 script\n");
      const missing = await moat("script", "check", "nosuch");
      assertEquals(missing.code, 1, missing.stderr);
      assertEquals(missing.stderr, 'error: script "nosuch" does not exist\n');
    });

    await t.step(
      "def update refuses a type error, takes good code and --no-typecheck",
      async () => {
        const before = await dump();
        const r = await moat("script", "def", "update", "porch", bad);
        assertEquals(r.code, 1, r.stderr);
        assertIncludes(r.stderr, "porch:3:6: Property 'setpu'");
        assertEquals(await dump(), before);
        const ok = await moat("script", "def", "update", "porch", good);
        assertEquals(ok.code, 0, ok.stderr);
        const c = await moat("script", "check", "porch");
        assertEquals([c.code, c.stdout], [0, "porch: ok\n"]);
        const skip = await moat("script", "def", "update", "porch", bad, "--no-typecheck");
        assertEquals(skip.code, 0, skip.stderr);
        assertEquals(skip.stdout, "updated script porch\n");
      },
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
    await etcd.stop();
  }
});
