/**
 * Sun events in time specs, checked against an independent reference:
 * astronomy-engine 2.1.19 (Don Cross; the sun's position from the VSOP87
 * planetary theory, nutation and aberration, written apart from NOAA's
 * formulas), imported here only, at test time. Its `SearchAltitude` finds
 * when the sun's centre reaches a geometric altitude, so it is asked for
 * exactly the events docs/time.md defines: -0.833° for sunrise and sunset,
 * -6° for dawn and dusk. Every event of the reference in the period must
 * appear in `timeAt`'s list and the other way round, within 60 seconds.
 */

import assert from "node:assert/strict";
import * as Astronomy from "astronomy-engine";
import { timeAt } from "./time_at.ts";
import { type Location, parseLocation, type SunEvent } from "./sun.ts";
import { parseTimeSpec, TimeSpecError } from "./time_spec.ts";
import { localIso, localToUnix } from "./zone.ts";

const BERLIN: Location = { latitude: 52.52, longitude: 13.405 };
const NEW_YORK: Location = { latitude: 40.7128, longitude: -74.006 };
const SYDNEY: Location = { latitude: -33.8688, longitude: 151.2093 };
const TROMSO: Location = { latitude: 69.6492, longitude: 18.9553 };

const ALTITUDE: Record<SunEvent, [direction: 1 | -1, degrees: number]> = {
  sunrise: [1, -0.833],
  sunset: [-1, -0.833],
  dawn: [1, -6],
  dusk: [-1, -6],
};

/** The reference's events of one kind in [from, to), Unix seconds (fractional). */
function referenceEvents(event: SunEvent, where: Location, from: number, to: number): number[] {
  const observer = new Astronomy.Observer(where.latitude, where.longitude, 0);
  const [direction, altitude] = ALTITUDE[event];
  const out: number[] = [];
  let t = from;
  for (;;) {
    const days = (to - t) / 86_400;
    if (days <= 0) break;
    const found = Astronomy.SearchAltitude(
      Astronomy.Body.Sun,
      observer,
      direction,
      new Date(t * 1000),
      days,
      altitude,
    );
    if (found === null) break;
    const at = found.date.getTime() / 1000;
    if (at >= to) break;
    out.push(at);
    t = at + 600;
  }
  return out;
}

/** `timeAt`'s matches of `spec` in [from, to), one after the other. */
function ourEvents(spec: string, zone: string, where: Location, from: number, to: number) {
  const out: number[] = [];
  let now = from;
  for (;;) {
    const t = timeAt(spec, { now, current: true, zone, location: where });
    if (t >= to) break;
    out.push(t);
    now = t + 1;
  }
  return out;
}

/** Both lists hold the same events, each pair within `tolerance` seconds. */
function assertSameEvents(ours: number[], reference: number[], zone: string, tolerance = 60) {
  const show = (xs: number[]) => xs.map((x) => localIso(Math.floor(x), zone)).join(", ");
  assert.equal(
    ours.length,
    reference.length,
    `ours: ${show(ours)}\nreference: ${show(reference)}`,
  );
  ours.forEach((t, i) => {
    const r = reference[i]!;
    assert.ok(
      Math.abs(t - r) <= tolerance,
      `${localIso(t, zone)} is more than ${tolerance} s from ${localIso(Math.floor(r), zone)}`,
    );
  });
}

const DST_CASES: [string, string, Location, [number, number, number]][] = [
  ["Berlin", "Europe/Berlin", BERLIN, [2026, 3, 29]],
  ["New York", "America/New_York", NEW_YORK, [2026, 3, 8]],
  ["Sydney", "Australia/Sydney", SYDNEY, [2026, 4, 5]],
];

for (const [name, zone, where, [y, m, d]] of DST_CASES) {
  Deno.test(`sun events in ${name} agree with the reference for ten days across the DST change`, () => {
    const from = localToUnix([y, m, d - 5, 0, 0, 0], zone);
    const to = localToUnix([y, m, d + 5, 0, 0, 0], zone);
    for (const event of ["sunrise", "sunset", "dawn", "dusk"] as const) {
      const ours = ourEvents(event, zone, where, from, to);
      assert.equal(ours.length, 10, `${event}: one a day`);
      assertSameEvents(ours, referenceEvents(event, where, from, to), zone);
      // Each falls on its own local date, the DST day among them.
      const dates = ours.map((t) => localIso(t, zone).slice(0, 10));
      assert.equal(new Set(dates).size, 10, dates.join(" "));
    }
  });
}

