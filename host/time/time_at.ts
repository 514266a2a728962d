/**
 * `time_at`: the next moment a time specification matches (or stops
 * matching), exactly as defined in `shared/times.md`, daylight saving time
 * included.
 *
 * The search works on calendar fields, never by scanning seconds: it walks
 * candidate days by calendar arithmetic (months, ISO weeks, years), picks the
 * first matching time of day, and only then maps that wall-clock time to an
 * instant in the zone. Offsets are read afresh from `Intl` for every call.
 *
 * ## The model, per whole second `s` (Unix seconds)
 *
 * Let `W(s)` be the wall clock at `s` in the zone. A non-empty spec matches
 * `s` when all its fields match `W(s)`, with two exceptions:
 *
 * - **Gap** (spring forward): the first second after a gap also matches
 *   when any skipped wall-clock second matches.
 * - **Overlap** (fall back): a second in the repeated stretch (its wall
 *   time was already shown) never matches a spec that names an hour, a
 *   minute or a second. A spec naming only date fields is judged on the
 *   date, which does not repeat.
 *
 * The search assumes at most one offset change within any 48 hours and
 * that a fall back does not take the wall clock back across midnight; all
 * IANA zones in current use satisfy both.
 *
 * @module
 */

import { isEmptySpec, parseTimeSpec, type TimeSpec, TimeSpecError } from "./time_spec.ts";
import type { TimeSpecInput } from "./time_spec.ts";

/** Options of {@link timeAt}. */
export interface TimeAtOptions {
  /**
   * The base time, Unix seconds (may be fractional). A Unix timestamp as
   * the spec's first token takes precedence.
   * @default Date.now() / 1000
   */
  now?: number;
  /**
   * `true`: the first matching moment at or after `now`; `false`: the first
   * non-matching one; `null`: the start of the next matching period.
   * @default null
   */
  current?: boolean | null;
  /**
   * IANA time zone whose wall clock the spec is matched against.
   * @default the host's zone
   */
  zone?: string;
}

const DAY = 86_400;
/** How many years past the start (or the named year) the search may go: one 400-year cycle. */
const CYCLE_YEARS = 401;

// ---------------------------------------------------------------------------
// Calendar arithmetic on day numbers (days since 1970-01-01, proleptic Gregorian).

/** Day number of a civil date (Howard Hinnant's algorithm). */
export function daysFromCivil(y: number, m: number, d: number): number {
  const yy = m <= 2 ? y - 1 : y;
  const era = Math.floor(yy / 400);
  const yoe = yy - era * 400;
  const mp = (m + 9) % 12;
  const doy = Math.floor((153 * mp + 2) / 5) + d - 1;
  const doe = yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy;
  return era * 146_097 + doe - 719_468;
}

/** Civil date `[year, month, day]` of a day number. */
export function civilFromDays(z: number): [number, number, number] {
  const zz = z + 719_468;
  const era = Math.floor(zz / 146_097);
  const doe = zz - era * 146_097;
  const yoe = Math.floor(
    (doe - Math.floor(doe / 1460) + Math.floor(doe / 36_524) -
      Math.floor(doe / 146_096)) / 365,
  );
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100));
  const mp = Math.floor((5 * doy + 2) / 153);
  const d = doy - Math.floor((153 * mp + 2) / 5) + 1;
  const m = mp < 10 ? mp + 3 : mp - 9;
  return [yoe + era * 400 + (m <= 2 ? 1 : 0), m, d];
}

function isLeap(y: number): boolean {
  return (y % 4 === 0 && y % 100 !== 0) || y % 400 === 0;
}

