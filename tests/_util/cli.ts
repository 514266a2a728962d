/**
 * Running the `moat` command as a user does: a child process, its stdout,
 * stderr and exit code.
 *
 * @module
 */

const CLI = new URL("../../cli.ts", import.meta.url).pathname;

/** What one run of `moat` did. */
export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Options of `runMoat`. */
export interface RunMoatOptions {
  /** Text for standard input. @default none (stdin is /dev/null) */
  stdin?: string;
  /** Extra environment variables. */
  env?: Record<string, string>;
  /** Working directory. */
  cwd?: string;
}

/** The `deno run` arguments that start the CLI, as `deno task moat` does. */
export const MOAT_RUN_ARGS = [
  "run",
  "--allow-net",
  "--allow-env",
  "--allow-sys",
  "--allow-read",
  "--allow-write",
  "--allow-run",
  CLI,
];

/** Run `moat ARGS…` in a child process and collect its output. */
export async function runMoat(args: string[], options: RunMoatOptions = {}): Promise<CliResult> {
  const child = new Deno.Command(Deno.execPath(), {
    args: [...MOAT_RUN_ARGS, ...args],
    env: { NO_COLOR: "1", ...(options.env ?? {}) },
    stdin: options.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
    ...(options.cwd ? { cwd: options.cwd } : {}),
  }).spawn();
  if (options.stdin !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(options.stdin));
    await w.close();
  }
  const out = await child.output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}