Deno.test("30 min before sunset in Berlin is the reference sunset less 30 minutes, across DST", () => {
  const zone = "Europe/Berlin";
  const from = localToUnix([2026, 3, 26, 0, 0, 0], zone);
  const to = localToUnix([2026, 4, 1, 0, 0, 0], zone);
  const ours = ourEvents("30 min before sunset", zone, BERLIN, from, to);
  const reference = referenceEvents("sunset", BERLIN, from, to).map((t) => t - 1800);
  assertSameEvents(ours, reference, zone);
  // About 18:00 in winter time, about 19:00 in summer time.
  assert.deepEqual(ours.map((t) => localIso(t, zone).slice(11, 13)), [
    "18",
    "18",
    "18",
    "19",
    "19",
    "19",
  ]);
});

Deno.test("1 hr 15 min after dawn and sat sunrise combine offsets and dates as written", () => {
  const zone = "America/New_York";
  const from = localToUnix([2026, 3, 1, 0, 0, 0], zone);
  const to = localToUnix([2026, 4, 1, 0, 0, 0], zone);
  const dawns = referenceEvents("dawn", NEW_YORK, from, to);
  assertSameEvents(
    ourEvents("1 hr 15 min after dawn", zone, NEW_YORK, from, to).filter((t) => t < to - 4500),
    dawns.map((t) => t + 4500).filter((t) => t < to - 4500),
    zone,
  );
  // Saturdays of March 2026: the 7th, 14th, 21st and 28th.
  const saturdays = referenceEvents("sunrise", NEW_YORK, from, to).filter((t) =>
    new Date((t - 5 * 3600) * 1000).getUTCDay() === 6
  );
  const ours = ourEvents("sat sunrise", zone, NEW_YORK, from, to);
  assertSameEvents(ours, saturdays, zone);
  assert.deepEqual(ours.map((t) => localIso(t, zone).slice(0, 10)), [
    "2026-03-07",
    "2026-03-14",
    "2026-03-21",
    "2026-03-28",
  ]);
});

Deno.test("the date fields restrict the local date of the event itself, not of the offset's result", () => {
  // Sydney dusk is about 18:30; "6 hr after dusk" lands after midnight, on the next date.
  const zone = "Australia/Sydney";
  const now = localToUnix([2026, 3, 1, 0, 0, 0], zone);
  const t = timeAt("fri 6 hr after dusk", { now, current: true, zone, location: SYDNEY });
  const dusk = referenceEvents("dusk", SYDNEY, localToUnix([2026, 3, 6, 0, 0, 0], zone), t)[0]!;
  assert.ok(Math.abs(t - (dusk + 6 * 3600)) <= 60, localIso(t, zone));
  assert.equal(localIso(t, zone).slice(0, 10), "2026-03-07"); // Saturday, after Friday's dusk
});

Deno.test("Tromsø: every sun event of a year agrees with the reference, polar day and night skipped", () => {
  const zone = "Europe/Oslo";
  const from = localToUnix([2026, 1, 1, 0, 0, 0], zone);
  const to = localToUnix([2027, 1, 1, 0, 0, 0], zone);
  for (const event of ["sunrise", "sunset", "dawn", "dusk"] as const) {
    assertSameEvents(
      ourEvents(event, zone, TROMSO, from, to),
      referenceEvents(event, TROMSO, from, to),
      zone,
    );
  }
});

Deno.test("Tromsø in late June has no sunset: the next one is after the midnight sun", () => {
  const zone = "Europe/Oslo";
  const now = localToUnix([2026, 6, 21, 12, 0, 0], zone);
  const t = timeAt("sunset", { now, current: true, zone, location: TROMSO });
  const reference = referenceEvents("sunset", TROMSO, now, now + 60 * 86_400)[0]!;
  assert.ok(Math.abs(t - reference) <= 60, `${localIso(t, zone)} vs ${localIso(reference, zone)}`);
  assert.ok(t > localToUnix([2026, 7, 20, 0, 0, 0], zone), localIso(t, zone));
  // Dates that lack it are skipped, never an error; a date that always lacks it is one.
  assert.throws(
    () => timeAt("sunset 21 dy 6 mo", { now, zone, location: TROMSO }),
    (e: unknown) => e instanceof TimeSpecError && /never matches/.test(e.message),
  );
});

Deno.test("Tromsø in December has no sunrise, but dawn and dusk around noon", () => {
  const zone = "Europe/Oslo";
  const now = localToUnix([2026, 12, 21, 0, 0, 0], zone);
  const sunrise = timeAt("sunrise", { now, current: true, zone, location: TROMSO });
  assert.ok(sunrise > localToUnix([2027, 1, 10, 0, 0, 0], zone), localIso(sunrise, zone));
  const end = now + 86_400;
  for (const event of ["dawn", "dusk"] as const) {
    const ours = ourEvents(event, zone, TROMSO, now, end);
    assertSameEvents(ours, referenceEvents(event, TROMSO, now, end), zone);
    assert.equal(ours.length, 1);
  }
  assert.throws(
    () => timeAt("sunrise 12 mo 21 dy", { now, zone, location: TROMSO }),
    /never matches at latitude 69.6492, longitude 18.9553 \(no sunrise on any matching date\)/,
  );
});

