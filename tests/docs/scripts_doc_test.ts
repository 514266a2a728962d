/**
 * Every code block of docs/scripts.md is exercised, so the guide cannot rot:
 *
 * - `ts` blocks: each one is type-checked against types/moat.d.ts (with the
 *   project's strict options), and so is every `@example` in that file.
 *   A ts block must carry a marker comment on the line(s) above it:
 *   - `<!-- script: NAME attrs… -->`: run as script NAME in task `h/NAME` on a
 *     real Host (MemoryStore, real sandbox processes). Attributes, in order:
 *     `type.K=T` / `value.K=V` (the script's types/ and values/), `data.K=V`
 *     (the task's data/), `tree.PATH=V` (put below /moat before the start),
 *     `tz=ZONE` (/moat/config/timezone), then the steps after the start:
 *     `expect=LINE` (wait for the task to log exactly LINE, after the line of
 *     the previous expect) and `then.PATH=V` (put below /moat). At the end:
 *     `ends=ok` (default: the run ended with state ok), `ends=error` (with
 *     `message=TEXT` its exact message), or `ends=running` (it still runs,
 *     nothing ended it); `record.TAG=MSG` (the task has error record TAG
 *     with that message). Values may be quoted "…" with \" inside.
 *   - `<!-- lib: NAME -->`: stored as script NAME for every script run.
 *   - `<!-- file: NAME -->`: a tutorial file, written to NAME at that point of
 *     the tutorial (see shell blocks).
 *   - `<!-- check -->`: type-checked only (AMQP members not in the runtime yet).
 * - `sh` blocks marked `<!-- shell: run -->` are the tutorial: run in order by
 *   one bash, as written, with `HOME` in a temporary folder (where
 *   `~/src/moat-scripts` is this checkout), `MOAT_ETCD` pointing at a private
 *   etcd, and the `file:` blocks written in between. The tutorial installs
 *   the `moat` command itself (`deno task install`), into `~/.deno/bin` of
 *   that temporary `HOME`, and every later step runs that installed `moat`. A `text` block marked
 *   `<!-- output -->` after a run block lists lines its output (stdout and
 *   stderr) must contain in that order; `…` matches anything and runs of
 *   blanks match any blanks.
 * - `sh` blocks marked `<!-- shell: show -->` are NOT executed: they start a
 *   long-running etcd, install a systemd unit, or show etcdctl by hand, none
 *   of which a test may do to the machine. Every sh block needs one of the two
 *   markers, so nothing is left out silently.
 */

import { assert, assertEquals } from "../_util/assert.ts";
import { withTimeout } from "../_util/wait.ts";
import { startEtcd } from "../_util/etcd_server.ts";
import { hostHarness } from "../_util/host_harness.ts";
import { Layout } from "../../host/layout.ts";
import { ErrorRecords } from "../../host/capabilities/error_records.ts";
import { SystemClock } from "../../host/time/clock.ts";
import { registryEnv } from "../_util/registry_env.ts";

const ROOT = new URL("../../", import.meta.url);
const DOC = new URL("docs/scripts.md", ROOT);
const DTS = new URL("types/moat.d.ts", ROOT);
/** Bound of a wait for what must happen: generous, it only catches a hang. */
const WAIT_MS = 60_000;

interface Marker {
  kind: string;
  arg: string;
  attrs: [string, string][];
}

interface Block {
  lang: string;
  code: string;
  /** 1-based line of the opening fence. */
  line: number;
  marker: Marker | undefined;
}

/** Split `a=b c="d e" f` into pairs (a bare word has the value ""). */
function parseAttrs(text: string): [string, string][] {
  const out: [string, string][] = [];
  const re = /([^\s=]+)(?:=(?:"((?:[^"\\]|\\.)*)"|(\S*)))?/g;
  for (const m of text.matchAll(re)) {
    const quoted = m[2] !== undefined ? m[2].replace(/\\(.)/g, "$1") : undefined;
    out.push([m[1]!, quoted ?? m[3] ?? ""]);
  }
  return out;
}

