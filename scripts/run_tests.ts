/**
 * `deno task test`: the whole suite, as several `deno test` processes.
 *
 * The ordinary test files run in one `deno test`. The files that restart,
 * kill or cut off a service under a client of the test process itself
 * ({@linkcode OWN_PROCESS}) run afterwards, each in a `deno test` of its
 * own: one run of the etcd-restart test once crashed Deno (an nghttp2
 * assertion in the gRPC client) and took the whole run's summary with it.
 * Now such a crash costs only that file, and is counted as a failure.
 *
 * Prints every process's output as it comes, then one combined summary in
 * Deno's own format, `ok | N passed | M failed | K ignored (T)` (or
 * `FAILED | …`), which `.ci/run` reads. Exits 1 if any part failed.
 *
 * Run: `deno task test [FILE|FOLDER…]` (arguments narrow the ordinary part
 * and the own-process files alike; none: the whole suite).
 *
 * @module
 */

/** What `deno test` runs besides the test files: the doc examples of mod.ts. */
const ORDINARY = ["mod.ts", "host", "sandbox", "tests", "bench", "scripts"];

/**
 * Test files that restart, kill or cut off etcd (or a host) under the test
 * process's own clients; each runs in a `deno test` of its own. Folders
 * mean every `*_test.ts` below them. Add a file here when it does that.
 */
export const OWN_PROCESS = [
  "host/store/etcd_store_test.ts",
  "host/store/watch_hub_test.ts",
  "tests/e2e/run_test.ts",
  "tests/e2e/signals_test.ts",
  "tests/e2e/secure_etcd_test.ts",
  "tests/cli/big_data_test.ts",
  "tests/reliability",
];

/** The counts of one `deno test` summary line. */
export interface Summary {
  passed: number;
  failed: number;
  ignored: number;
}

/** Colour codes, which `deno test` writes when its output is a terminal. */
// deno-lint-ignore no-control-regex
const ANSI = /\x1b\[[0-9;]*m/g;

/**
 * The counts of a `deno test` summary line
 * (`ok | 12 passed (3 steps) | 0 failed | 1 ignored (2s)`), or undefined
 * for any other line.
 *
 * @example
 * ```ts
 * import { parseSummary } from "./run_tests.ts";
 * const s = parseSummary("FAILED | 3 passed (1 step) | 2 failed (4s)");
 * if (s?.failed !== 2 || s.passed !== 3) throw new Error("misread");
 * ```
 */
export function parseSummary(line: string): Summary | undefined {
  const l = line.replace(ANSI, "").trim();
  if (!/^(ok|FAILED) \| \d+ passed/.test(l)) return undefined;
  const count = (what: string) => Number(new RegExp(`(\\d+) ${what}`).exec(l)?.[1] ?? 0);
  return { passed: count("passed"), failed: count("failed"), ignored: count("ignored") };
}

/** The `*_test.ts` files below `path` (or `path` itself if a file), sorted. */
async function testFiles(path: string): Promise<string[]> {
  const info = await Deno.stat(path).catch(() => undefined);
  if (info === undefined) return [];
  if (info.isFile) return [path];
  const out: string[] = [];
  for await (const e of Deno.readDir(path)) {
    const p = `${path}/${e.name}`;
    if (e.isDirectory) out.push(...await testFiles(p));
    else if (e.isFile && /(^|_|\.)test\.ts$/.test(e.name)) out.push(p);
  }
  return out.sort();
}

/** Whether `file` is `scope` or below it. */
function within(file: string, scope: string): boolean {
  const s = scope.replace(/\/+$/, "");
  return file === s || file.startsWith(s + "/") || s === ".";
}

/** The `deno test` running now, so that a signal to this script reaches it. */
let current: Deno.ChildProcess | undefined;
/** Set once this script was told to stop: no further part starts. */
let interrupted = false;

/**
 * Run one `deno test`, passing its output through, and read its summary.
 * A process that ends without one (a crash) counts as one failure.
 */
async function runPart(label: string, args: string[]): Promise<Summary> {
  console.log(`\n=== ${label}: deno test ${args.join(" ")}\n`);
  const child = new Deno.Command(Deno.execPath(), {
    args: ["test", ...args],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  current = child;
  let summary: Summary | undefined;
  let pending = "";
  const decoder = new TextDecoder();
  const out = Deno.stdout;
  for await (const chunk of child.stdout) {
    await out.write(chunk);
    pending += decoder.decode(chunk, { stream: true });
    const lines = pending.split("\n");
    pending = lines.pop()!;
    for (const l of lines) summary = parseSummary(l) ?? summary;
  }
  summary = parseSummary(pending) ?? summary;
  const status = await child.status;
  current = undefined;
  if (summary === undefined) {
    console.log(
      `\n=== ${label}: deno test ended (exit code ${status.code}${
        status.signal ? `, ${status.signal}` : ""
      }) without a summary; counted as 1 failed`,
    );
    return { passed: 0, failed: 1, ignored: 0 };
  }
  if (!status.success && summary.failed === 0) {
    console.log(
      `\n=== ${label}: exit code ${status.code} after a clean summary; counted as 1 failed`,
    );
    return { ...summary, failed: 1 };
  }
  return summary;
}

/** `12m 3s` */
function duration(ms: number): string {
  const s = Math.round(ms / 1000);
  return s >= 60 ? `${Math.floor(s / 60)}m ${s % 60}s` : `${s}s`;
}

async function main(args: string[]): Promise<number> {
  const began = Date.now();
  const scopes = args.length > 0 ? args : ORDINARY;
  const own = (await Promise.all(OWN_PROCESS.map(testFiles))).flat()
    .filter((f) => scopes.some((s) => within(f, s)));
  const parts: [string, string[]][] = [];
  // The ordinary part keeps `--doc` only for the whole suite.
  const docs = args.length === 0 ? ["--doc"] : [];
  // Skip the ordinary part when every scope lies within the own-process files.
  if (!scopes.every((s) => OWN_PROCESS.some((o) => within(s, o)))) {
    // Globs: Deno 2.9 applies a plain `--ignore` path only below the first
    // path argument.
    const ignore = OWN_PROCESS.map((p) => `**/${p}`).join(",");
    parts.push(["ordinary tests", ["--allow-all", ...docs, `--ignore=${ignore}`, ...scopes]]);
  }
  for (const f of own) parts.push([f, ["--allow-all", f]]);

  // Ctrl-C or a kill: stop the running `deno test` (its own children go
  // with it) and start no further part.
  const stop = () => {
    interrupted = true;
    try {
      current?.kill("SIGTERM");
    } catch { /* already gone */ }
  };
  for (const sig of ["SIGINT", "SIGTERM"] as const) Deno.addSignalListener(sig, stop);

  const total: Summary = { passed: 0, failed: 0, ignored: 0 };
  const failedParts: string[] = [];
  for (const [label, partArgs] of parts) {
    if (interrupted) {
      failedParts.push(`${label} (not run: interrupted)`);
      total.failed++;
      continue;
    }
    const s = await runPart(label, partArgs);
    total.passed += s.passed;
    total.failed += s.failed;
    total.ignored += s.ignored;
    if (s.failed > 0) failedParts.push(label);
  }
  const ok = total.failed === 0;
  console.log("");
  if (!ok) console.log(`failed parts: ${failedParts.join(", ")}`);
  console.log(
    `${ok ? "ok" : "FAILED"} | ${total.passed} passed | ${total.failed} failed` +
      `${total.ignored ? ` | ${total.ignored} ignored` : ""} (${duration(Date.now() - began)})`,
  );
  return ok ? 0 : 1;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
