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

import { parseTimeSpec, TimeSpecError } from "./time_spec.ts";
import type { TimeSpecInput } from "./time_spec.ts";
import { civilFromDays, DAY } from "./calendar.ts";
import { type Civil, Matcher } from "./_matcher.ts";
import { hostZone, ZoneView } from "./zone.ts";
import type { Location } from "./sun.ts";
import { SunEvaluation } from "./_sun_spec.ts";

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
  /**
   * Where the sun events of a spec (`sunrise`, `sunset`, `dawn`, `dusk`)
   * are computed for: the installation's `/config/location`. A spec with an
   * event word and no location is an error.
   * @default none
   */
  location?: Location;
}

/** How many years past the start (or the named year) the search may go: one 400-year cycle. */
const CYCLE_YEARS = 401;

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
 * Sun events (`"30 min before sunset"`, `"sat dawn"`) need
 * `options.location`; such a spec matches for the one second the event
 * plus its offset falls into, on each local date whose fields match.
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
  let ev: Evaluation | SunEvaluation;
  if (parsed.event !== undefined) {
    if (options.location === undefined) {
      throw new TimeSpecError(
        `Cannot evaluate time spec "${text}": "${parsed.event}" needs the installation's ` +
          `location; set /config/location to "LAT LON", e.g. "52.52 13.405"`,
      );
    }
    ev = new SunEvaluation(m, zone, {
      event: parsed.event,
      offset: parsed.offset ?? 0,
      where: options.location,
      text,
    }, s0);
  } else {
    ev = new Evaluation(m, zone, text, s0);
  }
  const current = options.current ?? null;
  if (current === true) return ev.matching(now, s0);
  if (current === false) return ev.notMatching(now, s0);
  const end = ev.notMatching(now, s0);
  return ev.matching(end, Math.floor(end));
}
