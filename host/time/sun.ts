/**
 * Sunrise, sunset, dawn and dusk: the NOAA solar calculator's formulas
 * (NOAA Global Monitoring Laboratory, "General Solar Position Calculations",
 * after Meeus, _Astronomical Algorithms_), written out here so that the
 * time specs need no package.
 *
 * The sun's position (declination, equation of time) is computed at the
 * estimated moment of the event itself and the estimate refined until it
 * moves by less than a second, which keeps the result within seconds of
 * the NOAA calculator at moderate latitudes and within a minute or so near
 * the edge of polar day and night.
 *
 * @module
 */

/** A place on Earth, in decimal degrees: north and east positive. */
export interface Location {
  /** -90..90, north positive. */
  latitude: number;
  /** -180..180, east positive. */
  longitude: number;
}

/** The sun events a time spec may name. */
export type SunEvent = "sunrise" | "sunset" | "dawn" | "dusk";

/** The event words, for the parser. */
export const SUN_EVENTS: readonly SunEvent[] = ["sunrise", "sunset", "dawn", "dusk"];

/**
 * The zenith angle of the sun's centre at each event, in degrees: sunrise
 * and sunset are the upper limb on the horizon with standard refraction
 * (centre 0.833° below), dawn and dusk civil twilight (centre 6° below).
 */
const ZENITH: Readonly<Record<SunEvent, number>> = {
  sunrise: 90.833,
  sunset: 90.833,
  dawn: 96,
  dusk: 96,
};

const RISING: Readonly<Record<SunEvent, boolean>> = {
  sunrise: true,
  sunset: false,
  dawn: true,
  dusk: false,
};

const RAD = Math.PI / 180;

/**
 * Parse a location: `"LAT LON"` (as in `/config/location`) or `"LAT,LON"`
 * (as `--location` takes it), in decimal degrees, north and east positive.
 *
 * @throws {RangeError} naming the text when it is not two numbers in range.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseLocation } from "./sun.ts";
 * assert.deepEqual(parseLocation("52.52 13.405"), { latitude: 52.52, longitude: 13.405 });
 * assert.deepEqual(parseLocation("-33.87,151.21"), { latitude: -33.87, longitude: 151.21 });
 * ```
 */
export function parseLocation(text: string): Location {
  const parts = text.trim().split(/\s*,\s*|\s+/);
  const num = (s: string | undefined) =>
    s !== undefined && /^[+-]?(\d+\.?\d*|\.\d+)$/.test(s) ? Number(s) : NaN;
  const latitude = num(parts[0]);
  const longitude = num(parts[1]);
  if (parts.length !== 2 || Number.isNaN(latitude) || Number.isNaN(longitude)) {
    throw new RangeError(
      `Cannot use location "${text}": expected "LAT LON" in decimal degrees, e.g. "52.52 13.405"`,
    );
  }
  if (Math.abs(latitude) > 90) {
    throw new RangeError(`Cannot use location "${text}": latitude ${latitude} is not in -90..90`);
  }
  if (Math.abs(longitude) > 180) {
    throw new RangeError(
      `Cannot use location "${text}": longitude ${longitude} is not in -180..180`,
    );
  }
  return { latitude, longitude };
}

/** Declination (radians) and equation of time (minutes) at Unix second `s`. */
function sunAt(s: number): { decl: number; eqTime: number } {
  const jd = s / 86_400 + 2_440_587.5;
  const t = (jd - 2_451_545) / 36_525;
  const l0 = ((280.46646 + t * (36_000.76983 + t * 0.0003032)) % 360) * RAD;
  const mDeg = 357.52911 + t * (35_999.05029 - 0.0001537 * t);
  const m = mDeg * RAD;
  const e = 0.016708634 - t * (0.000042037 + 0.0000001267 * t);
  const c = Math.sin(m) * (1.914602 - t * (0.004817 + 0.000014 * t)) +
    Math.sin(2 * m) * (0.019993 - 0.000101 * t) + Math.sin(3 * m) * 0.000289;
  const trueLong = l0 / RAD + c;
  const omega = (125.04 - 1934.136 * t) * RAD;
  const lambda = (trueLong - 0.00569 - 0.00478 * Math.sin(omega)) * RAD;
  const eps0 = 23 + (26 + (21.448 - t * (46.815 + t * (0.00059 - t * 0.001813))) / 60) / 60;
  const eps = (eps0 + 0.00256 * Math.cos(omega)) * RAD;
  const decl = Math.asin(Math.sin(eps) * Math.sin(lambda));
  const y = Math.tan(eps / 2) ** 2;
  const eqTime = 4 / RAD * (y * Math.sin(2 * l0) - 2 * e * Math.sin(m) +
    4 * e * y * Math.sin(m) * Math.cos(2 * l0) - 0.5 * y * y * Math.sin(4 * l0) -
    1.25 * e * e * Math.sin(2 * m));
  return { decl, eqTime };
}

/** Seconds from solar noon to the event (the hour angle), or undefined when there is none. */
function hourAngle(zenith: number, lat: number, decl: number): number | undefined {
  const cosH = (Math.cos(zenith * RAD) - Math.sin(lat) * Math.sin(decl)) /
    (Math.cos(lat) * Math.cos(decl));
  if (!(cosH >= -1 && cosH <= 1)) return undefined;
  return Math.acos(cosH) / RAD * 240;
}

/**
 * The event that belongs to the solar transit nearest to noon UTC of day
 * number `d` (days since 1970-01-01) at `where`, as Unix seconds
 * (fractional), or undefined when the sun does not reach the event's
 * altitude around that transit (polar day or night).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { sunEventOfTransit } from "./sun.ts";
 * // Berlin, 2026-06-21 (day 20625): sunset about 19:33 UTC.
 * const t = sunEventOfTransit("sunset", 20625, { latitude: 52.52, longitude: 13.405 })!;
 * assert.ok(Math.abs(t - Date.UTC(2026, 5, 21, 19, 33) / 1000) < 120);
 * ```
 */
export function sunEventOfTransit(event: SunEvent, d: number, where: Location): number | undefined {
  const lat = Math.max(-89.999, Math.min(89.999, where.latitude)) * RAD;
  const sign = RISING[event] ? -1 : 1;
  const base = d * 86_400 + 43_200 - where.longitude * 240;
  // Start halfway between noon and midnight. Should the sun not reach the
  // altitude there, start again near midnight and near noon: where the
  // event lies when it only just happens, at the edge of polar day or
  // night, when the declination moves enough within hours to decide.
  for (const start of [21_600, 43_199, 0]) {
    let t = base + sign * start;
    for (let i = 0; i < 12; i++) {
      const { decl, eqTime } = sunAt(t);
      const h = hourAngle(ZENITH[event], lat, decl);
      if (h === undefined) break;
      const next = base - eqTime * 60 + sign * h;
      if (Math.abs(next - t) < 0.5) return next;
      t = next;
    }
  }
  // Polar day or night at this transit: the date has no such event.
  return undefined;
}