function parseMarker(line: string): Marker | undefined {
  const m = /^<!--\s*([a-z]+)(?::\s*([\s\S]*?))?\s*-->$/.exec(line.trim());
  if (!m) return undefined;
  const rest = parseAttrs(m[2] ?? "");
  const first = rest[0];
  const arg = first && first[1] === "" ? first[0] : "";
  return { kind: m[1]!, arg, attrs: arg ? rest.slice(1) : rest };
}

/** The fenced blocks of a Markdown text, each with the marker comment above it. */
function blocksOf(md: string): Block[] {
  const lines = md.split("\n");
  const out: Block[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^```(\S*)\s*$/.exec(lines[i]!);
    if (!open) continue;
    let j = i + 1;
    while (j < lines.length && lines[j] !== "```") j++;
    let k = i - 1;
    while (k >= 0 && lines[k]!.trim() === "") k--;
    out.push({
      lang: open[1]!,
      code: lines.slice(i + 1, j).join("\n") + "\n",
      line: i + 1,
      marker: k >= 0 ? parseMarker(lines[k]!) : undefined,
    });
    i = j;
  }
  return out;
}

/** The ```ts blocks of every `@example` in a .d.ts. */
function dtsExamples(text: string): { code: string; line: number }[] {
  const out: { code: string; line: number }[] = [];
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    if (!/^\s*\*\s*```ts\s*$/.test(lines[i]!)) continue;
    const code: string[] = [];
    let j = i + 1;
    for (; j < lines.length && !/^\s*\*\s*```\s*$/.test(lines[j]!); j++) {
      code.push(lines[j]!.replace(/^\s*\* ?/, ""));
    }
    out.push({ code: code.join("\n") + "\n", line: i + 1 });
    i = j;
  }
  return out;
}

const md = await Deno.readTextFile(DOC);
const blocks = blocksOf(md);
const attr = (m: Marker, key: string) => m.attrs.filter(([k]) => k === key).map(([, v]) => v);

Deno.test("docs/scripts.md: every ts and sh block carries a marker the test knows", () => {
  const kinds: Record<string, string[]> = {
    ts: ["script", "lib", "file", "check"],
    sh: ["shell"],
    text: ["output"],
  };
  for (const b of blocks) {
    const known = kinds[b.lang];
    if (known === undefined) continue;
    assert(b.marker !== undefined, `docs/scripts.md:${b.line}: a ${b.lang} block without a marker`);
    assert(known.includes(b.marker.kind), `docs/scripts.md:${b.line}: marker "${b.marker.kind}"`);
    if (b.lang === "sh") {
      assert(["run", "show"].includes(b.marker.arg), `docs/scripts.md:${b.line}: shell run|show`);
    }
  }
  // Not vacuous: the guide has scripts to run, files and tutorial steps.
  const count = (kind: string) => blocks.filter((b) => b.marker?.kind === kind).length;
  assert(count("script") >= 10, `only ${count("script")} script blocks`);
  assert(count("file") >= 2 && count("output") >= 5, "the tutorial is missing");
});