Deno.test("a sun spec matches for the one whole second of the event, with every current", () => {
  const zone = "Europe/Berlin";
  const now = localToUnix([2026, 5, 1, 0, 0, 0], zone);
  const opts = { zone, location: BERLIN };
  const s = timeAt("sunset", { ...opts, now, current: true });
  assert.equal(s, Math.floor(s));
  // Inside the second it matches: current true is now; false is the next second.
  assert.equal(timeAt("sunset", { ...opts, now: s + 0.5, current: true }), s + 0.5);
  assert.equal(timeAt("sunset", { ...opts, now: s + 0.5, current: false }), s + 1);
  assert.equal(timeAt("sunset", { ...opts, now: s - 10, current: false }), s - 10);
  // The default is the start of the next match: from inside it, tomorrow's.
  assert.equal(timeAt("sunset", { ...opts, now: s - 10 }), s);
  const tomorrow = timeAt("sunset", { ...opts, now: s });
  assert.ok(tomorrow > s + 86_000 && tomorrow < s + 86_800, localIso(tomorrow, zone));
});

Deno.test("a sun spec without a location is an error naming /config/location", () => {
  assert.throws(
    () => timeAt("30 min before sunset", { now: 1_800_000_000, zone: "UTC" }),
    (e: unknown) =>
      e instanceof TimeSpecError &&
      e.message === 'Cannot evaluate time spec "30 min before sunset": "sunset" needs the ' +
          'installation\'s location; set /config/location to "LAT LON", e.g. "52.52 13.405"',
  );
});

Deno.test("parseTimeSpec reads event words and the offsets written before them", () => {
  assert.deepEqual(parseTimeSpec("sunset"), { event: "sunset" });
  assert.deepEqual(parseTimeSpec("30 min before sunset"), { event: "sunset", offset: -1800 });
  assert.deepEqual(parseTimeSpec("1 hr 15 min after Dawn"), { event: "dawn", offset: 4500 });
  assert.deepEqual(parseTimeSpec(["sat", 10, "sec", "after", "dusk", 6, "mo"]), {
    weekday: 6,
    event: "dusk",
    offset: 10,
    month: 6,
  });
  assert.deepEqual(parseTimeSpec("90 min before sunrise"), { event: "sunrise", offset: -5400 });
});

Deno.test("parseTimeSpec refuses malformed sun specs, naming the token", () => {
  const cases: [string, RegExp][] = [
    ["sunset dawn", /a second event word "dawn" \(first "sunset" at token 1\) at token 2/],
    ["7 hr sunset", /hour "hr" together with the event word "sunset".* at token 2/],
    ["sunset 10 min", /minute "min" together with the event word "sunset".* at token 3/],
    ["before sunset", /"before" without an offset such as "30 min before sunset" at token 1/],
    ["30 min sunset before", /"before" belongs between an offset and an event word/],
    ["-30 min before sunset", /offset "-30 min" is not a whole number of minutes/],
    ["- 30 min before sunset", /the offset of an event is never signed at token 2/],
    ["1.5 hr before sunset", /offset "1.5 hr" is not a whole number of hours/],
    ["10 min 5 min before sunset", /minutes given twice in the offset/],
    ["25 hr after dawn", /offset "after dawn" is longer than 24 hours/],
    ["30 dy before sunset", /"before" without an offset/],
  ];
  for (const [spec, why] of cases) {
    assert.throws(() => parseTimeSpec(spec), (e: unknown) => {
      assert.ok(e instanceof TimeSpecError, `${spec}: ${e}`);
      assert.match(e.message, why, spec);
      return true;
    });
  }
});

Deno.test("parseLocation reads LAT LON and LAT,LON and refuses the rest", () => {
  assert.deepEqual(parseLocation("52.52 13.405"), BERLIN);
  assert.deepEqual(parseLocation(" -33.8688 , 151.2093 "), SYDNEY);
  assert.deepEqual(parseLocation("69.6492\t18.9553"), TROMSO);
  for (const bad of ["", "52.52", "52.52 13.405 7", "north east", "91 0", "0 181", "1e1 2"]) {
    assert.throws(() => parseLocation(bad), RangeError, bad);
  }
});