const MONTH_DAYS = [0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

function daysInMonth(y: number, m: number): number {
  return m === 2 && isLeap(y) ? 29 : MONTH_DAYS[m]!;
}

/** ISO weekday of a day number: 1 = Monday … 7 = Sunday. */
export function weekdayOfDays(z: number): number {
  return ((((z + 3) % 7) + 7) % 7) + 1;
}

/** Day number of the Monday starting ISO week 1 of ISO year `y`. */
function isoYearStart(y: number): number {
  const jan4 = daysFromCivil(y, 1, 4);
  return jan4 - (weekdayOfDays(jan4) - 1);
}

/** Number of ISO weeks (52 or 53) in ISO year `y`. */
function isoWeeksIn(y: number): number {
  return (isoYearStart(y + 1) - isoYearStart(y)) / 7;
}

/** `[isoYear, isoWeek]` of a day number. */
export function isoWeekOfDays(z: number): [number, number] {
  const thursday = z - (weekdayOfDays(z) - 1) + 3;
  const y = civilFromDays(thursday)[0];
  return [y, Math.floor((thursday - isoYearStart(y)) / 7) + 1];
}

// ---------------------------------------------------------------------------
// The spec, normalised, and pure wall-clock ("civil seconds") matching.

/** A civil second: wall-clock seconds counted as if the zone were UTC. */
type Civil = number;

class Matcher {
  readonly sec: number | undefined;
  readonly min: number | undefined;
  readonly hr: number | undefined;
  readonly day: number | undefined;
  readonly month: number | undefined;
  readonly week: number | undefined;
  readonly year: number | undefined;
  readonly wd: number | undefined;
  readonly nth: number | undefined;
  /** Names an hour, minute or second. */
  readonly tod: boolean;
  readonly hasDate: boolean;
  readonly empty: boolean;
  readonly minTod: number;

  constructor(spec: TimeSpec) {
    const norm = (v: number | undefined, n: number) => v === undefined ? v : v < 0 ? n + v : v;
    this.sec = norm(spec.second, 60);
    this.min = norm(spec.minute, 60);
    this.hr = norm(spec.hour, 24);
    this.month = norm(spec.month, 13);
    this.day = spec.day;
    this.week = spec.week;
    this.year = spec.year;
    this.wd = spec.weekday;
    this.nth = spec.nth;
    this.tod = this.sec !== undefined || this.min !== undefined || this.hr !== undefined;
    this.hasDate = this.day !== undefined || this.month !== undefined ||
      this.week !== undefined || this.year !== undefined || this.wd !== undefined;
    this.empty = isEmptySpec(spec);
    this.minTod = (this.hr ?? 0) * 3600 + (this.min ?? 0) * 60 + (this.sec ?? 0);
  }

  /** Whether the date fields match day number `z`. */
  dateMatches(z: number): boolean {
    if (!this.hasDate) return true;
    const [y, m, d] = civilFromDays(z);
    return this.#dateMatches(z, y, m, d);
  }

  #dateMatches(z: number, y: number, m: number, d: number): boolean {
    if (this.year !== undefined && y !== this.year) return false;
    if (this.month !== undefined && m !== this.month) return false;
    if (this.day !== undefined || this.nth !== undefined) {
      const len = daysInMonth(y, m);
      if (this.day !== undefined && d !== (this.day > 0 ? this.day : len + this.day + 1)) {
        return false;
      }
      if (this.nth !== undefined) {
        const n = this.nth > 0 ? Math.floor((d - 1) / 7) + 1 : -(Math.floor((len - d) / 7) + 1);
        if (n !== this.nth) return false;
      }
    }
    if (this.wd !== undefined && weekdayOfDays(z) !== this.wd) return false;
    if (this.week !== undefined) {
      const [iy, iw] = isoWeekOfDays(z);
      const want = this.week > 0 ? this.week : isoWeeksIn(iy) + this.week + 1;
      if (iw !== want) return false;
    }
    return true;
  }

  /** Whether the time-of-day fields match `t` seconds after midnight. */
  todMatches(t: number): boolean {
    return (this.hr === undefined || Math.floor(t / 3600) === this.hr) &&
      (this.min === undefined || Math.floor(t / 60) % 60 === this.min) &&
      (this.sec === undefined || t % 60 === this.sec);
  }

  /** Whether every field matches civil second `w`. */
  matches(w: Civil): boolean {
    const z = Math.floor(w / DAY);
    return this.todMatches(w - z * DAY) && this.dateMatches(z);
  }

  /** The first matching time of day at or after `t`, or undefined. */
  nextTod(t: number): number | undefined {
    const next = (v: number | undefined, lo: number, max: number) =>
      v === undefined ? (lo <= max ? lo : undefined) : v >= lo ? v : undefined;
    const H = Math.floor(t / 3600);
    const M = Math.floor(t / 60) % 60;
    const S = t % 60;
    const h = next(this.hr, H, 23);
    if (h === undefined) return undefined;
    if (h > H) return h * 3600 + (this.min ?? 0) * 60 + (this.sec ?? 0);
    let m = next(this.min, M, 59);
    if (m !== undefined) {
      if (m > M) return h * 3600 + m * 60 + (this.sec ?? 0);
      const s = next(this.sec, S, 59);
      if (s !== undefined) return h * 3600 + m * 60 + s;
      m = next(this.min, M + 1, 59);
      if (m !== undefined) return h * 3600 + m * 60 + (this.sec ?? 0);
    }
    const h2 = next(this.hr, H + 1, 23);
    if (h2 === undefined) return undefined;
    return h2 * 3600 + (this.min ?? 0) * 60 + (this.sec ?? 0);
  }

  /**
   * The first day number `>= z0` whose date fields match, or undefined when
   * there is none before `limitYear`.
   */
  nextDay(z0: number, limitYear: number): number | undefined {
    if (!this.hasDate) return z0;
    if (this.month !== undefined && this.day !== undefined) {
      // "31 dy 2 mo" and the like: no need to walk the cycle to know.
      const longest = this.month === 2 ? 29 : MONTH_DAYS[this.month]!;
      if (Math.abs(this.day) > longest) return undefined;
    }
    const [y0, m0, d0] = civilFromDays(z0);
    if (this.week !== undefined) {
      // Walk ISO years: the week fixes seven candidate days in each.
      let iy = isoWeekOfDays(z0)[0];
      if (this.year !== undefined) iy = Math.max(iy, this.year - 1);
      for (; iy <= limitYear; iy++) {
        if (this.year !== undefined && iy > this.year + 1) return undefined;
        const n = isoWeeksIn(iy);
        const w = this.week > 0 ? this.week : n + this.week + 1;
        if (w < 1 || w > n) continue;
        const monday = isoYearStart(iy) + (w - 1) * 7;
        for (let k = 0; k < 7; k++) {
          const z = monday + k;
          if (z >= z0 && this.dateMatches(z)) return z;
        }
      }
      return undefined;
    }
    // Walk months, jumping straight to the named year and month.
    let y = y0;
    let m = m0;
    let dmin = d0;
    while (y <= limitYear) {
      if (this.year !== undefined) {
        if (y > this.year) return undefined;
        if (y < this.year) {
          y = this.year;
          m = 1;
          dmin = 1;
        }
      }
      if (this.month !== undefined && m !== this.month) {
        if (m > this.month) y++;
        m = this.month;
        dmin = 1;
        continue;
      }
      const len = daysInMonth(y, m);
      const first = daysFromCivil(y, m, 1);
      const check = (d: number) =>
        d >= dmin && d <= len && this.#dateMatches(first + d - 1, y, m, d);
      if (this.day !== undefined) {
        const d = this.day > 0 ? this.day : len + this.day + 1;
        if (check(d)) return first + d - 1;
      } else if (this.wd !== undefined) {
        // The first such weekday of the month, then every 7 days.
        let d = 1 + ((this.wd - weekdayOfDays(first) + 7) % 7);
        if (this.nth !== undefined) {
          if (this.nth > 0) d += 7 * (this.nth - 1);
          else {
            while (d + 7 <= len) d += 7;
            d -= 7 * (-this.nth - 1);
          }
          if (d >= 1 && check(d)) return first + d - 1;
        } else {
          for (; d <= len; d += 7) if (check(d)) return first + d - 1;
        }
      } else {
        for (let d = dmin; d <= len; d++) if (check(d)) return first + d - 1;
      }
      m++;
      if (m > 12) {
        m = 1;
        y++;
      }
      dmin = 1;
    }
    return undefined;
  }

  /** The first matching civil second `>= w`, or undefined when it never matches. */
  nextCivil(w: Civil, limitYear: number): Civil | undefined {
    const z0 = Math.floor(w / DAY);
    if (this.dateMatches(z0)) {
      const t = this.nextTod(w - z0 * DAY);
      if (t !== undefined) return z0 * DAY + t;
    }
    const z = this.nextDay(z0 + 1, limitYear);
    return z === undefined ? undefined : z * DAY + this.minTod;
  }

  /** The first non-matching civil second `>= w` (the spec must not be empty). */
  nextNonMatch(w: Civil): Civil {
    if (!this.matches(w)) return w;
    // Every named field keeps its value until its own next boundary; the
    // earliest such boundary changes a field, so the spec stops matching.
    if (this.sec !== undefined) return w + 1;
    if (this.min !== undefined) return Math.floor(w / 60) * 60 + 60;
    if (this.hr !== undefined) return Math.floor(w / 3600) * 3600 + 3600;
    const z = Math.floor(w / DAY);
    if (this.day !== undefined || this.wd !== undefined) return (z + 1) * DAY;
    let end = Infinity;
    const [y, m] = civilFromDays(z);
    if (this.week !== undefined) end = Math.min(end, z - (weekdayOfDays(z) - 1) + 7);
    if (this.month !== undefined) {
      end = Math.min(end, m === 12 ? daysFromCivil(y + 1, 1, 1) : daysFromCivil(y, m + 1, 1));
    }
    if (this.year !== undefined) end = Math.min(end, daysFromCivil(y + 1, 1, 1));
    return end * DAY;
  }
}

