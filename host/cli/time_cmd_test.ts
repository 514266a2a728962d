import assert from "node:assert/strict";
import { CommandError, UsageError } from "./io.ts";
import { parseNow, timeCommand } from "./time_cmd.ts";
import { resolveGlobals } from "./command.ts";

/** Run `moat time` with a capturing CliIO. */
async function run(...args: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await timeCommand(args, { out: (l) => out.push(l), err: (l) => err.push(l) });
  return { code, out, err };
}

/** Assert that `moat time ARGS…` is a usage error whose message matches `message`. */
async function rejectsUsage(args: string[], message: RegExp): Promise<void> {
  await assert.rejects(run(...args), (e: unknown) => {
    assert.ok(e instanceof UsageError, `${args.join(" ")}: ${e}`);
    assert.match(e.message, message);
    return true;
  });
}

const NOW = "1049522828"; // Saturday 2003-04-05 06:07:08 UTC

Deno.test("moat time prints the next match as local ISO time and Unix seconds", async () => {
  const r = await run("2", "hr", "30", "min", "--tz", "Europe/Berlin", "--now", "2026-03-29T00:00");
  assert.deepEqual(r, { code: 0, out: ["2026-03-29T03:00:00+02:00  1774746000"], err: [] });
});

Deno.test("moat time takes negative numbers in the spec as spec, not options", async () => {
  const r = await run("-", "10", "sec", "--now", NOW, "--tz", "UTC", "--current", "true");
  assert.deepEqual(r.out, ["2003-04-05T06:07:50+00:00  1049522870"]);
  const last = await run("-1", "fri", "--tz=UTC", "--now", NOW, "--current", "true");
  assert.deepEqual(last.out, ["2003-04-25T00:00:00+00:00  1051228800"]);
  const after = await run("--tz", "UTC", "--now", NOW, "--", "-1", "thu");
  assert.deepEqual(after.out, ["2003-04-24T00:00:00+00:00  1051142400"]);
});

Deno.test("moat time --count lists the starts of the next periods by default", async () => {
  const r = await run("12", "hr", "--now", "2003-04-05T12:45:00Z", "--tz", "UTC", "--count", "3");
  assert.deepEqual(r.out, [
    "2003-04-06T12:00:00+00:00  1049630400",
    "2003-04-07T12:00:00+00:00  1049716800",
    "2003-04-08T12:00:00+00:00  1049803200",
  ]);
});

Deno.test("moat time --count with current true lists consecutive matching seconds", async () => {
  const r = await run(
    "12",
    "hr",
    "--now",
    "2003-04-05T12:59:58Z",
    "--tz",
    "UTC",
    "--current",
    "true",
    "--count",
    "3",
  );
  assert.deepEqual(r.out, [
    "2003-04-05T12:59:58+00:00  1049547598",
    "2003-04-05T12:59:59+00:00  1049547599",
    "2003-04-06T12:00:00+00:00  1049630400",
  ]);
});

Deno.test("moat time --current false prints the end of the current match", async () => {
  const r = await run(
    "12",
    "hr",
    "--now",
    "2003-04-05T12:45:00Z",
    "--tz",
    "UTC",
    "--current",
    "false",
  );
  assert.deepEqual(r.out, ["2003-04-05T13:00:00+00:00  1049547600"]);
});

Deno.test("moat time takes a leading Unix timestamp in the spec as now", async () => {
  const r = await run(NOW, "10", "sec", "--tz", "UTC", "--current", "true", "--count", "2");
  assert.deepEqual(r.out, [
    "2003-04-05T06:07:10+00:00  1049522830",
    "2003-04-05T06:08:10+00:00  1049522890",
  ]);
  await assert.rejects(run(NOW, "10", "sec", "--now", NOW), UsageError);
});

Deno.test("moat time prints a fractional now when it matches", async () => {
  const r = await run("8", "sec", "--now", "1049522828.5", "--tz", "UTC", "--current", "true");
  assert.deepEqual(r.out, ["2003-04-05T06:07:08.5+00:00  1049522828.5"]);
});

Deno.test("moat time -h and --help print help and succeed", async () => {
  for (const flag of ["-h", "--help"]) {
    const r = await run(flag);
    assert.equal(r.code, 0);
    assert.match(r.out[0]!, /^Usage: moat time SPEC/);
    assert.ok(r.out.some((l) => l.includes("--count N")));
  }
});

Deno.test("moat time rejects bad arguments with a usage error", async () => {
  const cases: [string[], RegExp][] = [
    [["1", "hr", "--current", "maybe"], /--current must be true, false or none, not "maybe"/],
    [["1", "hr", "--count", "0"], /--count must be a whole number from 1 to 10000, not "0"/],
    [["1", "hr", "--count", "2.5"], /--count must be .* not "2.5"/],
    [["1", "hr", "--tz", "Mars/Base"], /--tz "Mars\/Base" is not a known IANA time zone/],
    [
      ["1", "hr", "--now", "yesterday"],
      /--now must be Unix seconds or an ISO date-time, not "yesterday"/,
    ],
    [["1", "hr", "--now", "2026-02-30T10:00"], /--now "2026-02-30T10:00" is not a valid date/],
    [["1", "hr", "--bogus"], /bogus/],
  ];
  for (const [args, message] of cases) await rejectsUsage(args, message);
});

