/**
 * Property test of `timeAt` against an independent brute-force oracle.
 *
 * The oracle shares no code with `host/time/`: offsets come from luxon,
 * calendar fields from `Date`'s UTC getters and luxon's ISO weeks, and the
 * search steps through the candidate seconds one by one. To stay fast it
 * only skips 15-minute blocks of instants (all offsets and offset changes of
 * the zones tested fall on 15-minute boundaries, which the table builder
 * asserts) in which the date and the hour cannot match.
 *
 * Seed: MOAT_TIME_SEED (default fixed); it is printed on failure.
 *
 * @module
 */

import assert from "node:assert/strict";
// @ts-types="@types/luxon"
import { DateTime } from "luxon";
import { timeAt } from "../../host/time/time_at.ts";

const ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kathmandu"];
const BLOCK = 900;
const HORIZON = 800 * 86_400;
const TABLE_FROM = Date.UTC(1984, 0, 1) / 1000;
const TABLE_TO = Date.UTC(2034, 0, 1) / 1000;

// ---------------------------------------------------------------- offsets via luxon

interface Transition {
  t: number; // first second of the new offset
  before: number;
  after: number;
}

function luxonOffset(s: number, zone: string): number {
  return DateTime.fromSeconds(s, { zone }).offset * 60;
}

function buildTable(zone: string): Transition[] {
  const out: Transition[] = [];
  const step = 3 * 3600;
  let prev = luxonOffset(TABLE_FROM, zone);
  for (let s = TABLE_FROM + step; s <= TABLE_TO; s += step) {
    const o = luxonOffset(s, zone);
    if (o !== prev) {
      let lo = s - step;
      let hi = s;
      while (hi - lo > 1) {
        const mid = Math.floor((lo + hi) / 2);
        if (luxonOffset(mid, zone) === prev) lo = mid;
        else hi = mid;
      }
      if (hi % BLOCK !== 0 || o % BLOCK !== 0 || prev % BLOCK !== 0) {
        throw new Error(`zone ${zone}: transition at ${hi} not on a 15-minute boundary`);
      }
      out.push({ t: hi, before: prev, after: o });
      prev = o;
    }
  }
  return out;
}

class OracleZone {
  readonly table: Transition[];
  readonly first: number;
  constructor(readonly name: string) {
    this.table = buildTable(name);
    this.first = luxonOffset(TABLE_FROM, name);
  }
  offset(s: number): number {
    if (s < TABLE_FROM || s > TABLE_TO) throw new Error(`oracle: ${s} outside the table`);
    let lo = 0;
    let hi = this.table.length; // first transition with t > s
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.table[mid]!.t <= s) lo = mid + 1;
      else hi = mid;
    }
    return lo === 0 ? this.first : this.table[lo - 1]!.after;
  }
  /** The transition starting exactly at s, if any. */
  at(s: number): Transition | undefined {
    return this.table.find((x) => x.t === s);
  }
  inRepeat(s: number): boolean {
    return this.table.some((x) => x.after < x.before && x.t <= s && s < x.t + (x.before - x.after));
  }
}

// ---------------------------------------------------------------- specs

interface Spec {
  sec?: number;
  min?: number;
  hr?: number;
  day?: number;
  month?: number;
  week?: number;
  year?: number;
  wd?: number;
  nth?: number;
}

interface DayFields {
  y: number;
  m: number;
  d: number;
  wd: number;
  len: number;
  isoWeek: number;
  isoWeeks: number;
}

const dayCache = new Map<number, DayFields>();
function dayFields(dayNo: number): DayFields {
  let f = dayCache.get(dayNo);
  if (f === undefined) {
    const date = new Date(dayNo * 86_400_000);
    const y = date.getUTCFullYear();
    const m = date.getUTCMonth() + 1;
    const lx = DateTime.fromObject({ year: y, month: m, day: date.getUTCDate() }, { zone: "utc" });
    f = {
      y,
      m,
      d: date.getUTCDate(),
      wd: date.getUTCDay() === 0 ? 7 : date.getUTCDay(),
      len: new Date(Date.UTC(y, m, 0)).getUTCDate(),
      isoWeek: lx.weekNumber,
      isoWeeks: lx.weeksInWeekYear,
    };
    dayCache.set(dayNo, f);
  }
  return f;
}

