import assert from "node:assert/strict";
import { timeAt } from "./time_at.ts";
import { localIso, localToUnix, zoneOffset } from "./zone.ts";
import { TimeSpecError } from "./time_spec.ts";

/** Saturday 2003-04-05 06:07:08 UTC, the `now` of the worked examples. */
const NOW = 1049522828;
const utc = (iso: string) => Date.parse(`${iso}Z`) / 1000;
const at = (iso: string) => Date.parse(iso) / 1000;

/** Evaluate and show the result as local ISO time, for readable failures. */
function show(spec: string, now: number, current: boolean | null, zone = "UTC"): string {
  return localIso(timeAt(spec, { now, current, zone }), zone);
}

/** Evaluate, expect a TimeSpecError, and return its message. */
function errorOf(spec: string, options: Parameters<typeof timeAt>[1]): string {
  try {
    timeAt(spec, options);
  } catch (e) {
    assert.ok(e instanceof TimeSpecError, `expected a TimeSpecError, got ${e}`);
    return e.message;
  }
  assert.fail(`timeAt(${JSON.stringify(spec)}) did not throw`);
}

const WORKED_CURRENT_TRUE: [string, string][] = [
  ["6 h 4 month 8 sec", "2003-04-05T06:07:08"],
  ["10 sec", "2003-04-05T06:07:10"],
  ["2 sec", "2003-04-05T06:08:02"],
  ["- 10 sec", "2003-04-05T06:07:50"],
  ["11 min 2 sec", "2003-04-05T06:11:02"],
  ["11 h - 10 sec", "2003-04-05T11:00:50"],
  ["11 h - 15 min - 10 sec", "2003-04-05T11:45:50"],
  ["- 1 h 5 min - 10 sec", "2003-04-05T23:05:50"],
  ["1 wk", "2003-12-29T00:00:00"],
  ["1 wk thu 12 sec", "2004-01-01T00:00:12"],
  ["2 wk", "2004-01-05T00:00:00"],
  ["14 wk", "2003-04-05T06:07:08"],
  ["15 wk", "2003-04-07T00:00:00"],
  ["13 wk", "2004-03-22T00:00:00"],
  ["1 sat", "2003-04-05T06:07:08"],
  ["2 tue", "2003-04-08T00:00:00"],
  ["3 wed", "2003-04-16T00:00:00"],
  ["-3 wed", "2003-04-16T00:00:00"],
  ["-1 thu", "2003-04-24T00:00:00"],
  ["1 thu", "2003-05-01T00:00:00"],
  ["1 wed", "2003-05-07T00:00:00"],
];

for (const [spec, expected] of WORKED_CURRENT_TRUE) {
  Deno.test(`time_at("${spec}", current: true) is ${expected} in the worked example`, () => {
    assert.equal(show(spec, NOW, true), `${expected}+00:00`);
  });
}

const WORKED_CURRENT_FALSE: [string, string][] = [
  ["8 sec", "2003-04-05T06:07:09"],
  ["9 sec", "2003-04-05T06:07:08"],
  ["7 min 8 sec", "2003-04-05T06:07:09"],
  ["7 min 0 sec", "2003-04-05T06:07:08"],
  ["14 wk", "2003-04-07T00:00:00"],
  ["14 wk mon", "2003-04-05T06:07:08"],
  ["14 wk sat", "2003-04-06T00:00:00"],
  ["15 wk", "2003-04-05T06:07:08"],
];

for (const [spec, expected] of WORKED_CURRENT_FALSE) {
  Deno.test(`time_at("${spec}", current: false) is ${expected} in the worked example`, () => {
    assert.equal(show(spec, NOW, false), `${expected}+00:00`);
  });
}

Deno.test("time_at of an empty spec with current false is an error: it never stops matching", () => {
  assert.match(errorOf("", { now: NOW, current: false, zone: "UTC" }), /never stops matching/);
  assert.match(errorOf("", { now: NOW, current: null, zone: "UTC" }), /never stops matching/);
  assert.equal(timeAt("", { now: NOW + 0.5, current: true, zone: "UTC" }), NOW + 0.5);
});

