/**
 * A time specification, normalised, and pure wall-clock ("civil seconds")
 * matching: what `time_at` asks of each candidate day and second.
 *
 * @module
 */

import { isEmptySpec, type TimeSpec } from "./time_spec.ts";
import {
  civilFromDays,
  DAY,
  daysFromCivil,
  daysInMonth,
  isoWeekOfDays,
  isoWeeksIn,
  isoYearStart,
  MONTH_DAYS,
  weekdayOfDays,
} from "./calendar.ts";

/** A civil second: wall-clock seconds counted as if the zone were UTC. */
export type Civil = number;

/** A parsed spec, normalised for matching civil seconds and days. */
export class Matcher {
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
