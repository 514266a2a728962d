/**
 * `moat script try` keeps the script's own clock and timers on virtual time
 * (issue 23): `Date`, `performance.now()`, `setTimeout` and `setInterval`
 * follow the virtual clock with `moat.wait`; a script that spins stops
 * virtual time and is stopped by its CPU budget; what is tried gets the
 * checks of `moat script def add`. Each run is the CLI as a user runs it.
 */

import { assert, assertEquals, assertIncludes } from "../_util/assert.ts";
import { type CliResult, runMoat } from "../_util/cli.ts";

/** Run `moat script try` on `code` (a file in a temporary folder of its own). */
async function tryCode(
  code: string,
  args: string[],
  files: Record<string, string> = {},
): Promise<CliResult & { lines: string[] }> {
  const dir = await Deno.makeTempDir({ prefix: "moat-try-vt-" });
  try {
    await Deno.writeTextFile(`${dir}/script.ts`, code);
    for (const [name, text] of Object.entries(files)) {
      await Deno.writeTextFile(`${dir}/${name}`, text);
    }
    const r = await runMoat([
      "script",
      "try",
      `${dir}/script.ts`,
      // The zone is given: no etcd is asked.
      ...args.map((a) => a.replace("$DIR", dir)),
    ]);
    return { ...r, lines: r.stdout.trimEnd().split("\n") };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const AT = ["--at", "2026-03-02T12:00", "--tz", "UTC"];

Deno.test("under try, a 2 s setTimeout fires at virtual +2 s and new Date() starts at --at", async () => {
  const r = await tryCode(
    `moat.setup();
moat.run(async () => {
  moat.logger.info("start " + new Date().toISOString() + " " + Date.now());
  const began = performance.now();
  await new Promise((resolve) => setTimeout(resolve, 2000));
  moat.logger.info("fired " + new Date().toISOString() + " after " + (performance.now() - began) + " ms");
});
`,
    [...AT, "--for", "1h", "--no-typecheck"],
  );
  assertEquals(r.code, 0, r.stderr);
  assert(
    r.lines.includes(
      "2026-03-02T12:00:00+00:00 info  start 2026-03-02T12:00:00.000Z 1772452800000",
    ),
    r.stdout,
  );
  assert(
    r.lines.includes(
      "2026-03-02T12:00:02+00:00 info  fired 2026-03-02T12:00:02.000Z after 2000 ms",
    ),
    r.stdout,
  );
  assert(
    r.lines.includes(
      "2026-03-02T12:00:02+00:00 info  ended: ok: run function returned",
    ),
    r.stdout,
  );
  assertIncludes(r.stdout, "timer setTimeout 2s: fired 1 time at 2026-03-02T12:00:02+00:00");
});

Deno.test("under try, a 1 s setInterval ticks 3600 times in an hour, counted in one trace line", async () => {
  const r = await tryCode(
    `moat.setup();
let ticks = 0;
let last = 0;
setInterval(() => {
  ticks++;
  last = Date.now();
}, 1000);
moat.on_stop(() => moat.logger.info("ticks " + ticks + ", last at " + new Date(last).toISOString()));
`,
    [...AT, "--for", "1h"],
  );
  assertEquals(r.code, 0, r.stderr);
  assertIncludes(r.stdout, "info  ticks 3600, last at 2026-03-02T13:00:00.000Z");
  const timerLines = r.lines.filter((l) => l.includes(" timer "));
  assertEquals(timerLines, [
    "2026-03-02T13:00:00+00:00 timer setInterval 1s: fired 3600 times, " +
    "first at 2026-03-02T12:00:01+00:00, last at 2026-03-02T13:00:00+00:00",
  ]);
  assertIncludes(r.stderr, "simulated 1h in ");
});

Deno.test("under try, a weekday check with Date agrees with moat.time_at across the DST change", async () => {
  // Berlin moves to summer time on Sunday 2026-03-29 at 02:00.
  const r = await tryCode(
    `moat.setup();
const fmt = new Intl.DateTimeFormat("en-US", {
  weekday: "short", hour: "2-digit", minute: "2-digit", hourCycle: "h23", timeZone: "Europe/Berlin",
});
moat.run(async () => {
  for (let i = 0; i < 3; i++) {
    const next = await moat.time_at("7 hr 30 min");
    await new Promise((resolve) => setTimeout(resolve, next * 1000 - Date.now()));
    const sunday = await moat.time_at("sun", { current: true });
    const byTimeAt = Math.floor(sunday) === Math.floor(Date.now() / 1000);
    const byDate = fmt.format(new Date()).startsWith("Sun");
    moat.logger.info(fmt.format(new Date()) + ": Sunday by Date " + byDate + ", by time_at " + byTimeAt);
  }
});
`,
    ["--at", "2026-03-27T12:00", "--tz", "Europe/Berlin", "--for", "4d"],
  );
  assertEquals(r.code, 0, r.stderr);
  assertEquals(r.lines.filter((l) => l.includes(": Sunday by Date")), [
    "2026-03-28T07:30:00+01:00 info  Sat 07:30: Sunday by Date false, by time_at false",
    "2026-03-29T07:30:00+02:00 info  Sun 07:30: Sunday by Date true, by time_at true",
    "2026-03-30T07:30:00+02:00 info  Mon 07:30: Sunday by Date false, by time_at false",
  ]);
});

Deno.test("under try, moat.wait, moat.run_at and setTimeout interleave in virtual-time order", async () => {
  const r = await tryCode(
    `moat.setup();
moat.run(async () => {
  const t0 = Date.now();
  const at = (what: string) => moat.logger.info(what + " at +" + (Date.now() - t0) / 1000 + " s");
  setTimeout(() => at("setTimeout 3 s"), 3000);
  setTimeout(() => at("setTimeout 1 s"), 1000);
  moat.run_at([], () => at("run_at 4 s"), { now: t0 / 1000 + 4 });
  const waited = moat.wait({ now: t0 / 1000 + 2 }).then(() => at("wait 2 s"));
  await new Promise((resolve) => setTimeout(resolve, 5000));
  await waited;
  at("done");
});
`,
    [...AT, "--for", "1h"],
  );
  assertEquals(r.code, 0, r.stderr);
  assertEquals(
    r.lines.filter((l) => / at \+\d+ s$/.test(l)),
    [
      "2026-03-02T12:00:01+00:00 info  setTimeout 1 s at +1 s",
      "2026-03-02T12:00:02+00:00 info  wait 2 s at +2 s",
      "2026-03-02T12:00:03+00:00 info  setTimeout 3 s at +3 s",
      "2026-03-02T12:00:04+00:00 info  run_at 4 s at +4 s",
      "2026-03-02T12:00:05+00:00 info  done at +5 s",
    ],
  );
});

Deno.test("under try, a script that never yields stops virtual time and its CPU budget stops it", async () => {
  const r = await tryCode(
    `moat.setup();
setTimeout(() => moat.logger.info("never: the clock does not move while the script spins"), 1000);
moat.run(() => {
  for (;;) { /* spin */ }
});
`,
    [...AT, "--for", "1h", "--tree", "$DIR/limits.json"],
    {
      // Only the CPU budget is in reach (docs/testing.md).
      "limits.json": JSON.stringify({
        "config/run": { cpu: 1, cpu_window: 3600, heartbeat: 3600 },
      }),
    },
  );
  assertEquals(r.code, 1, r.stdout);
  assertIncludes(r.stderr, "error: the script ended with fail: CPU budget exceeded");
  const ended = r.lines.find((l) => l.includes("ended: fail: CPU budget exceeded"));
  assert(ended?.startsWith("2026-03-02T12:00:00+00:00 "), r.stdout);
  assert(!r.stdout.includes("never:"), r.stdout);
  assert(!r.stdout.includes(" end   reached"), r.stdout);
});

Deno.test("try type-checks the script like def add, unless --no-typecheck", async () => {
  const code = `moat.setup();
const n: number = "not a number";
moat.logger.info("ran with " + n);
moat.end();
`;
  const checked = await tryCode(code, AT);
  assertEquals(checked.code, 1, checked.stdout);
  assertEquals(checked.stdout, "");
  assertIncludes(checked.stderr, "script.ts:2:7");
  assertIncludes(checked.stderr, "not assignable to type 'number'");
  assertIncludes(checked.stderr, "failed the check");

  const unchecked = await tryCode(code, [...AT, "--no-typecheck"]);
  assertEquals(unchecked.code, 0, unchecked.stderr);
  assertIncludes(unchecked.stdout, "info  ran with not a number");
});

Deno.test("try --json prints the trace as one JSON object per line", async () => {
  const r = await tryCode(
    `moat.setup();
await moat.wait("13 hr");
moat.logger.info("at one");
moat.end();
`,
    [...AT, "--json"],
  );
  assertEquals(r.code, 0, r.stderr);
  const objects = r.lines.map((l) => JSON.parse(l) as Record<string, unknown>);
  assertEquals(Object.keys(objects[0]!), ["time", "unix", "kind", "text"]);
  assertEquals(objects[0]!.kind, "try");
  const info = objects.find((o) => o.text === "at one");
  assertEquals(info, {
    time: "2026-03-02T13:00:00+00:00",
    unix: 1772456400,
    kind: "info",
    text: "at one",
  });
  assert(objects.some((o) => o.kind === "wait"), r.stdout);
});
