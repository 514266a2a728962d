/**
 * `time_at` for a spec with a sun event ("30 min before sunset", "sat
 * dawn"): it matches for one whole second, the one the event plus its
 * offset falls into, on every local date whose fields match. The date is
 * that of the event itself, in the zone.
 *
 * @module
 */

import { TimeSpecError } from "./time_spec.ts";
import { civilFromDays, DAY } from "./calendar.ts";
import type { Matcher } from "./_matcher.ts";
import type { ZoneView } from "./zone.ts";
import { type Location, type SunEvent, sunEventOfTransit } from "./sun.ts";

/** How many years the search may go past the start (or the named year): one 400-year cycle. */
const CYCLE_YEARS = 401;

/**
 * How many matching dates in a row may lack the event before the spec is
 * declared never to match. The sun's cycle is a year: dates that match the
 * fields for two years on end and never see the event never will.
 */
const MAX_EVENTLESS_DATES = 800;

/** The evaluation of one sun spec from one `now`. */
export class SunEvaluation {
  readonly #m: Matcher;
  readonly #z: ZoneView;
  readonly #event: SunEvent;
  readonly #offset: number;
  readonly #where: Location;
  readonly #text: string;
  readonly #limitYear: number;
  readonly #memo = new Map<number, number[]>();

  constructor(
    m: Matcher,
    z: ZoneView,
    spec: { event: SunEvent; offset: number; where: Location; text: string },
    s0: number,
  ) {
    this.#m = m;
    this.#z = z;
    this.#event = spec.event;
    this.#offset = spec.offset;
    this.#where = spec.where;
    this.#text = spec.text;
    const startYear = civilFromDays(Math.floor(z.wall(s0) / DAY))[0];
    this.#limitYear = Math.max(startYear, m.year ?? startYear) + CYCLE_YEARS;
  }

  /** The local day number of instant `e`. */
  #day(e: number): number {
    return Math.floor(this.#z.wall(Math.floor(e)) / DAY);
  }

  /** The events whose local date is day `z`, in order (Unix seconds, fractional). */
  #eventsOn(z: number): number[] {
    const hit = this.#memo.get(z);
    if (hit !== undefined) return hit;
    const out: number[] = [];
    // Transits of nearby UTC days cover every zone's local day with room to spare.
    for (let d = z - 2; d <= z + 2; d++) {
      const e = sunEventOfTransit(this.#event, d, this.#where);
      if (e !== undefined && this.#day(e) === z) out.push(e);
    }
    out.sort((a, b) => a - b);
    this.#memo.set(z, out);
    return out;
  }

  #never(): never {
    throw new TimeSpecError(
      `Cannot evaluate time spec "${this.#text}": the spec never matches at latitude ` +
        `${this.#where.latitude}, longitude ${this.#where.longitude} (no ${this.#event} ` +
        `on any matching date)`,
    );
  }

  /** The first whole second `>= s` at which the spec matches. */
  nextStart(s: number): number {
    // An event at e matches from floor(e + offset): start a day before the date of s - offset.
    let z = this.#day(s - this.#offset) - 1;
    let eventless = 0;
    for (;;) {
      const zc = this.#m.nextDay(z, this.#limitYear);
      if (zc === undefined) this.#never();
      const events = this.#eventsOn(zc);
      if (events.length === 0) {
        if (++eventless > MAX_EVENTLESS_DATES) this.#never();
      } else {
        eventless = 0;
        for (const e of events) {
          const t = Math.floor(e) + this.#offset;
          if (t >= s) return t;
        }
      }
      z = zc + 1;
    }
  }

  /** `current: true` from `now` (whose whole second is `s0`). */
  matching(now: number, s0: number): number {
    const t = this.nextStart(s0);
    return t === s0 ? now : t;
  }

  /** `current: false` from `now` (whose whole second is `s0`). */
  notMatching(now: number, s0: number): number {
    if (this.nextStart(s0) !== s0) return now;
    let s = s0 + 1;
    while (this.nextStart(s) === s) s++;
    return s;
  }
}
