/**
 * `deno task compile`: build `moat` as two programs with `deno compile`
 * (docs/compile.md):
 *
 * - `dist/moat-sandbox`, the sandbox process (`sandbox/process.ts`) with no
 *   permissions and the flags of a sandbox's `deno run` built in
 *   (`sandboxRunFlags`: no npm, no remote modules, the import map that
 *   refuses `node:` built-ins, the V8 heap limit);
 * - `dist/moat`, the host and CLI (`cli.ts`) with `--allow-all`, the script
 *   API types it type-checks against, and `MOAT_SANDBOX_BIN` (the absolute
 *   path of its sandbox program) in its embedded environment.
 *
 * A binary's permissions are fixed when it is built, so one binary cannot
 * be both the all-permission host and the no-permission sandbox.
 *
 * Then it checks what it built: `moat --version` must print moat's version
 * (a full `deno` given as the runtime makes a binary that runs as `deno`),
 * and `moat-sandbox` must start and report `ready`.
 *
 * `deno compile` needs Deno's runtime (`denort`) for the target: it
 * downloads it, or takes the file named by `DENORT_BIN`. When it can do
 * neither, or `DENORT_BIN` is not a `denort`, this prints one line saying so
 * and exits 3 (`RUNTIME_UNAVAILABLE`); any other failure exits 1.
 *
 * Run: deno task compile [--output PATH] [--sandbox-path PATH] [--target TRIPLE] [--heap-mb N]
 *
 * @module
 */

import { parseArgs } from "node:util";
import { sandboxRunFlags } from "../host/bridge/sandbox.ts";
import { PROTOCOL_VERSION } from "../sandbox/protocol.ts";
import config from "../deno.json" with { type: "json" };

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");

/** Exit code when Deno's runtime for the target cannot be had: nothing usable was built. */
export const RUNTIME_UNAVAILABLE = 3;

/**
 * The permissions of the host, those of `deno task moat`: all, because Deno
 * lets only `--allow-all` read `/proc/<pid>/stat`, where the host watches
 * its sandboxes' CPU time and memory (docs/security.md).
 */
export const HOST_PERMISSIONS = ["--allow-all"];

/**
 * Files the host must carry that are not reached by static imports: the
 * moat API types, and the Worker that type-checks a hand-written `new_code`.
 */
export const HOST_INCLUDES = ["types/moat.d.ts", "host/scripts/_typecheck_worker.ts"];

/** The V8 heap limit compiled into the sandbox, MiB: `SandboxPool`'s default. */
export const DEFAULT_HEAP_MB = 64;

/** The `deno compile` arguments of the sandbox program: no permission flag at all. */
export function sandboxCompileArgs(
  output: string,
  options: { heapMb?: number; target?: string | undefined } = {},
): string[] {
  return [
    "compile",
    "--no-check",
    ...sandboxRunFlags(options.heapMb ?? DEFAULT_HEAP_MB),
    ...(options.target ? ["--target", options.target] : []),
    "--output",
    output,
    `${ROOT}/sandbox/process.ts`,
  ];
}

/**
 * The `deno compile` arguments of the host; `envFile` holds
 * `MOAT_SANDBOX_BIN=…`, which `deno compile` embeds in the binary.
 */
