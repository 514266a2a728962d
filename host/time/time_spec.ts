/**
 * Parsing of time specifications (`"mon 7 hr 30 min"`), as defined in
 * `shared/times.md`: a set of calendar fields that a moment must match.
 *
 * @module
 */

/** A parsed time specification. Values are kept as written (negative ones too). */
export interface TimeSpec {
  /** Second of the minute, 0..59 or -60..-1. */
  second?: number;
  /** Minute of the hour, 0..59 or -60..-1. */
  minute?: number;
  /** Hour of the day, 0..23 or -24..-1. */
  hour?: number;
  /** Day of the month, 1..31 or -31..-1 (from the end of the month). */
  day?: number;
  /** Month, 1..12 or -12..-1. */
  month?: number;
  /** ISO 8601 week number, 1..53 or -53..-1 (from the end of the ISO year). */
  week?: number;
  /** Gregorian year, 1..9999. */
  year?: number;
  /** ISO weekday: 1 = Monday … 7 = Sunday. */
  weekday?: number;
  /** With `weekday`: the N-th such weekday of the month, 1..5 or -5..-1. */
  nth?: number;
  /** A Unix timestamp (seconds) given as the first token, used as "now". */
  now?: number;
  /** A sun event (`sunrise`, `sunset`, `dawn`, `dusk`); the date fields restrict its local date. */
  event?: SunEvent;
  /** With `event`: seconds after it (negative: before), from "30 min before sunset". */
  offset?: number;
}

import { SUN_EVENTS, type SunEvent } from "./sun.ts";

/** The tokens a spec may be given as. */
export type TimeSpecInput = string | readonly (string | number)[];

/**
 * A time specification that cannot be parsed, or that can never match.
 * The message quotes the spec, the offending token and its 1-based position.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseTimeSpec, TimeSpecError } from "./time_spec.ts";
 * assert.throws(() => parseTimeSpec("7 hrs"), TimeSpecError);
 * assert.throws(() => parseTimeSpec("7 hrs"), /unknown unit "hrs" at token 2/);
 * ```
 */
export class TimeSpecError extends Error {
  /** Always `TimeSpecError`. */
  override name = "TimeSpecError";
  /** Make the error; `options.cause` is the underlying error. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
  }
}

type NumField = "second" | "minute" | "hour" | "day" | "month" | "week" | "year";

interface UnitInfo {
  field: NumField;
  min: number;
  max: number;
  /** Allowed negative range is -negMax..-1; 0 when negatives are not allowed. */
  negMax: number;
  label: string;
}

const UNITS: ReadonlyMap<string, UnitInfo> = (() => {
  const m = new Map<string, UnitInfo>();
  const add = (names: string[], info: UnitInfo) => {
    for (const n of names) m.set(n, info);
  };
  add(["sec", "s", "second", "seconds"], {
    field: "second",
    min: 0,
    max: 59,
    negMax: 60,
    label: "second",
  });
  add(["min", "m", "minute", "minutes"], {
    field: "minute",
    min: 0,
    max: 59,
    negMax: 60,
    label: "minute",
  });
  add(["hr", "h", "hour", "hours"], { field: "hour", min: 0, max: 23, negMax: 24, label: "hour" });
  add(["dy", "d", "day", "days"], { field: "day", min: 1, max: 31, negMax: 31, label: "day" });
  // "mo" after a number is the month (decided in times.md); bare "mo" is Monday.
  add(["mo", "month", "months"], { field: "month", min: 1, max: 12, negMax: 12, label: "month" });
  add(["wk", "w", "week", "weeks"], { field: "week", min: 1, max: 53, negMax: 53, label: "week" });
  add(["yr", "y", "year", "years"], { field: "year", min: 1, max: 9999, negMax: 0, label: "year" });
  return m;
})();

/** The units an offset before an event word may use, in seconds. */
const OFFSET_UNITS: ReadonlyMap<string, { label: string; seconds: number }> = (() => {
  const m = new Map<string, { label: string; seconds: number }>();
  for (const [name, info] of UNITS) {
    if (info.field === "second") m.set(name, { label: "second", seconds: 1 });
    if (info.field === "minute") m.set(name, { label: "minute", seconds: 60 });
    if (info.field === "hour") m.set(name, { label: "hour", seconds: 3600 });
  }
  return m;
})();

/** The longest offset before or after an event, in seconds. */
const MAX_OFFSET = 86_400;

const WEEKDAYS: ReadonlyMap<string, number> = (() => {
  const m = new Map<string, number>();
  const names = [
    ["mo", "mon", "monday"],
    ["tu", "tue", "tuesday"],
    ["we", "wed", "wednesday"],
    ["th", "thu", "thursday"],
    ["fr", "fri", "friday"],
    ["sa", "sat", "saturday"],
    ["su", "sun", "sunday"],
  ];
  names.forEach((group, i) => {
    for (const n of group) m.set(n, i + 1);
  });
  return m;
})();

