/**
 * Time zones: UTC offsets read afresh from `Intl` (only the formatter is
 * kept between calls, never an offset), wall-clock times and instants.
 *
 * @module
 */

import { TimeSpecError } from "./time_spec.ts";
import { civilFromDays, DAY, daysFromCivil } from "./calendar.ts";
import type { Civil } from "./_matcher.ts";

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
export class ZoneView {
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
 * import { localToUnix } from "./zone.ts";
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
 * import { localIso } from "./zone.ts";
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