// ---------------------------------------------------------------------------
// Time zones: offsets read from Intl.

const formatters = new Map<string, Intl.DateTimeFormat>();

function formatterFor(zone: string): Intl.DateTimeFormat {
  let f = formatters.get(zone);
  if (f === undefined) {
    try {
      f = new Intl.DateTimeFormat("en-US", {
        timeZone: zone,
        hourCycle: "h23",
        year: "numeric",
        month: "numeric",
        day: "numeric",
        hour: "numeric",
        minute: "numeric",
        second: "numeric",
      });
    } catch (cause) {
      throw new TimeSpecError(`Cannot use time zone "${zone}": unknown time zone`, { cause });
    }
    // Only the formatter is kept between calls, never an offset.
    formatters.set(zone, f);
  }
  return f;
}

/** The host's IANA time zone. */
export function hostZone(): string {
  return new Intl.DateTimeFormat().resolvedOptions().timeZone;
}

const FORMAT_RE = /^(\d+)\/(\d+)\/(\d+),? (\d+):(\d+):(\d+)$/;

/** Offsets of one zone, memoised for the duration of one evaluation only. */
class ZoneView {
  readonly #fmt: Intl.DateTimeFormat;
  readonly #memo = new Map<number, number>();
  readonly #utc: boolean;