Deno.test("time_at of 12 hr at 12:45 is 12:45, 13:00, or 12:00 the next day by current", () => {
  const now = utc("2003-04-05T12:45:00");
  assert.equal(show("12 hr", now, true), "2003-04-05T12:45:00+00:00");
  assert.equal(show("12 hr", now, false), "2003-04-05T13:00:00+00:00");
  assert.equal(show("12 hr", now, null), "2003-04-06T12:00:00+00:00");
  assert.equal(timeAt("12 hr", { now, zone: "UTC" }), utc("2003-04-06T12:00:00"));
});

const BERLIN = "Europe/Berlin";
const DST_TABLE: [string, string, boolean | null, string][] = [
  ["2 hr 30 min", "2026-03-29T00:00:00+01:00", true, "2026-03-29T03:00:00+02:00"],
  ["2 hr 30 min", "2026-03-29T03:00:01+02:00", true, "2026-03-30T02:30:00+02:00"],
  ["3 hr", "2026-03-29T00:00:00+01:00", true, "2026-03-29T03:00:00+02:00"],
  ["2 hr 30 min", "2026-10-25T00:00:00+02:00", true, "2026-10-25T02:30:00+02:00"],
  ["2 hr 30 min", "2026-10-25T02:31:00+02:00", true, "2026-10-26T02:30:00+01:00"],
  ["2 hr", "2026-10-25T02:10:00+02:00", false, "2026-10-25T02:00:00+01:00"],
  ["2 hr", "2026-10-25T01:00:00+02:00", null, "2026-10-25T02:00:00+02:00"],
];

for (const [spec, now, current, expected] of DST_TABLE) {
  Deno.test(`time_at("${spec}") from ${now} with current ${current} is ${expected} in Berlin`, () => {
    assert.equal(show(spec, at(now), current, BERLIN), expected);
  });
}

const REGRESSIONS: [string, string, string][] = [
  ["6 hr 0 min", "2003-04-05T06:30:00", "2003-04-06T06:00:00"],
  ["7 min 2 sec", "2003-04-05T06:07:08", "2003-04-05T07:07:02"],
  ["sat 5 hr", "2003-04-05T06:07:08", "2003-04-12T05:00:00"],
  ["5 fri", "2003-04-05T06:07:08", "2003-05-30T00:00:00"],
  ["2027 yr", "2026-11-27T06:07:08", "2027-01-01T00:00:00"],
];

for (const [spec, now, expected] of REGRESSIONS) {
  for (const current of [true, null]) {
    Deno.test(`time_at("${spec}") from ${now} is ${expected} (regression, current ${current})`, () => {
      assert.equal(show(spec, utc(now), current), `${expected}+00:00`);
    });
  }
}

Deno.test("time_at finds the last Friday of the month, 07:30, in Berlin", () => {
  assert.equal(
    show("-1 fri 7 hr 30 min", at("2026-03-27T08:00:00+01:00"), true, BERLIN),
    "2026-04-24T07:30:00+02:00",
  );
  assert.equal(
    show("-1 fri 7 hr 30 min", at("2026-03-01T00:00:00+01:00"), null, BERLIN),
    "2026-03-27T07:30:00+01:00",
  );
});

Deno.test("time_at over a gap matches at its end once, and current false ends a second later", () => {
  const gapEnd = at("2026-03-29T03:00:00+02:00");
  assert.equal(timeAt("2 hr 30 min", { now: gapEnd, current: true, zone: BERLIN }), gapEnd);
  assert.equal(timeAt("2 hr 30 min", { now: gapEnd, current: false, zone: BERLIN }), gapEnd + 1);
  assert.equal(
    show("2 hr 30 min", gapEnd, null, BERLIN),
    "2026-03-30T02:30:00+02:00",
  );
  // A run that reaches the gap goes on through its end when a skipped second matches.
  assert.equal(
    show("59 sec", at("2026-03-29T01:59:59+01:00"), false, BERLIN),
    "2026-03-29T03:00:01+02:00",
  );
  assert.equal(
    show("1 hr", at("2026-03-29T01:30:00+01:00"), false, BERLIN),
    "2026-03-29T03:00:00+02:00",
  );
});