Deno.test("moat time turns a bad spec into a command error with the spec's message", async () => {
  await assert.rejects(run("7", "hrs", "--tz", "UTC"), (e: unknown) => {
    assert.ok(e instanceof CommandError);
    assert.equal(e.message, 'Cannot parse time spec "7 hrs": unknown unit "hrs" at token 2');
    return true;
  });
  await assert.rejects(
    run("31", "dy", "2", "mo", "--tz", "UTC"),
    (e: unknown) => e instanceof CommandError && /never matches/.test(e.message),
  );
  await assert.rejects(
    run("--now", NOW, "--tz", "UTC", "--current", "false"),
    (e: unknown) => e instanceof UsageError && /needs a time specification/.test(e.message),
  );
});

Deno.test("moat time without a spec is a usage error (exit code 2), not a failure", async () => {
  for (const args of [[], ["--tz", "UTC"], ["--now", NOW, "--count", "2"]]) {
    await rejectsUsage(args, /moat time needs a time specification/);
  }
});

Deno.test("moat time --json prints one JSON object per match", async () => {
  const r = await run(
    "12",
    "hr",
    "--now",
    "2003-04-05T12:45:00Z",
    "--tz",
    "UTC",
    "--count",
    "2",
    "--json",
  );
  assert.deepEqual(r.out.map((l) => JSON.parse(l)), [
    { time: "2003-04-06T12:00:00+00:00", unix: 1049630400, zone: "UTC" },
    { time: "2003-04-07T12:00:00+00:00", unix: 1049716800, zone: "UTC" },
  ]);
  assert.deepEqual(r.err, []);
});

Deno.test("moat time without --tz and without etcd uses the machine's zone and says so", async () => {
  const out: string[] = [];
  const err: string[] = [];
  const globals = resolveGlobals({ etcd: "http://127.0.0.1:1" }, {}, () => "localhost");
  const code = await timeCommand(
    ["12", "hr", "--now", NOW, "--json"],
    { out: (l) => out.push(l), err: (l) => err.push(l) },
    globals,
  );
  assert.equal(code, 0);
  const zone = new Intl.DateTimeFormat().resolvedOptions().timeZone;
  assert.deepEqual(err, [`note: zone ${zone} (the machine's zone)`]);
  assert.equal(JSON.parse(out[0]!).zone, zone);
});

Deno.test("parseNow reads Unix seconds, offsets, and local times in the zone", () => {
  assert.equal(parseNow("1049522828", "UTC"), 1049522828);
  assert.equal(parseNow("2026-03-29T00:00", "Europe/Berlin"), 1774738800);
  assert.equal(parseNow("2026-03-29 00:00:00+01:00", "UTC"), 1774738800);
  assert.equal(parseNow("2026-03-29T00:00:00+0100", "UTC"), 1774738800);
  assert.equal(parseNow("2026-03-29", "UTC"), 1774742400);
  // Inside the gap: the first instant after it.
  assert.equal(parseNow("2026-03-29T02:30", "Europe/Berlin"), 1774746000);
});

Deno.test("moat time takes a quoted spec that starts with a negative number", async () => {
  const lines: string[] = [];
  const code = await timeCommand(
    ["-1 fri 7 hr 30 min", "--now", "1049522828", "--tz", "UTC", "--current", "true"],
    { out: (l) => lines.push(l), err: (l) => lines.push(l) },
  );
  assert.equal(code, 0);
  assert.deepEqual(lines, ["2003-04-25T07:30:00+00:00  1051255800"]);
});

Deno.test("moat time --location takes a negative latitude as its value and previews sun events", async () => {
  const opts = ["--tz", "Australia/Sydney", "--now", "2026-04-04T00:00", "--count", "2"];
  const r = await run("sunset", "--location", "-33.8688,151.2093", ...opts);
  assert.equal(r.code, 0);
  assert.deepEqual(r.err, []);
  // Sydney leaves daylight saving time on 2026-04-05: sunset moves from about 18:50 to 17:50.
  assert.deepEqual(r.out.map((l) => l.slice(0, 13) + l.slice(19, 25)), [
    "2026-04-04T18+11:00",
    "2026-04-05T17+10:00",
  ]);
  // From a leading timestamp inside that second, with current true: the same second, in UTC.
  const now = r.out[0]!.split(/\s+/)[1]!;
  const again = await run(
    now,
    "sunset",
    "--location=-33.8688,151.2093",
    "--tz",
    "UTC",
    "--current",
    "true",
  );
  assert.equal(again.out[0]!.split(/\s+/)[1], now);
});

Deno.test("moat time refuses a malformed --location with a usage error", async () => {
  for (const bad of ["52.52", "52.52,13.405,7", "91,0", "x,y"]) {
    await assert.rejects(
      () => run("sunset", "--location", bad, "--tz", "UTC"),
      (e: unknown) => e instanceof UsageError && /^--location: Cannot use location/.test(e.message),
      bad,
    );
  }
});