/** Names of the weekdays, 1 = Monday. */
export const WEEKDAY_NAMES = [
  "",
  "monday",
  "tuesday",
  "wednesday",
  "thursday",
  "friday",
  "saturday",
  "sunday",
] as const;

const NUM_RE = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?$/i;

/** A token "looks like a number" (possibly signed or fractional). */
export function looksNumeric(token: string): boolean {
  return NUM_RE.test(token) || /^[+-]?(?:nan|infinity)$/i.test(token);
}

/**
 * Parse a time specification into its fields.
 *
 * A string is split on whitespace; an array is taken token by token (numbers
 * may be given as numbers). Tokens are case-insensitive.
 *
 * @throws {TimeSpecError} naming the offending token and its 1-based position.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseTimeSpec } from "./time_spec.ts";
 * const spec = parseTimeSpec("-1 fri 7 hr 30 min");
 * assert.ok(spec.weekday === 5 && spec.nth === -1 && spec.hour === 7);
 * ```
 */
export function parseTimeSpec(spec: TimeSpecInput): TimeSpec {
  let tokens: (string | number)[];
  if (typeof spec === "string") {
    tokens = spec.trim() === "" ? [] : spec.trim().split(/\s+/);
  } else if (Array.isArray(spec)) {
    tokens = [...spec];
  } else {
    throw new TypeError(`A time spec must be a string or an array, not ${typeof spec}`);
  }
  const text = tokens.map((t) => String(t)).join(" ");
  const fail = (reason: string, pos: number): never => {
    throw new TimeSpecError(`Cannot parse time spec "${text}": ${reason} at token ${pos}`);
  };

  const out: TimeSpec = {};
  let i = 0;
  const given = new Map<string, number>(); // field → position where it was given

  const setField = (key: string, label: string, pos: number, tok: string) => {
    const prev = given.get(key);
    if (prev !== undefined) {
      fail(`${label} given twice ("${tok}"; first at token ${prev})`, pos);
    }
    given.set(key, pos);
  };

  // A first token above 1e9 is a Unix timestamp used as "now".
  if (tokens.length > 0) {
    const first = tokens[0]!;
    const v = typeof first === "number" ? first : looksNumeric(first) ? Number(first) : NaN;
    if (Number.isFinite(v) && v > 1e9) {
      out.now = v;
      i = 1;
    }
  }

  // A sun event, with the offset written directly before it:
  // "1 hr 15 min after dawn". It is taken out before the fields are read.
  let skipFrom = -1;
  let skipTo = -1;
  for (let k = i; k < tokens.length; k++) {
    const t = tokens[k];
    if (typeof t !== "string" || !(SUN_EVENTS as readonly string[]).includes(t.toLowerCase())) {
      continue;
    }
    if (out.event !== undefined) {
      fail(`a second event word "${t}" (first "${out.event}" at token ${skipTo + 1})`, k + 1);
    }
    out.event = t.toLowerCase() as SunEvent;
    let j = k;
    const dir = k > i ? String(tokens[k - 1]).toLowerCase() : "";
    if (dir === "before" || dir === "after") {
      let offset = 0;
      const seen = new Set<string>();
      j = k - 1;
      while (j - 2 >= i) {
        const n = tokens[j - 2]!;
        const u = tokens[j - 1]!;
        const unit = typeof u === "string" ? OFFSET_UNITS.get(u.toLowerCase()) : undefined;
        const numeric = typeof n === "number" || looksNumeric(n);
        if (unit === undefined || !numeric) break;
        const v = Number(n);
        if (!Number.isInteger(v) || v < 0 || (typeof n === "string" && /^[+-]/.test(n))) {
          fail(
            `offset "${n} ${u}" is not a whole number of ${unit.label}s (0 or more; ` +
              `"before" and "after" give the direction)`,
            j - 1,
          );
        }
        if (seen.has(unit.label)) fail(`${unit.label}s given twice in the offset ("${u}")`, j);
        seen.add(unit.label);
        offset += v * unit.seconds;
        j -= 2;
      }
      if (j === k - 1) {
        fail(`"${tokens[k - 1]}" without an offset such as "30 min ${dir} ${t}"`, k);
      }
      if (offset > MAX_OFFSET) fail(`offset "${dir} ${t}" is longer than 24 hours`, k);
      out.offset = dir === "before" ? -offset : offset;
    }
    skipFrom = j;
    skipTo = k;
  }
  const intoEvent = (at: number) => {
    if (at === skipFrom) {
      fail(
        `"${tokens[at]}" after a sign or number: the offset of an event is never signed`,
        at + 1,
      );
    }
  };

  while (i < tokens.length) {
    if (i === skipFrom) {
      i = skipTo + 1;
      continue;
    }
    const pos = i + 1;
    const raw = tokens[i]!;
    if (typeof raw !== "number" && typeof raw !== "string") {
      fail(`token ${JSON.stringify(raw)} is neither a string nor a number`, pos);
    }
    const tok = typeof raw === "number" ? String(raw) : raw.toLowerCase();

    // A sign written apart from its number: "- 10 sec".
    let sign = 1;
    let signText = "";
    let numTok: string | number = raw;
    let numPos = pos;
    if (tok === "-" || tok === "+") {
      sign = tok === "-" ? -1 : 1;
      signText = tok;
      i++;
      if (i >= tokens.length) fail(`sign "${tok}" without a number`, pos);
      intoEvent(i);
      numTok = tokens[i]!;
      numPos = i + 1;
      const nt = typeof numTok === "number" ? String(numTok) : numTok.toLowerCase();
      if (WEEKDAYS.has(nt)) fail(`sign "${tok}" before weekday "${numTok}"`, pos);
      if (nt === "-" || nt === "+") fail(`two signs in a row ("${tok} ${nt}")`, pos);
      if (typeof numTok === "string" && /^[+-]/.test(numTok)) {
        fail(`sign "${tok}" before the signed number "${numTok}"`, pos);
      }
      if (typeof numTok === "number" && numTok < 0) {
        fail(`sign "${tok}" before the signed number "${numTok}"`, pos);
      }
    }

    const numText = typeof numTok === "number" ? String(numTok) : numTok;
    const lower = numText.toLowerCase();
    if (typeof numTok === "string" && !looksNumeric(numTok)) {
      if (signText === "") {
        // A bare word: a weekday, or a unit without a number.
        const wd = WEEKDAYS.get(lower);
        if (wd !== undefined) {
          setField("weekday", "weekday", pos, numText);
          out.weekday = wd;
          i++;
          continue;
        }
        if (/^[+-]/.test(lower) && WEEKDAYS.has(lower.slice(1))) {
          fail(`sign "${lower[0]}" before weekday "${numText.slice(1)}"`, pos);
        }
        if (UNITS.has(lower)) fail(`unit "${numText}" without a number`, pos);
        if (lower === "before" || lower === "after") {
          fail(
            `"${numText}" belongs between an offset and an event word, e.g. "30 min ${lower} sunset"`,
            pos,
          );
        }
        fail(`unknown unit "${numText}"`, pos);
      }
      fail(`sign "${signText}" before "${numText}", which is not a number`, pos);
    }

    const value = sign * (typeof numTok === "number" ? numTok : Number(numTok));
    const shown = signText === "" ? numText : `${signText}${numText}`;
    if (!Number.isInteger(value)) {
      fail(`non-integer number "${shown}"`, pos);
    }
    if (Math.abs(value) > 1e9) {
      fail(`number "${shown}" is too large (a Unix timestamp may only be the first token)`, pos);
    }

    // The unit follows the number.
    i++;
    if (i >= tokens.length || i === skipFrom) fail(`number "${shown}" without a unit`, numPos);
    const unitRaw = tokens[i]!;
    const unitPos = i + 1;
    const unit = typeof unitRaw === "number" ? String(unitRaw) : unitRaw.toLowerCase();
    if (typeof unitRaw === "number" || looksNumeric(unit) || unit === "-" || unit === "+") {
      fail(`number "${shown}" without a unit (followed by "${unitRaw}")`, numPos);
    }
    i++;

    const info = UNITS.get(unit);
    if (info !== undefined) {
      const ok = (value >= info.min && value <= info.max) ||
        (info.negMax > 0 && value < 0 && value >= -info.negMax);
      if (!ok) {
        const range = info.negMax > 0
          ? `${info.min}..${info.max} or -${info.negMax}..-1`
          : `${info.min}..${info.max}`;
        const hint = unit === "mo" ? ` ("N mo" is a month; the N-th Monday is "N mon")` : "";
        fail(`${info.label} "${shown} ${unitRaw}" out of range ${range}${hint}`, pos);
      }
      setField(info.field, info.label, unitPos, String(unitRaw));
      out[info.field] = value;
      continue;
    }
    const wd = WEEKDAYS.get(unit);
    if (wd !== undefined) {
      if (value === 0 || value < -5 || value > 5) {
        fail(`N-th weekday "${shown} ${unitRaw}" out of range 1..5 or -5..-1`, pos);
      }
      setField("weekday", "weekday", unitPos, String(unitRaw));
      out.weekday = wd;
      out.nth = value;
      continue;
    }
    fail(`unknown unit "${unitRaw}"`, unitPos);
  }
  if (out.event !== undefined) {
    for (const field of ["hour", "minute", "second"]) {
      const at = given.get(field);
      if (at !== undefined) {
        fail(
          `${field} "${tokens[at - 1]}" together with the event word "${out.event}" ` +
            `(write an offset: "30 min before ${out.event}")`,
          at,
        );
      }
    }
  }
  return out;
}

/** Whether the spec names no field at all (it matches every moment). */
export function isEmptySpec(spec: TimeSpec): boolean {
  return spec.second === undefined && spec.minute === undefined && spec.hour === undefined &&
    spec.day === undefined && spec.month === undefined && spec.week === undefined &&
    spec.year === undefined && spec.weekday === undefined && spec.event === undefined;
}
