/**
 * Running the `moat` command as a user does: a child process, its stdout,
 * stderr and exit code.
 *
 * @module
 */

import { assert, assertEquals, assertIncludes } from "./assert.ts";

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
  /**
   * Start it in a session and process group of its own (`setsid`), so that
   * `Deno.kill(-pid, …)` signals its whole group and nothing else.
   * @default false
   */
  detached?: boolean;
  /**
   * The `deno` arguments that start moat, before ARGS: `["task", "run"]`
   * (with `cwd` the checkout) starts it as `deno task run` does.
   * @default MOAT_RUN_ARGS
   */
  launcher?: string[];
}

/** The `deno run` arguments that start the CLI, as `deno task moat` does. */
export const MOAT_RUN_ARGS = [
  "run",
  "--allow-all",
  CLI,
];

/**
 * A temporary folder of its own for one `moat` process (its `TMPDIR`, where
 * its sandboxes' folders go), unless `env` names one; `remove` deletes it.
 * Other moat hosts on the machine, and other tests, use the shared one.
 */
function ownTmp(env: Record<string, string> | undefined): { env: object; remove(): Promise<void> } {
  if (env?.TMPDIR !== undefined) return { env: {}, remove: () => Promise.resolve() };
  const dir = Deno.makeTempDirSync({ prefix: "moat-cli-" });
  return {
    env: { TMPDIR: dir },
    remove: () => Deno.remove(dir, { recursive: true }).catch(() => {}),
  };
}

/** Run `moat ARGS…` in a child process and collect its output. */
export async function runMoat(args: string[], options: RunMoatOptions = {}): Promise<CliResult> {
  const tmp = ownTmp(options.env);
  const child = new Deno.Command(Deno.execPath(), {
    args: [...(options.launcher ?? MOAT_RUN_ARGS), ...args],
    env: { NO_COLOR: "1", ...tmp.env, ...(options.env ?? {}) },
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
  const out = await child.output().finally(() => tmp.remove());
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** A `moat` process running in the background, its output collected by line. */
export interface MoatProcess {
  readonly pid: number;
  /** Every line of stdout and stderr so far. */
  readonly lines: string[];
  /** Resolve once a line matching `pred` has appeared, at most `ms` ms. */
  waitForLine(pred: (line: string) => boolean, ms: number, what: string): Promise<string>;
  /** Call `fn` after every new line (and at the end); returns an unsubscribe function. */
  subscribe(fn: () => void): () => void;
  /** Send a signal. */
  kill(signal?: Deno.Signal): void;
  /** The exit status, once it has exited. */
  readonly status: Promise<Deno.CommandStatus>;
}

/** Start `moat ARGS…` in the background. The caller must await `status` (kill it first). */
export function spawnMoat(args: string[], options: RunMoatOptions = {}): MoatProcess {
  const tmp = ownTmp(options.env);
  const child = new Deno.Command(Deno.execPath(), {
    args: [...(options.launcher ?? MOAT_RUN_ARGS), ...args],
    env: { NO_COLOR: "1", ...tmp.env, ...(options.env ?? {}) },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    ...(options.cwd ? { cwd: options.cwd } : {}),
    ...(options.detached ? { detached: true } : {}),
  }).spawn();
  const lines: string[] = [];
  const waiters = new Set<() => void>();
  const pump = async (stream: ReadableStream<Uint8Array>) => {
    let buf = "";
    for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
      buf += chunk;
      let nl;
      while ((nl = buf.indexOf("\n")) >= 0) {
        lines.push(buf.slice(0, nl));
        buf = buf.slice(nl + 1);
        for (const w of [...waiters]) w();
      }
    }
    if (buf) lines.push(buf);
    for (const w of [...waiters]) w();
  };
  const pumps = Promise.all([pump(child.stdout), pump(child.stderr)]);
  const status = pumps.then(() => child.status).finally(() => tmp.remove());
  return {
    pid: child.pid,
    lines,
    kill: (signal: Deno.Signal = "SIGTERM") => {
      try {
        child.kill(signal);
      } catch {
        // Already gone.
      }
    },
    status,
    subscribe(fn) {
      waiters.add(fn);
      return () => void waiters.delete(fn);
    },
    waitForLine(pred, ms, what) {
      return waitForLineIn([this], pred, ms, what);
    },
  };
}

/** Resolve once a line matching `pred` appears in any of `procs`, at most `ms` ms. */
export function waitForLineIn(
  procs: MoatProcess[],
  pred: (line: string) => boolean,
  ms: number,
  what: string,
): Promise<string> {
  const found = () => {
    for (const p of procs) {
      const l = p.lines.find(pred);
      if (l !== undefined) return l;
    }
    return undefined;
  };
  const now = found();
  if (now !== undefined) return Promise.resolve(now);
  return new Promise<string>((resolve, reject) => {
    const unsubs: (() => void)[] = [];
    const done = () => {
      clearTimeout(timer);
      for (const u of unsubs) u();
    };
    const timer = setTimeout(() => {
      done();
      const output = procs.map((p) => p.lines.join("\n")).join("\n----\n");
      reject(new Error(`Timed out after ${ms} ms waiting for ${what}; output:\n${output}`));
    }, ms);
    const check = () => {
      const l = found();
      if (l === undefined) return;
      done();
      resolve(l);
    };
    for (const p of procs) unsubs.push(p.subscribe(check));
  });
}

/**
 * The error lines of a failed run: the one `error: …` line, without the
 * `Try "moat … --help"` hint that follows it after a usage error (exit 2).
 * Throws when anything else is on stderr.
 */
export function errorLines(r: CliResult): string[] {
  const lines = r.stderr.trim().split("\n");
  if (r.code === 2) {
    const hint = lines.pop() ?? "";
    if (!/^Try "moat[^"]* --help" for more information\.$/.test(hint)) {
      throw new Error(`a usage error without its --help hint:\n${r.stderr}`);
    }
  }
  return lines;
}

/**
 * A check that a run was refused: `refused(run, code, text)` asserts that
 * `run` exited with `code`, said `error: …` naming `text` without a stack
 * trace, and left etcd as it was before, as `dump()` reads it.
 */
export function refusalCheck(
  dump: () => Promise<string>,
): (run: () => Promise<CliResult>, code: number, text: string) => Promise<void> {
  return async (run, code, text) => {
    const before = await dump();
    const res = await run();
    assertEquals(res.code, code, `exit code; stderr: ${res.stderr}`);
    assertIncludes(res.stderr, text);
    assert(/^error: /m.test(res.stderr), `no "error: " line in ${JSON.stringify(res.stderr)}`);
    assert(!res.stderr.includes("    at "), `stack trace leaked: ${res.stderr}`);
    assertEquals(await dump(), before, "etcd changed");
  };
}