export function hostCompileArgs(
  output: string,
  envFile: string,
  options: { target?: string | undefined } = {},
): string[] {
  return [
    "compile",
    "--no-check",
    ...HOST_PERMISSIONS,
    ...HOST_INCLUDES.flatMap((f) => ["--include", `${ROOT}/${f}`]),
    `--env-file=${envFile}`,
    ...(options.target ? ["--target", options.target] : []),
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

/** Why a built binary is not what was meant, and whether the runtime is the cause. */
export class BuildCheckError extends Error {
  /** True when the cause is the runtime (`DENORT_BIN` is a full `deno`). */
  readonly runtime: boolean;
  constructor(message: string, runtime: boolean) {
    super(message);
    this.name = "BuildCheckError";
    this.runtime = runtime;
  }
}

/**
 * Check the built host: `--version` prints `moat VERSION`. A full `deno`
 * given as `DENORT_BIN` makes a binary that runs as `deno`: a runtime
 * problem, reported as such.
 */
export async function checkHost(path: string): Promise<void> {
  const out = await new Deno.Command(path, {
    args: ["--version"],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout).trim();
  if (out.code === 0 && text === `moat ${config.version}`) return;
  if (/^deno \d/.test(text)) {
    throw new BuildCheckError(
      `the runtime given as DENORT_BIN (${Deno.env.get("DENORT_BIN") ?? "?"}) is a full deno, ` +
        `not a denort: "${path} --version" runs deno ("${text.split("\n")[0]}") instead of moat; ` +
        `point DENORT_BIN at the denort of Deno ${Deno.version.deno} (see docs/compile.md)`,
      true,
    );
  }
  throw new BuildCheckError(
    `"${path} --version" printed ${JSON.stringify(text.slice(0, 200))} ` +
      `(exit code ${out.code}), not "moat ${config.version}"`,
    false,
  );
}

/**
 * Check the built sandbox: started as the host starts it (no arguments, an
 * empty environment), it reports `ready` in this protocol version, and exits
 * when its standard input closes.
 */
export async function checkSandbox(path: string, timeoutMs = 60_000): Promise<void> {
  const child = new Deno.Command(path, {
    clearEnv: true,
    env: { NO_COLOR: "1" },
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(child.stderr).text();
  // Only a hang: a sandbox that never answers is killed, and fails below.
  const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
  let first = "";
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  while (!first.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) break;
    first += value;
  }
  // Closing its stdin is how the host ends a sandbox.
  await child.stdin.close().catch(() => {});
  await reader.cancel().catch(() => {});
  const status = await child.status;
  clearTimeout(timer);
  const line = first.split("\n")[0]!;
  let ready = false;
  try {
    const msg = JSON.parse(line);
    ready = msg.kind === "ready" && msg.version === PROTOCOL_VERSION;
  } catch { /* not JSON: not ready */ }
  if (!ready) {
    throw new BuildCheckError(
      `"${path}" did not report ready (protocol ${PROTOCOL_VERSION}): its first line was ` +
        `${JSON.stringify(line.slice(0, 200))}, it ended with ${
          status.signal ?? `exit code ${status.code}`
        }; stderr: ${(await stderr).trim().slice(-500)}`,
      false,
    );
  }
}

/** Run `deno ARGS`; undefined on success, else the error line and whether the runtime is why. */
async function compile(args: string[]): Promise<{ message: string; runtime: boolean } | undefined> {
  const shown = args.map((a) =>
    a.startsWith("--import-map=data:")
      ? "--import-map=<the sandbox's import map>"
      : a.replace(ROOT + "/", "")
  );
  console.error(`deno ${shown.join(" ")}`);
  const res = await new Deno.Command(Deno.execPath(), {
    args,
    stdout: "inherit",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(res.stderr);
  if (res.success) {
    if (stderr) console.error(stderr.trimEnd());
    return undefined;
  }
  const problem = runtimeProblem(stderr);
  if (problem !== undefined) return { message: problem, runtime: true };
  console.error(stderr.trimEnd());
  return { message: "deno compile failed (see above)", runtime: false };
}

function absolute(path: string): string {
  return path.startsWith("/") ? path : `${Deno.cwd()}/${path}`;
}

if (import.meta.main) {
  let values;
  try {
    values = parseArgs({
      args: Deno.args,
      options: {
        output: { type: "string" },
        "sandbox-path": { type: "string" },
        target: { type: "string" },
        "heap-mb": { type: "string" },
      },
    }).values;
  } catch (e) {
    console.error(`error: ${(e as Error).message}`);
    console.error(
      "usage: deno task compile [--output PATH] [--sandbox-path PATH] [--target TRIPLE] [--heap-mb N]",
    );
    Deno.exit(2);
  }
  const host = absolute(values.output ?? `${ROOT}/dist/moat`);
  const dir = host.replace(/\/[^/]*$/, "");
  const sandbox = `${dir}/moat-sandbox`;
  const sandboxPath = absolute(values["sandbox-path"] ?? sandbox);
  const heapMb = Number(values["heap-mb"] ?? DEFAULT_HEAP_MB);
  if (!Number.isInteger(heapMb) || heapMb < 16) {
    console.error(
      `error: --heap-mb must be a whole number of MiB, 16 or more, not "${values["heap-mb"]}"`,
    );
    Deno.exit(2);
  }
  // Nothing half-made is left to be deployed: a failed build removes both programs.
  const fail = async (e: { message: string; runtime: boolean }): Promise<never> => {
    for (const f of [host, sandbox]) await Deno.remove(f).catch(() => {});
    console.error(`error: ${e.message}`);
    Deno.exit(e.runtime ? RUNTIME_UNAVAILABLE : 1);
  };
  await Deno.mkdir(dir, { recursive: true });
  const envDir = await Deno.makeTempDir({ prefix: "moat-compile-" });
  let failed;
  try {
    const envFile = `${envDir}/moat.env`;
    await Deno.writeTextFile(envFile, `MOAT_SANDBOX_BIN=${sandboxPath}\n`);
    const target = values.target;
    failed = await compile(sandboxCompileArgs(sandbox, { heapMb, target })) ??
      await compile(hostCompileArgs(host, envFile, { target }));
  } finally {
    await Deno.remove(envDir, { recursive: true });
  }
  if (failed) await fail(failed);
  if (values.target !== undefined && values.target !== Deno.build.target) {
    console.error(`built ${host} and ${sandbox} for ${values.target}: not checked on this machine`);
    Deno.exit(0);
  }
  try {
    await checkHost(host);
    await checkSandbox(sandbox);
  } catch (e) {
    if (!(e instanceof BuildCheckError)) throw e;
    await fail(e);
  }
  console.error(`built ${host} and ${sandbox} (the host runs ${sandboxPath})`);
  Deno.exit(0);
}