Deno.test("docs/scripts.md ts blocks and types/moat.d.ts @examples type-check against moat.d.ts", async () => {
  const dir = await Deno.makeTempDir({ prefix: "moat-doc-check-" });
  try {
    await Deno.copyFile(DTS, `${dir}/moat.d.ts`);
    const config = JSON.parse(await Deno.readTextFile(new URL("deno.json", ROOT)));
    await Deno.writeTextFile(
      `${dir}/deno.json`,
      JSON.stringify({ compilerOptions: config.compilerOptions }),
    );
    const files: string[] = [];
    const add = async (name: string, code: string) => {
      // Whatever path a block references moat.d.ts by, check it against this copy.
      const body = code.replace(/^\/\/\/ <reference path="[^"]*moat\.d\.ts" \/>\n/m, "");
      await Deno.writeTextFile(`${dir}/${name}`, '/// <reference path="./moat.d.ts" />\n' + body);
      files.push(name);
    };
    for (const b of blocks.filter((b) => b.lang === "ts")) await add(`doc_${b.line}.ts`, b.code);
    const examples = dtsExamples(await Deno.readTextFile(DTS));
    assert(examples.length >= 40, `only ${examples.length} @examples in moat.d.ts`);
    for (const e of examples) await add(`dts_${e.line}.ts`, e.code);
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["check", "--quiet", ...files],
      cwd: dir,
      env: { NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stderr) + new TextDecoder().decode(out.stdout);
    // File names say where: doc_N is docs/scripts.md line N, dts_N is moat.d.ts line N.
    assert(out.success, `deno check failed:\n${text}`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

const libs = blocks.filter((b) => b.marker?.kind === "lib");

for (const b of blocks.filter((b) => b.marker?.kind === "script")) {
  const m = b.marker!;
  const name = m.arg;
  const ends = attr(m, "ends")[0] ?? "ok";
  Deno.test(`docs/scripts.md:${b.line}: script "${name}" runs as documented (${ends})`, async () => {
    const { store, logger, s, host, close } = hostHarness({ once: ends !== "running" });
    const task = `h/${name}`;
    const lines = () => logger.lines.filter((l) => l.source === task).map((l) => l.message);
    const dump = () => logger.lines.map((l) => `${l.source} ${l.level} ${l.message}`).join("\n");
    try {
      for (const lib of libs) {
        await s.scripts.add(lib.marker!.arg, lib.code, { language: "typescript" });
      }
      await s.scripts.add(name, b.code, { language: "typescript" });
      const data: [string, string][] = [];
      for (const [k, v] of m.attrs) {
        const [kind, key] = [k.slice(0, k.indexOf(".")), k.slice(k.indexOf(".") + 1)];
        if (kind === "type") await store.put(`/moat/meta/script/${name}/:code/types/${key}`, v);
        else if (kind === "value") {
          await store.put(`/moat/meta/script/${name}/:code/values/${key}`, v);
        } else if (kind === "tree") await store.put(`/moat/${key}`, v);
        else if (kind === "data") data.push([key, v]);
        else if (k === "tz") await store.put("/moat/config/timezone", v);
      }
      await s.tasks.add(name, task, { data });
      await host.start();
      let after = -1;
      for (const [k, v] of m.attrs) {
        if (k === "expect") {
          const from = after;
          await withTimeout(
            logger.waitFor(() => lines().some((l, i) => i > from && l === v)),
            WAIT_MS,
            `the line ${JSON.stringify(v)}`,
          ).catch((e) => {
            throw new Error(`${e.message}; log:\n${dump()}`);
          });
          after = lines().findIndex((l, i) => i > from && l === v);
        } else if (k.startsWith("then.")) {
          await store.put(`/moat/${k.slice(5)}`, v);
        }
      }
      const status = async (key: string) =>
        (await store.get(`/moat/status/run/${task}/:task/${key}`))?.value;
      if (ends === "running") {
        assert(host.running.includes(task), `${task} no longer runs:\n${dump()}`);
        assert((await status("running")) !== undefined, `${task} is not running:\n${dump()}`);
        assertEquals(await status("state"), undefined, dump());
      } else {
        await withTimeout(host.settled(), WAIT_MS, `${task} to end`);
        assertEquals(await status("state"), ends, dump());
        for (const message of attr(m, "message")) assertEquals(await status("message"), message);
      }
      const records = await new ErrorRecords(store, new Layout("/moat"), new SystemClock()).list(
        task,
      );
      for (const [k, v] of m.attrs) {
        if (!k.startsWith("record.")) continue;
        const tag = k.slice(7);
        assertEquals(records.find((r) => r.tag === tag)?.msg, v, JSON.stringify(records));
      }
    } finally {
      await close();
    }
  });
}

/** Whether `actual` contains the `expected` lines in order (`…` = anything). */
function missingLines(actual: string, expected: string): string[] {
  const lines = actual.split("\n");
  const missing: string[] = [];
  let at = 0;
  for (const want of expected.split("\n").filter((l) => l.trim() !== "")) {
    const re = new RegExp(
      "^" + want.trim().split("…").map((part) =>
        part.replace(/[.*+?^${}()|[\]\\]/g, "\\$&").replace(/\s+/g, "\\s+")
      ).join(".*") + "$",
    );
    const found = lines.findIndex((l, i) =>
      i >= at && re.test(l.trim())
    );
    if (found < 0) missing.push(want);
    else at = found + 1;
  }
  return missing;
}

Deno.test("docs/scripts.md: the tutorial's shell steps work as written against a private etcd", async () => {
  const etcd = await startEtcd();
  const home = await Deno.makeTempDir({ prefix: "moat-doc-home-" });
  try {
    await Deno.mkdir(`${home}/src`);
    await Deno.symlink(new URL(".", ROOT).pathname.replace(/\/$/, ""), `${home}/src/moat-scripts`);
    // One bash runs the steps in order; a line between steps splits the output.
    const steps: Block[] = [];
    const script: string[] = ["set -euo pipefail", "exec 2>&1"];
    for (const b of blocks) {
      if (b.marker?.kind === "file") {
        script.push(`cat > ${b.marker.arg} <<'MOAT_DOC_EOF'\n${b.code}MOAT_DOC_EOF`);
      } else if (b.marker?.kind === "shell" && b.marker.arg === "run") {
        script.push(b.code, `echo "@@step ${steps.length}@@"`);
        steps.push(b);
      }
    }
    assert(steps.length >= 6, `only ${steps.length} tutorial steps`);
    // The steps ran the moat the tutorial installed, not a function or another install.
    script.push(`echo "@@moat $(command -v moat)@@"`);
    const deno = Deno.execPath();
    const child = new Deno.Command("bash", {
      args: ["-c", script.join("\n")],
      cwd: home,
      env: {
        HOME: home,
        PATH: `${deno.slice(0, deno.lastIndexOf("/"))}:${Deno.env.get("PATH") ?? "/usr/bin:/bin"}`,
        DENO_DIR: Deno.env.get("DENO_DIR") ?? `${Deno.env.get("HOME")}/.cache/deno`,
        // The user's way to the npm registry (their shell has it): the
        // install may fetch what the shared cache lacks.
        ...registryEnv(),
        MOAT_ETCD: etcd.endpoint,
        // The tutorial's hosts keep off the shared broker: an in-process bus.
        MOAT_AMQP: "none",
        NO_COLOR: "1",
      },
      clearEnv: true,
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const out = await withTimeout(child.output(), 120_000, "the tutorial to finish").catch((e) => {
      child.kill("SIGKILL");
      throw e;
    });
    const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    assert(out.success, `the tutorial failed (exit ${out.code}):\n${text}`);
    const installed = `${home}/.deno/bin/moat`;
    assert(text.includes(`@@moat ${installed}@@`), `moat is not ${installed}:\n${text}`);
    assert(!/^\s*moat\s*\(\)/m.test(md), "docs/scripts.md defines a moat shell function");
    const outputs = text.split(/^@@step \d+@@$/m);
    assertEquals(outputs.length, steps.length + 1, text);
    // Match each output block with the run step just before it.
    let step = -1;
    let checked = 0;
    for (const b of blocks) {
      if (b.marker?.kind === "shell" && b.marker.arg === "run") step++;
      if (b.marker?.kind !== "output") continue;
      assert(step >= 0, `docs/scripts.md:${b.line}: output before any step`);
      const missing = missingLines(outputs[step]!, b.code);
      assertEquals(
        missing,
        [],
        `docs/scripts.md:${b.line}: missing from the output of the step at line ${
          steps[step]!.line
        }:\n${outputs[step]}`,
      );
      checked++;
    }
    assert(checked >= 5, `only ${checked} outputs checked`);
  } finally {
    await Deno.remove(home, { recursive: true }).catch(() => {});
    await etcd.stop();
  }
});
