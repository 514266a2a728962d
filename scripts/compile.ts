/**
 * `deno task compile`: build a single `moat` binary, `dist/moat`, with
 * `deno compile` (docs/compile.md).
 *
 * The binary gets the permissions of `deno task moat`, and embeds what is
 * loaded at run time rather than imported: the sandbox process module
 * (`sandbox/process.ts`, which the host hands to each sandbox process) and
 * the script API types (`types/moat.d.ts`, read by the type check).
 *
 * `deno compile` needs Deno's runtime (`denort`) for this platform: it
 * downloads it, or takes the file named by `DENORT_BIN`. When it can do
 * neither, this prints one line saying so and exits 1.
 *
 * Run: deno task compile [--output PATH] [--target TRIPLE]
 *
 * @module
 */

import { parseArgs } from "node:util";

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");

/**
 * The permissions of the `moat` task in deno.json: all, because Deno lets
 * only `--allow-all` read `/proc/<pid>/stat`, where the host watches its
 * sandboxes' CPU time and memory (docs/security.md).
 */
export const PERMISSIONS = ["--allow-all"];

/** Files the binary must carry that are not reached by static imports. */
export const INCLUDES = ["sandbox/process.ts", "types/moat.d.ts"];

/** The `deno compile` arguments for `output` (and an optional `--target`). */
export function compileArgs(output: string, target?: string): string[] {
  return [
    "compile",
    "--no-check",
    ...PERMISSIONS,
    ...INCLUDES.flatMap((f) => ["--include", `${ROOT}/${f}`]),
    ...(target ? ["--target", target] : []),
    "--output",
    output,
    `${ROOT}/cli.ts`,
  ];
}

/**
 * One line explaining a failed `deno compile`, when its cause is the
 * runtime download (or `DENORT_BIN`); undefined for other failures.
 */
export function runtimeProblem(stderr: string): string | undefined {
  // Colour codes, if any, out of the way.
  // deno-lint-ignore no-control-regex
  const plain = stderr.replace(/\x1b\[[0-9;]*m/g, "");
  const bin = /Could not find denort at '([^']*)'/.exec(plain);
  if (bin) {
    return `DENORT_BIN names "${bin[1]}", which does not exist; ` +
      "point it at the denort binary of this Deno version (see docs/compile.md)";
  }
  const url = /(https:\/\/dl\.deno\.land\/\S*denort\S*\.zip)/.exec(plain);
  if (url || /Setting up base binary/.test(plain)) {
    return `deno compile cannot download Deno's runtime (denort${
      url ? ` from ${url[1]!.replace(/\)?:?$/, "")}` : ""
    }): this machine cannot reach it; set DENORT_BIN to a local denort of Deno ${Deno.version.deno} or build elsewhere (see docs/compile.md)`;
  }
  return undefined;
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: { output: { type: "string" }, target: { type: "string" } },
  });
  const output = values.output ?? `${ROOT}/dist/moat`;
  await Deno.mkdir(output.replace(/\/[^/]*$/, "") || ".", { recursive: true });
  const args = compileArgs(output, values.target);
  console.error(`deno ${args.map((a) => a.replace(ROOT + "/", "")).join(" ")}`);
  const res = await new Deno.Command(Deno.execPath(), {
    args,
    stdout: "inherit",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(res.stderr);
  if (res.success) {
    if (stderr) console.error(stderr.trimEnd());
    console.error(`built ${output}`);
    Deno.exit(0);
  }
  const problem = runtimeProblem(stderr);
  if (problem !== undefined) {
    console.error(`error: ${problem}`);
  } else {
    console.error(stderr.trimEnd());
    console.error("error: deno compile failed (see above)");
  }
  Deno.exit(1);
}
