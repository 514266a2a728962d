/**
 * Benchmark of `timeAt` against the luxon primitive it is judged by: one
 * `DateTime.fromSeconds(x).setZone(zone)` call, measured in the same run;
 * and of a sun spec ("30 min before sunset") beside the plain "12 hr".
 *
 * Run standalone: `deno run --allow-all bench/time_bench.ts`
 *
 * @module
 */

// @ts-types="@types/luxon"
import { DateTime } from "luxon";
import { type Figure, median, printFigures } from "./figure.ts";
import { timeAt } from "../host/time/time_at.ts";

/** The mixed set of specs measured: common, DST-sensitive, and far-reaching ones. */
const SPECS: { spec: string; zone: string; current: boolean | null }[] = [
  { spec: "12 hr", zone: "Europe/Berlin", current: null },
  { spec: "7 hr 30 min", zone: "Europe/Berlin", current: true },
  { spec: "-1 fri 7 hr 30 min", zone: "Europe/Berlin", current: null },
  { spec: "2 hr 30 min", zone: "Europe/Berlin", current: null },
  { spec: "- 10 sec", zone: "UTC", current: true },
  { spec: "mon 6 hr", zone: "America/New_York", current: null },
  { spec: "1 wk thu 12 sec", zone: "UTC", current: true },
  { spec: "-1 wk sun 23 hr", zone: "Asia/Kathmandu", current: null },
  { spec: "29 dy 2 mo", zone: "Australia/Lord_Howe", current: null },
  { spec: "5 fri 2 mo", zone: "Europe/Berlin", current: true },
  { spec: "15 min", zone: "Australia/Lord_Howe", current: false },
  { spec: "1 dy 1 mo 0 hr", zone: "America/New_York", current: null },
];

/** Specs that never match (time_at_test.ts has the same). */
const NEVER = ["31 dy 2 mo", "30 dy 2 mo", "2001 yr", "5 fri 2 mo 2027 yr", "53 wk 2 mo"];

const BASE = 1_767_225_600; // 2026-01-01T00:00:00Z
const STEP = 7_919; // seconds between successive "now"s: spreads them over the year

/** Median µs per call of `fn`, timed in batches so the timer's resolution does not matter. */
function measure(fn: (i: number) => unknown, batch: number, samples: number): number {
  let sink = 0;
  for (let i = 0; i < batch; i++) sink += Number(fn(i)); // warm-up
  const per: number[] = [];
  let k = 0;
  for (let s = 0; s < samples; s++) {
    const t0 = performance.now();
    for (let i = 0; i < batch; i++) sink += Number(fn(k++));
    per.push(((performance.now() - t0) * 1000) / batch);
  }
  if (Number.isNaN(sink)) throw new Error("benchmark produced NaN");
  return median(per);
}

/**
 * Measure `timeAt` over {@link SPECS}: the median over specs of each spec's
 * median µs per call, against one luxon `fromSeconds` + `setZone`; and the
 * slowest spec's median.
 *
 * @example
 * ```ts ignore
 * import { benchTime } from "./time_bench.ts";
 * for (const f of benchTime()) console.log(f.name, f.value, f.unit);
 * ```
 */
export function benchTime(): Figure[] {
  const batch = 200;
  const samples = 15;
  const perSpec = SPECS.map(({ spec, zone, current }) => ({
    spec,
    us: measure(
      (i) => timeAt(spec, { now: BASE + (i % 4000) * STEP + 0.25, current, zone }),
      batch,
      samples,
    ),
  }));
  // The primitive in one fixed zone: luxon's caches make that its fastest case.
  const luxon = measure(
    (i) => DateTime.fromSeconds(BASE + (i % 4000) * STEP).setZone("Europe/Berlin").hour,
    batch * 5,
    samples,
  );
  const slowest = perSpec.reduce((a, b) => (b.us > a.us ? b : a));
  // Specs that never match search up to a whole calendar cycle before they
  // say so; the slowest of them (a bound that used to sit in
  // host/time/time_at_test.ts as "< 250 ms").
  const never = Math.max(
    ...NEVER.map((spec) =>
      measure(
        () => {
          try {
            timeAt(spec, { now: BASE, zone: "Europe/Berlin" });
          } catch {
            return 1;
          }
          throw new Error(`the spec "${spec}", which never matches, matched`);
        },
        2,
        5,
      ) / 1000
    ),
  );
  // A sun spec beside the plain spec it is most like (one match a day).
  const berlin = { latitude: 52.52, longitude: 13.405 };
  const sun = measure(
    (i) =>
      timeAt("30 min before sunset", {
        now: BASE + (i % 4000) * STEP + 0.25,
        zone: "Europe/Berlin",
        location: berlin,
      }),
    batch,
    samples,
  );
  const plain = perSpec.find((p) => p.spec === "12 hr")!.us;
  if (import.meta.main) console.log(`slowest spec: "${slowest.spec}"`);
  return [
    {
      name: "time_at.median",
      value: median(perSpec.map((p) => p.us)),
      unit: "µs",
      rawName: "luxon fromSeconds+setZone",
      raw: luxon,
      target: "ratio <= 50",
    },
    {
      name: "time_at.slowest",
      value: slowest.us,
      unit: "µs",
      rawName: "",
      raw: NaN,
      target: "<= 1000 µs",
    },
    {
      name: "time_at.sun",
      value: sun,
      unit: "µs",
      rawName: 'time_at "12 hr"',
      raw: plain,
      target: "<= 1000 µs",
    },
    {
      name: "time_at.never_matches",
      value: never,
      unit: "ms",
      rawName: "",
      raw: NaN,
      target: "<= 250 ms",
    },
  ];
}

if (import.meta.main) printFigures(benchTime());