Deno.test("time_at skips the repeated hour of a fall back for times of day, not for dates", () => {
  const repeat = at("2026-10-25T02:10:00+01:00");
  assert.equal(timeAt("2 hr", { now: repeat, current: false, zone: BERLIN }), repeat);
  assert.equal(show("2 hr", repeat, true, BERLIN), "2026-10-26T02:00:00+01:00");
  assert.equal(show("15 min", repeat, true, BERLIN), "2026-10-25T03:15:00+01:00");
  assert.equal(show("sun", repeat, true, BERLIN), "2026-10-25T02:10:00+01:00");
  assert.equal(show("sun", repeat, false, BERLIN), "2026-10-26T00:00:00+01:00");
  assert.equal(
    show("sun", at("2026-10-25T00:00:00+02:00"), false, BERLIN),
    "2026-10-26T00:00:00+01:00",
  );
});

Deno.test("time_at handles Lord Howe's half-hour shifts", () => {
  const zone = "Australia/Lord_Howe";
  // 2026-04-05 02:00 +11:00 falls back to 01:30 +10:30.
  assert.equal(
    show("1 hr 45 min", at("2026-04-05T00:00:00+11:00"), true, zone),
    "2026-04-05T01:45:00+11:00",
  );
  assert.equal(
    show("1 hr 45 min", at("2026-04-05T01:50:00+11:00"), true, zone),
    "2026-04-06T01:45:00+10:30",
  );
  assert.equal(
    show("1 hr", at("2026-04-05T01:10:00+11:00"), false, zone),
    "2026-04-05T01:30:00+10:30",
  );
  // 2026-10-04 02:00 +10:30 springs forward to 02:30 +11:00.
  assert.equal(
    show("2 hr 15 min", at("2026-10-04T00:00:00+10:30"), true, zone),
    "2026-10-04T02:30:00+11:00",
  );
  assert.equal(
    show("2 hr 45 min", at("2026-10-04T00:00:00+10:30"), true, zone),
    "2026-10-04T02:45:00+11:00",
  );
});

Deno.test("time_at handles Kathmandu's quarter-hour shift of 1986", () => {
  const zone = "Asia/Kathmandu";
  assert.equal(
    show("0 hr 10 min", at("1985-12-31T23:00:00+05:30"), true, zone),
    "1986-01-01T00:15:00+05:45",
  );
  assert.equal(
    show("0 hr 20 min", at("1985-12-31T23:00:00+05:30"), true, zone),
    "1986-01-01T00:20:00+05:45",
  );
});

Deno.test("time_at handles New York's gap and overlap", () => {
  const zone = "America/New_York";
  assert.equal(
    show("2 hr 30 min", at("2026-03-08T00:00:00-05:00"), true, zone),
    "2026-03-08T03:00:00-04:00",
  );
  assert.equal(
    show("1 hr 30 min", at("2026-11-01T01:45:00-04:00"), true, zone),
    "2026-11-02T01:30:00-05:00",
  );
});

Deno.test("time_at counts negative weeks from the end of the ISO year", () => {
  assert.equal(show("-1 wk", NOW, true), "2003-12-22T00:00:00+00:00"); // 2003 has 52 weeks
  assert.equal(show("53 wk", NOW, true), "2004-12-27T00:00:00+00:00");
  assert.equal(show("-53 wk", NOW, true), "2003-12-29T00:00:00+00:00"); // week 1 of 2004
  assert.equal(show("-1 wk", utc("2004-06-01T00:00:00"), true), "2004-12-27T00:00:00+00:00");
});

