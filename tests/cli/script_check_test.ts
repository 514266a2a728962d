/**
 * `moat script check` and the type check of `moat script def add/update`,
 * run as a user runs them: a child process, its stdout, stderr and exit
 * code, against a private etcd where a stored script is checked.
 */

import { assert, assertEquals, assertIncludes } from "../_util/assert.ts";
import { etcdctl, startEtcd } from "../_util/etcd_server.ts";
import { type CliResult, runMoat } from "../_util/cli.ts";

const EXAMPLES = new URL("../../examples/", import.meta.url).pathname;

const TYPE_ERRORS = "moat.setup();\nawait moat.wait(12);\nmoat.setpu();\n";

const DIAGNOSTIC = /^[^ ]+:\d+:\d+: /;

/**
 * A check's output: its `SOURCE:LINE:COL: message` lines, in order, and the
 * other lines of each stream. `check`, `def add` and `def update` print the
 * problems on stderr; one on stdout fails the test.
 */
function split(r: CliResult): { problems: string[]; stdout: string[]; stderr: string[] } {
  const lines = (t: string) => t === "" ? [] : t.replace(/\n$/, "").split("\n");
  const out = lines(r.stdout);
  const err = lines(r.stderr);
  // Problems go to stderr only, whichever command found them.
  const misplaced = out.filter((l) => DIAGNOSTIC.test(l));
  if (misplaced.length > 0) throw new Error(`problems on stdout: ${misplaced.join("\n")}`);
  return {
    problems: err.filter((l) => DIAGNOSTIC.test(l)),
    stdout: out.filter((l) => !DIAGNOSTIC.test(l)),
    stderr: err.filter((l) => !DIAGNOSTIC.test(l)),
  };
}

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
    const { problems: lines, stdout, stderr } = split(r);
    assertEquals(lines.length, 2, r.stdout + r.stderr);
    assert(lines[0]!.startsWith(`${path[0]}:2:17: No overload matches this call.`), lines[0]);
    assertIncludes(lines[0]!, "Argument of type 'number' is not assignable");
    assertEquals(
      lines[1],
      `${path[0]}:3:6: Property 'setpu' does not exist on type 'Moat'. Did you mean 'setup'?`,
    );
    assertEquals(stdout, [`${path[1]}: ok`]);
    assertEquals(stderr, ["error: 2 problems in 1 of 2 scripts"]);
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
    assertEquals(split(r), {
      problems: [
        `${path[0]}:2:9: Expression expected.`,
        `${path[1]}:1:1: import statements are not allowed; use moat.load() to use another script`,
      ],
      stdout: [],
      stderr: ["error: 2 problems in 2 of 2 scripts"],
    });
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
    const { problems: lines, stdout } = split(r);
    assertEquals(lines.length, 2, r.stdout + r.stderr);
    assertEquals(
      lines[0],
      `${path[0]}:2:13: Property 'inf' does not exist on type 'MoatLogger'. Did you mean 'info'?`,
    );
    // run_at's overloads (spec and fn, then the options; or separate spec arguments) need two or more.
    assert(
      lines[1]!.startsWith(`${path[0]}:3:6: Expected at least 2 arguments, but got 1.`),
      lines[1],
    );
    assertEquals(stdout, [`${path[1]}: ok`]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("script check refuses a missing file with a usage error", async () => {
  const r = await runMoat(["script", "check", "/nonexistent/porch.ts"]);
  assertEquals(r.code, 2, r.stderr);
  assertEquals(r.stdout, "");
  assertEquals(
    r.stderr,
    'error: file "/nonexistent/porch.ts" does not exist\n' +
      'Try "moat script check --help" for more information.\n',
  );
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
      const { problems, stdout, stderr } = split(r);
      assertEquals(problems.length, 2, r.stdout + r.stderr);
      assert(problems[0]!.startsWith("porch:2:17: No overload matches this call."), problems[0]);
      assert(problems[1]!.startsWith("porch:3:6: Property 'setpu' does not exist"), problems[1]);
      assertEquals([stdout, stderr], [[], ["error: 2 problems in 1 of 1 script"]]);
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

Deno.test("check, def add and def update print a problem as the same SOURCE:LINE:COL: message line", async () => {
  const etcd = await startEtcd();
  const env = { MOAT_ETCD: etcd.endpoint, MOAT_HOST: "testhost" };
  const moat = (...args: string[]) => runMoat(args, { env });
  const { dir, path } = await tempFiles({
    "bad.ts": TYPE_ERRORS,
    "good.ts": "moat.setup();\nmoat.end();\n",
    "syntax.ts": "moat.setup(\n",
  });
  const [bad, good, syntax] = path as [string, string, string];
  try {
    const file = await moat("script", "check", bad);
    assertEquals(file.code, 1, file.stderr);
    const byFile = split(file).problems;
    assertEquals(byFile.length, 2, file.stdout + file.stderr);
    assert(byFile[0]!.startsWith(`${bad}:2:17: No overload matches this call. `), byFile[0]);
    assertEquals(
      byFile[1],
      `${bad}:3:6: Property 'setpu' does not exist on type 'Moat'. Did you mean 'setup'?`,
    );
    // The same problems under the script's name: SOURCE is what the user named.
    const asName = byFile.map((l) => `porch${l.slice(bad.length)}`);

    /** Assert that a def add/update of `bad` as porch failed the check, printing `asName`. */
    const failedCheck = (r: CliResult) => {
      assertEquals(r.code, 1, r.stderr);
      assertEquals(r.stdout, "");
      assertEquals(r.stderr.trimEnd().split("\n"), [
        ...asName,
        'error: "porch" failed the check (2 problems); nothing was changed',
      ]);
    };
    failedCheck(await moat("script", "def", "add", "porch", bad));

    const syn = await moat("script", "def", "add", "broken", syntax);
    assertEquals(syn.code, 1, syn.stderr);
    assertEquals(syn.stdout, "");
    assertEquals(
      syn.stderr,
      "broken:2:1: ')' expected.\n" +
        'error: "broken" failed the check (1 problem); nothing was changed\n',
    );

    assertEquals((await moat("script", "def", "add", "porch", good)).code, 0);
    failedCheck(await moat("script", "def", "update", "porch", bad));

    // Stored without the type check, `check NAME` reports the same lines.
    assertEquals((await moat("script", "def", "update", "porch", bad, "--no-typecheck")).code, 0);
    const stored = await moat("script", "check", "porch");
    assertEquals(stored.code, 1, stored.stderr);
    assertEquals(split(stored).problems, asName);
  } finally {
    await Deno.remove(dir, { recursive: true });
    await etcd.stop();
  }
});