  constructor(readonly name: string) {
    this.#fmt = formatterFor(name);
    const resolved = this.#fmt.resolvedOptions().timeZone;
    this.#utc = resolved === "UTC" || resolved === "Etc/UTC" || resolved === "Etc/GMT";
  }

  /** UTC offset in seconds at Unix second `s` (an integer). */
  offset(s: number): number {
    if (this.#utc) return 0;
    const hit = this.#memo.get(s);
    if (hit !== undefined) return hit;
    const text = this.#fmt.format(s * 1000).replace(/\u200e/g, "");
    const m = FORMAT_RE.exec(text);
    let civil: number;
    if (m !== null) {
      civil = daysFromCivil(+m[3]!, +m[1]!, +m[2]!) * DAY + +m[4]! * 3600 + +m[5]! * 60 + +m[6]!;
    } else {
      // Fallback for eras and other formats: read the parts.
      const p: Record<string, string> = {};
      for (const part of this.#fmt.formatToParts(s * 1000)) p[part.type] = part.value;
      let y = Number(p["year"]);
      if (p["era"] !== undefined && /^b/i.test(p["era"])) y = 1 - y;
      civil = daysFromCivil(y, Number(p["month"]), Number(p["day"])) * DAY +
        Number(p["hour"]) * 3600 + Number(p["minute"]) * 60 + Number(p["second"]);
    }
    const off = civil - s;
    this.#memo.set(s, off);
    return off;
  }

  wall(s: number): Civil {
    return s + this.offset(s);
  }

  /** The first second in `(lo, hi]` for which `pred` holds (it must hold at `hi`). */
  firstWhere(lo: number, hi: number, pred: (s: number) => boolean): number {
    while (hi - lo > 1) {
      const mid = Math.floor((lo + hi) / 2);
      if (pred(mid)) hi = mid;
      else lo = mid;
    }
    return hi;
  }

  /**
   * The instant of civil second `c`: its earliest occurrence, or, when `c`
   * falls into a gap, the first instant after the gap (`gap: true`).
   */
  instantOf(c: Civil): { s: number; gap: boolean } {
    const oB = this.offset(c - DAY);
    const oA = this.offset(c + DAY);
    if (oB === oA && this.offset(c - oB) === oB) return { s: c - oB, gap: false };
    const offs = [...new Set([oB, oA, this.offset(c - oB), this.offset(c - oA)])];
    let best: number | undefined;
    for (const o of offs) {
      const s = c - o;
      if (this.offset(s) === o && (best === undefined || s < best)) best = s;
    }
    if (best !== undefined) return { s: best, gap: false };
    // A gap: the first instant whose wall clock is past `c`.
    const lo = c - Math.max(...offs) - 1;
    const hi = c - Math.min(...offs);
    return { s: this.firstWhere(lo, hi, (s) => this.wall(s) > c), gap: true };
  }
}

// ---------------------------------------------------------------------------
// The evaluation.

interface Place {
  /** Offset at s. */
  o: number;
  /** When `s` lies in the repeated stretch after a fall back: where the stretch ends. */
  repeatEnd?: number;
  /** When `s` is the first second after a gap: the first skipped civil second. */
  gapStart?: Civil;
}

class Evaluation {
  readonly #m: Matcher;
  readonly #z: ZoneView;
  readonly #text: string;
  readonly #limitYear: number;

  constructor(m: Matcher, z: ZoneView, text: string, s0: number) {
    this.#m = m;
    this.#z = z;
    this.#text = text;
    const startYear = civilFromDays(Math.floor(z.wall(s0) / DAY))[0];
    this.#limitYear = Math.max(startYear, m.year ?? startYear) + CYCLE_YEARS;
  }

  /** Where `s` stands relative to the offset changes of the last day. */
  place(s: number): Place {
    const z = this.#z;
    const o = z.offset(s);
    const p = z.offset(s - DAY);
    if (p > o) {
      // A fall back within the last day; `s` repeats if it came less than
      // (p - o) seconds after it.
      const d = p - o;
      if (z.offset(s - d) === p) {
        const t = z.firstWhere(s - d, s, (x) => z.offset(x) !== p);
        return { o, repeatEnd: t + d };
      }
    } else if (p < o) {
      const before = z.offset(s - 1);
      if (before !== o) return { o, gapStart: s + before };
    }
    return { o };
  }

  /** Whether whole second `s` matches, given its place. */
  matchesAt(s: number, pl: Place): boolean {
    const m = this.#m;
    if (m.empty) return true;
    const w = s + pl.o;
    if (pl.repeatEnd !== undefined) return !m.tod && m.matches(w);
    if (m.matches(w)) return true;
    if (pl.gapStart !== undefined) {
      const c = m.nextCivil(pl.gapStart, this.#limitYear);
      return c !== undefined && c < w;
    }
    return false;
  }

  #never(): never {
    throw new TimeSpecError(
      `Cannot evaluate time spec "${this.#text}": the spec never matches ` +
        `(none within ${CYCLE_YEARS - 1} years, a whole calendar cycle)`,
    );
  }

  /** `current: true` from `now` (whose whole second is `s0`). */
  matching(now: number, s0: number): number {
    const m = this.#m;
    if (m.empty) return now;
    const pl = this.place(s0);
    if (this.matchesAt(s0, pl)) return now;
    // The next civil second to look from. Civil order is instant order once
    // the repeated stretch of a fall back is left out.
    let from = s0 + pl.o + 1;
    if (pl.repeatEnd !== undefined) {
      if (!m.tod) {
        // Date-only specs match inside the repeated stretch; its wall clock runs linearly.
        const c = m.nextCivil(from, this.#limitYear);
        if (c !== undefined && c - pl.o < pl.repeatEnd) return c - pl.o;
      }
      const start = pl.repeatEnd;
      const plr = this.place(start);
      if (this.matchesAt(start, plr)) return start;
      from = start + plr.o + 1;
    }
    const c = m.nextCivil(from, this.#limitYear);
    if (c === undefined) this.#never();
    return this.#z.instantOf(c).s;
  }

  /** `current: false` from `now` (whose whole second is `s0`). */
  notMatching(now: number, s0: number): number {
    const m = this.#m;
    const z = this.#z;
    if (m.empty) {
      throw new TimeSpecError(
        `Cannot evaluate time spec "${this.#text}": an empty spec never stops matching`,
      );
    }
    const pl = this.place(s0);
    if (!this.matchesAt(s0, pl)) return now;
    let s = s0;
    if (pl.repeatEnd !== undefined) {
      // Only date-only specs match here; the stretch's wall clock runs linearly.
      const e = m.nextNonMatch(s0 + pl.o + 1);
      if (e - pl.o < pl.repeatEnd) return e - pl.o;
      s = pl.repeatEnd;
      if (!this.matchesAt(s, this.place(s))) return s;
    }
    // `s` matches and is not repeated. Follow the run to its end.
    for (let guard = 0; guard < 64; guard++) {
      const os = z.offset(s);
      const e = m.nextNonMatch(s + os + 1);
      const { s: se, gap } = z.instantOf(e);
      if (m.tod && z.offset(se) < os) {
        // A fall back inside the run: the repeated stretch does not match.
        return z.firstWhere(s, se, (x) => z.offset(x) < os);
      }
      if (!gap) return se;
      // `e` was skipped: the first second after the gap matches only if a
      // skipped second or its own wall clock does.
      if (!this.matchesAt(se, this.place(se))) return se;
      s = se;
    }
    throw new TimeSpecError(
      `Cannot evaluate time spec "${this.#text}": too many offset changes in zone "${z.name}"`,
    );
  }
}

/**
 * The Unix time (seconds) at which a time specification next matches.
 *
 * - `current: true`: the earliest moment `>= now` that matches (`now` itself
 *   if it does, else the start of a whole second);
 * - `current: false`: the earliest moment `>= now` that does not match;
 * - `current: null` (default): the start of the next matching period.
 *
 * Daylight saving time: a wall-clock time inside a spring-forward gap
 * matches at the first instant after the gap, once; a repeated wall-clock
 * time matches only at its first occurrence.
 *
 * @throws {TimeSpecError} for a malformed spec, an unknown zone, a spec that
 *   never matches (proven over a whole 400-year calendar cycle), or an empty
 *   spec with `current` other than `true`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { timeAt } from "./time_at.ts";
 * // Saturday 2003-04-05 06:07:08 UTC
 * const t = timeAt("11 h - 15 min - 10 sec", { now: 1049522828, zone: "UTC", current: true });
 * assert.ok(new Date(t * 1000).toISOString() === "2003-04-05T11:45:50.000Z");
 * ```
 */
export function timeAt(spec: TimeSpecInput, options: TimeAtOptions = {}): number {
  const parsed = parseTimeSpec(spec);
  const text = typeof spec === "string" ? spec.trim() : spec.map(String).join(" ");
  const now = parsed.now ?? options.now ?? Date.now() / 1000;
  if (!Number.isFinite(now)) {
    throw new RangeError(`Cannot use "now" = "${now}": not a finite number`);
  }
  const zone = new ZoneView(options.zone ?? hostZone());
  const m = new Matcher(parsed);
  const s0 = Math.floor(now);
  const ev = new Evaluation(m, zone, text, s0);
  const current = options.current ?? null;
  if (current === true) return ev.matching(now, s0);
  if (current === false) return ev.notMatching(now, s0);
  const end = ev.notMatching(now, s0);
  return ev.matching(end, Math.floor(end));
}

/** The UTC offset of `zone` at Unix time `unix` (seconds), in seconds. */
export function zoneOffset(unix: number, zone: string): number {
  return new ZoneView(zone).offset(Math.floor(unix));
}

/**
 * Unix seconds of a local wall-clock time in `zone`: its first occurrence,
 * or for a time inside a spring-forward gap, the first instant after it.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { localToUnix } from "./time_at.ts";
 * assert.ok(localToUnix([2026, 3, 29, 2, 30, 0], "Europe/Berlin") === 1774746000);
 * ```
 */
export function localToUnix(
  fields: readonly [number, number, number, number, number, number],
  zone: string,
): number {
  const [y, mo, d, h, mi, s] = fields;
  const c = daysFromCivil(y, mo, d) * DAY + h * 3600 + mi * 60 + s;
  return new ZoneView(zone).instantOf(c).s;
}

/**
 * Local ISO 8601 date-time with offset, e.g. `2026-03-29T03:00:00+02:00`
 * (fractional seconds shown when present).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { localIso } from "./time_at.ts";
 * assert.ok(localIso(1774746000, "Europe/Berlin") === "2026-03-29T03:00:00+02:00");
 * ```
 */
export function localIso(unix: number, zone: string): string {
  const s = Math.floor(unix);
  const frac = unix - s;
  const off = new ZoneView(zone).offset(s);
  const w = s + off;
  const z = Math.floor(w / DAY);
  const t = w - z * DAY;
  const [y, m, d] = civilFromDays(z);
  const p2 = (n: number) => String(n).padStart(2, "0");
  let text = `${String(y).padStart(4, "0")}-${p2(m)}-${p2(d)}T${p2(Math.floor(t / 3600))}:` +
    `${p2(Math.floor(t / 60) % 60)}:${p2(t % 60)}`;
  if (frac > 0) text += (Math.round(frac * 1000) / 1000).toFixed(3).slice(1).replace(/0+$/, "");
  const a = Math.abs(off);
  text += `${off < 0 ? "-" : "+"}${p2(Math.floor(a / 3600))}:${p2(Math.floor(a / 60) % 60)}`;
  if (a % 60 !== 0) text += `:${p2(a % 60)}`;
  return text;
}