function dateOk(spec: Spec, f: DayFields): boolean {
  if (spec.year !== undefined && f.y !== spec.year) return false;
  if (spec.month !== undefined && f.m !== (spec.month < 0 ? 13 + spec.month : spec.month)) {
    return false;
  }
  if (spec.day !== undefined) {
    const want = spec.day > 0 ? spec.day : f.len + 1 + spec.day;
    if (f.d !== want) return false;
  }
  if (spec.wd !== undefined && f.wd !== spec.wd) return false;
  if (spec.nth !== undefined) {
    if (spec.nth > 0 && Math.ceil(f.d / 7) !== spec.nth) return false;
    if (spec.nth < 0 && -Math.ceil((f.len - f.d + 1) / 7) !== spec.nth) return false;
  }
  if (spec.week !== undefined) {
    const want = spec.week > 0 ? spec.week : f.isoWeeks + 1 + spec.week;
    if (f.isoWeek !== want) return false;
  }
  return true;
}

function hourOk(spec: Spec, h: number): boolean {
  return spec.hr === undefined || h === (spec.hr < 0 ? 24 + spec.hr : spec.hr);
}

/** All fields against wall-clock seconds w. */
function base(spec: Spec, w: number): boolean {
  const date = new Date(w * 1000);
  if (!hourOk(spec, date.getUTCHours())) return false;
  if (spec.min !== undefined && date.getUTCMinutes() !== (spec.min + 60) % 60) return false;
  if (spec.sec !== undefined && date.getUTCSeconds() !== (spec.sec + 60) % 60) return false;
  return dateOk(spec, dayFields(Math.floor(w / 86_400)));
}

const isEmpty = (spec: Spec) => Object.keys(spec).length === 0;
const namesTod = (spec: Spec) =>
  spec.hr !== undefined || spec.min !== undefined || spec.sec !== undefined;

/** The model of times.md, one second at a time. */
function oracleMatch(spec: Spec, z: OracleZone, s: number): boolean {
  if (isEmpty(spec)) return true;
  const w = s + z.offset(s);
  if (z.inRepeat(s)) return !namesTod(spec) && base(spec, w);
  if (base(spec, w)) return true;
  const tr = z.at(s);
  if (tr !== undefined && tr.after > tr.before) {
    // The first second after a gap stands for every skipped wall-clock second.
    for (let x = s + tr.before; x < s + tr.after; x++) if (base(spec, x)) return true;
  }
  return false;
}

/** Can any second of the block starting at b match? (A necessary condition only.) */
function blockMayMatch(spec: Spec, z: OracleZone, b: number): boolean {
  if (z.at(b) !== undefined) return true;
  if (namesTod(spec) && z.inRepeat(b)) return false;
  const w = b + z.offset(b);
  const date = new Date(w * 1000);
  return hourOk(spec, date.getUTCHours()) && dateOk(spec, dayFields(Math.floor(w / 86_400)));
}

/** Does every second of the block starting at b match? (A sufficient condition only.) */
function blockAllMatch(spec: Spec, z: OracleZone, b: number): boolean {
  if (spec.min !== undefined || spec.sec !== undefined) return false;
  if (z.at(b) !== undefined || z.at(b + BLOCK) !== undefined) return false;
  return oracleMatch(spec, z, b) && base(spec, b + z.offset(b));
}

function oracleFind(spec: Spec, z: OracleZone, from: number, want: boolean): number | undefined {
  const end = from + HORIZON;
  let s = from;
  while (s < end) {
    if (s % BLOCK === 0) {
      const skip = want ? !blockMayMatch(spec, z, s) : blockAllMatch(spec, z, s);
      if (skip) {
        s += BLOCK;
        continue;
      }
    }
    if (oracleMatch(spec, z, s) === want) return s;
    s++;
  }
  return undefined;
}