Deno.test("time_at matches the year, month and days from the end of the month", () => {
  assert.equal(show("2004 yr 1 wk", NOW, true), "2004-01-01T00:00:00+00:00");
  assert.equal(show("-1 dy 2 mo", NOW, true), "2004-02-29T00:00:00+00:00");
  assert.equal(show("-1 mo -1 dy", NOW, true), "2003-12-31T00:00:00+00:00");
  assert.equal(show("5 fri 2 mo", NOW, true), "2008-02-29T00:00:00+00:00");
  assert.equal(show("4 mo", NOW, false), "2003-05-01T00:00:00+00:00");
  assert.equal(show("2003 yr", NOW, false), "2004-01-01T00:00:00+00:00");
  assert.equal(show("sat", NOW, false), "2003-04-06T00:00:00+00:00");
});

Deno.test("time_at reports a spec that never matches instead of hanging", () => {
  for (const spec of ["31 dy 2 mo", "30 dy 2 mo", "2001 yr", "5 fri 2 mo 2027 yr", "53 wk 2 mo"]) {
    // How fast it gives up: time_at.never_matches in deno task bench.
    const message = errorOf(spec, { now: NOW, zone: BERLIN });
    assert.equal(
      message,
      `Cannot evaluate time spec "${spec}": the spec never matches ` +
        "(none within 400 years, a whole calendar cycle)",
    );
  }
});

Deno.test("time_at returns a fractional now only when now itself matches", () => {
  assert.equal(timeAt("8 sec", { now: NOW + 0.25, current: true, zone: "UTC" }), NOW + 0.25);
  assert.equal(timeAt("9 sec", { now: NOW + 0.25, current: true, zone: "UTC" }), NOW + 1);
  assert.equal(timeAt("9 sec", { now: NOW + 0.25, current: false, zone: "UTC" }), NOW + 0.25);
  assert.equal(timeAt("8 sec", { now: NOW + 0.25, current: false, zone: "UTC" }), NOW + 1);
});

Deno.test("time_at takes a leading Unix timestamp as now", () => {
  assert.equal(timeAt(`${NOW} 10 sec`, { current: true, zone: "UTC" }), NOW + 2);
  assert.equal(timeAt([NOW, 10, "sec"], { now: 0, current: true, zone: "UTC" }), NOW + 2);
  assert.equal(timeAt(`${NOW}`, { current: true, zone: "UTC" }), NOW);
});

Deno.test("time_at works before 1970", () => {
  assert.equal(show("12 hr", utc("1969-07-20T20:17:40"), null), "1969-07-21T12:00:00+00:00");
});

Deno.test("time_at rejects an unknown zone by name", () => {
  assert.equal(
    errorOf("12 hr", { now: NOW, zone: "Mars/Olympus_Mons" }),
    'Cannot use time zone "Mars/Olympus_Mons": unknown time zone',
  );
});

Deno.test("time_at defaults to now, current null and the host's zone", () => {
  const before = Date.now() / 1000;
  const t = timeAt("0 sec");
  assert.ok(t > before && t <= before + 61, `${t} not within a minute of ${before}`);
  assert.equal(t % 60, 0); // every zone in use has whole-minute offsets
});

Deno.test("localIso and localToUnix convert between wall clock and Unix time", () => {
  assert.equal(localIso(1774746000, BERLIN), "2026-03-29T03:00:00+02:00");
  assert.equal(localIso(1774746000.5, BERLIN), "2026-03-29T03:00:00.5+02:00");
  assert.equal(localIso(0, "Asia/Kathmandu"), "1970-01-01T05:30:00+05:30");
  assert.equal(localToUnix([2026, 3, 29, 2, 30, 0], BERLIN), 1774746000);
  assert.equal(localToUnix([2026, 10, 25, 2, 30, 0], BERLIN), at("2026-10-25T02:30:00+02:00"));
  assert.equal(zoneOffset(at("2026-10-25T02:30:00+01:00"), BERLIN), 3600);
});