/** The oracle's time_at; undefined when nothing is found within the horizon. */
function oracle(spec: Spec, z: OracleZone, now: number, current: boolean | null) {
  const s0 = Math.floor(now);
  const find = (n: number, want: boolean) => {
    const s = Math.floor(n);
    if (oracleMatch(spec, z, s) === want) return n;
    return oracleFind(spec, z, s + 1, want);
  };
  if (current === true) return find(now, true);
  if (isEmpty(spec)) return "error";
  if (current === false) return find(now, false);
  const f = find(now, false);
  if (f === undefined) return undefined;
  void s0;
  return find(f, true);
}

// ---------------------------------------------------------------- random generation

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const UNIT_NAMES: Record<string, string[]> = {
  sec: ["sec", "s", "second", "seconds"],
  min: ["min", "m", "minute", "minutes"],
  hr: ["hr", "h", "hour", "hours"],
  day: ["dy", "d", "day", "days"],
  month: ["mo", "month", "months"],
  week: ["wk", "w", "week", "weeks"],
  year: ["yr", "y", "year", "years"],
};
const WD_NAMES = [
  [],
  ["mo", "mon", "monday"],
  ["tu", "tue", "tuesday"],
  ["we", "wed", "wednesday"],
  ["th", "thu", "thursday"],
  ["fr", "fri", "friday"],
  ["sa", "sat", "saturday"],
  ["su", "sun", "sunday"],
];

function randomCase(rnd: () => number, zone: OracleZone) {
  const int = (lo: number, hi: number) => lo + Math.floor(rnd() * (hi - lo + 1));
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
  const signed = (lo: number, hi: number, neg: number) => rnd() < 0.25 ? -int(1, neg) : int(lo, hi);

  // now: uniform in 2020..2028, or within two days of an offset change.
  let now: number;
  const changes = zone.table.filter((x) =>
    x.t > Date.UTC(2019, 0) / 1000 && x.t < Date.UTC(2030, 0) / 1000
  );
  if (changes.length > 0 && rnd() < 0.6) {
    const t = pick(changes).t;
    now = t + int(-2 * 86_400, 2 * 86_400);
    if (rnd() < 0.3) now = t + int(-7200, 7200);
    if (rnd() < 0.2) now = t + int(-3, 3);
  } else {
    now = int(Date.UTC(2020, 0) / 1000, Date.UTC(2028, 0) / 1000);
  }
  if (rnd() < 0.2) now = Math.floor(now / 60) * 60;
  if (rnd() < 0.2) now += Math.round(rnd() * 1000) / 1000;
  if (zone.name === "Asia/Kathmandu" && rnd() < 0.3) {
    // Its one offset change: 1986-01-01 00:00 +05:30 → 00:15 +05:45.
    now = Date.UTC(1985, 11, 31, 18, 30) / 1000 + int(-2 * 86_400, 2 * 86_400);
  }
  const nowYear = new Date((now + zone.offset(Math.floor(now))) * 1000).getUTCFullYear();

  const spec: Spec = {};
  const dst = rnd() < 0.5; // bias hours and minutes towards offset changes
  if (rnd() < 0.3) spec.sec = dst ? pick([0, 59, -1, 30]) : signed(0, 59, 60);
  if (rnd() < 0.4) spec.min = dst ? pick([0, 15, 30, 45, 59, -1]) : signed(0, 59, 60);
  if (rnd() < 0.45) spec.hr = dst ? pick([0, 1, 2, 3, 23, -1, -22]) : signed(0, 23, 24);
  if (rnd() < 0.25) {
    spec.wd = int(1, 7);
    if (rnd() < 0.5) spec.nth = rnd() < 0.5 ? int(1, 5) : -int(1, 5);
  }
  if (rnd() < 0.2) spec.day = rnd() < 0.2 ? -int(1, 31) : int(1, 31);
  if (rnd() < 0.15) spec.month = rnd() < 0.2 ? -int(1, 12) : int(1, 12);
  if (rnd() < 0.12) spec.week = rnd() < 0.2 ? -int(1, 53) : int(1, 53);
  if (rnd() < 0.06) spec.year = nowYear + int(-1, 1);

  // Render as tokens, with random aliases, case, signs apart and number types.
  const tokens: (string | number)[] = [];
  const num = (v: number, unit: string) => {
    const r = rnd();
    if (v < 0 && r < 0.3) tokens.push("-", String(-v));
    else if (r < 0.6) tokens.push(v);
    else tokens.push(String(v));
    tokens.push(rnd() < 0.1 ? unit.toUpperCase() : unit);
  };
  const parts: (() => void)[] = [];
  if (spec.sec !== undefined) parts.push(() => num(spec.sec!, pick(UNIT_NAMES["sec"]!)));
  if (spec.min !== undefined) parts.push(() => num(spec.min!, pick(UNIT_NAMES["min"]!)));
  if (spec.hr !== undefined) parts.push(() => num(spec.hr!, pick(UNIT_NAMES["hr"]!)));
  if (spec.day !== undefined) parts.push(() => num(spec.day!, pick(UNIT_NAMES["day"]!)));
  if (spec.month !== undefined) parts.push(() => num(spec.month!, pick(UNIT_NAMES["month"]!)));
  if (spec.week !== undefined) parts.push(() => num(spec.week!, pick(UNIT_NAMES["week"]!)));
  if (spec.year !== undefined) parts.push(() => num(spec.year!, pick(UNIT_NAMES["year"]!)));
  if (spec.wd !== undefined) {
    const names = WD_NAMES[spec.wd]!;
    if (spec.nth === undefined) parts.push(() => tokens.push(pick(names)));
    // "N mo" is the month; the N-th Monday needs "mon" or "monday".
    else parts.push(() => num(spec.nth!, pick(names.filter((n) => n !== "mo"))));
  }
  for (let i = parts.length - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1));
    [parts[i], parts[j]] = [parts[j]!, parts[i]!];
  }
  for (const p of parts) p();
  const input: string | (string | number)[] = rnd() < 0.5 ? tokens.map(String).join(" ") : tokens;
  const current = pick([true, false, null] as const);
  return { spec, input, now, current };
}

Deno.test("time_at agrees with a brute-force oracle on random specs, zones and DST days", () => {
  const seed = Number(Deno.env.get("MOAT_TIME_SEED") ?? 20260329);
  const perZone = Number(Deno.env.get("MOAT_TIME_CASES") ?? 800);
  const rnd = mulberry32(seed);
  let compared = 0;
  let beyond = 0;
  for (const name of ZONES) {
    const zone = new OracleZone(name);
    for (let i = 0; i < perZone; i++) {
      const c = randomCase(rnd, zone);
      const what = () =>
        `seed ${seed}, zone ${name}, case ${i}: spec ${JSON.stringify(c.input)}, ` +
        `now ${c.now}, current ${c.current}`;
      const expected = oracle(c.spec, zone, c.now, c.current);
      let actual: number | string;
      try {
        actual = timeAt(c.input, { now: c.now, current: c.current, zone: name });
      } catch (e) {
        actual = "error";
        if (expected !== undefined && expected !== "error") {
          throw new Error(`${what()}: timeAt threw ${e}, oracle says ${expected}`);
        }
      }
      if (expected === undefined) {
        // Nothing within the horizon: timeAt must say "never" or answer later.
        beyond++;
        assert.ok(
          actual === "error" || (actual as number) >= Math.floor(c.now) + HORIZON,
          `${what()}: oracle found nothing within the horizon, timeAt says ${actual}`,
        );
      } else {
        compared++;
        assert.equal(actual, expected, what());
      }
    }
  }
  assert.ok(compared > ZONES.length * perZone * 0.8, `too few cases compared: ${compared}`);
  console.log(`compared ${compared} cases, ${beyond} beyond the horizon, seed ${seed}`);
});

Deno.test("the oracle's offset table finds the DST changes of 2026 in Berlin and Lord Howe", () => {
  const berlin = new OracleZone("Europe/Berlin");
  assert.ok(berlin.table.some((x) => x.t === 1774746000 && x.after === 7200));
  const lh = new OracleZone("Australia/Lord_Howe");
  assert.ok(lh.table.some((x) => Math.abs(x.after - x.before) === 1800));
});
