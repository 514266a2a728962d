/**
 * `moat time SPEC… [--now T] [--current true|false|none] [--tz ZONE] [--count N]`:
 * print when a time specification next matches.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { type CliIO, CommandError, UsageError } from "./io.ts";
import { timeAt } from "../time/time_at.ts";
import { hostZone, localIso, localToUnix } from "../time/zone.ts";
import { looksNumeric, parseTimeSpec, TimeSpecError } from "../time/time_spec.ts";

/** The help text of `moat time`. */
export const TIME_HELP = `Usage: moat time SPEC… [options]

Print when the time specification SPEC next matches, as local ISO time with
offset and as Unix seconds, e.g.

  $ moat time 2 hr 30 min --tz Europe/Berlin --now 2026-03-29T00:00
  2026-03-29T03:00:00+02:00  1774746000

SPEC is a list of fields such as "7 hr 30 min", "-1 fri", "- 10 sec",
"2 mo 29 dy" or "1 wk" (see docs/time.md). Negative numbers in SPEC are
part of it, not options.

Options:
  --now T         the base time: Unix seconds, or an ISO date-time; without an
                  offset it is local time in --tz (default: now)
  --current C     true: the first matching moment; false: the first moment
                  that does not match; none: the start of the next matching
                  period (default: none)
  --tz ZONE       IANA time zone (default: the host's zone)
  --count N       print the next N results (default 1); each is computed
                  with now = one second after the previous result
  -h, --help      print this help`;

/** Options that take a value, for telling values from spec tokens. */
const VALUE_OPTIONS = new Set(["--now", "--current", "--tz", "--count"]);

const ISO_RE =
  /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?$/i;

/** Parse `--now`: Unix seconds, or an ISO date-time (local to `zone` without an offset). */
export function parseNow(text: string, zone: string): number {
  if (looksNumeric(text)) {
    const v = Number(text);
    if (Number.isFinite(v)) return v;
  }
  const m = ISO_RE.exec(text.trim());
  if (m === null) {
    throw new UsageError(`--now must be Unix seconds or an ISO date-time, not "${text}"`);
  }
  const [y, mo, d, h, mi, s] = [1, 2, 3, 4, 5, 6].map((i) => Number(m[i] ?? 0)) as [
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  const frac = m[7] === undefined ? 0 : Number(m[7]);
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || s > 59) {
    throw new UsageError(`--now "${text}" is not a valid date-time`);
  }
  const check = new Date(Date.UTC(y, mo - 1, d));
  if (check.getUTCDate() !== d) throw new UsageError(`--now "${text}" is not a valid date`);
  if (m[8] !== undefined) {
    const ms = Date.parse(
      `${m[1]}-${m[2]}-${m[3]}T${m[4] ?? "00"}:${m[5] ?? "00"}:${m[6] ?? "00"}` +
        `${m[7] ?? ""}${m[8].length === 5 ? `${m[8].slice(0, 3)}:${m[8].slice(3)}` : m[8]}`,
    );
    if (Number.isNaN(ms)) throw new UsageError(`--now "${text}" is not a valid date-time`);
    return ms / 1000;
  }
  return localToUnix([y, mo, d, h, mi, s], zone) + frac;
}

/**
 * Split the arguments into spec tokens and options. A token that looks like
 * a number ("-1", "- 10 sec") is part of the spec, never an option; so is
 * everything after `--`.
 */
function splitArgs(args: string[]): { spec: string[]; options: string[] } {
  const spec: string[] = [];
  const options: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === "--") {
      spec.push(...args.slice(i + 1));
      break;
    }
    // A quoted whole spec ("-1 fri 7 hr") holds white space: never an option.
    if (a === "-" || a === "+" || looksNumeric(a) || !a.startsWith("-") || /\s/.test(a)) {
      spec.push(a);
    } else {
      options.push(a);
      if (VALUE_OPTIONS.has(a) && i + 1 < args.length) options.push(args[++i]!);
    }
  }
  return { spec, options };
}

/**
 * Run `moat time` with the arguments after `time`; returns the exit code.
 *
 * @throws {UsageError} for bad arguments (exit code 2).
 * @throws {CommandError} for a spec that cannot be parsed or never matches.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { timeCommand } from "./time_cmd.ts";
 * const lines: string[] = [];
 * await timeCommand(["10", "sec", "--now", "1049522828", "--tz", "UTC", "--current", "true"], {
 *   out: (l) => lines.push(l),
 *   err: (l) => lines.push(l),
 * });
 * assert.ok(lines[0] === "2003-04-05T06:07:10+00:00  1049522830");
 * ```
 */
// deno-lint-ignore require-await -- async so that every failure is a rejection
export async function timeCommand(args: string[], io: CliIO): Promise<number> {
  const split = splitArgs(args);
  // Words typed on a command line are whitespace-separated tokens too.
  let spec = split.spec.flatMap((w) => w.trim().split(/\s+/)).filter((w) => w !== "");
  const options = split.options;
  let values: { now?: string; current?: string; tz?: string; count?: string; help?: boolean };
  try {
    ({ values } = parseArgs({
      args: options,
      options: {
        now: { type: "string" },
        current: { type: "string" },
        tz: { type: "string" },
        count: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
      allowPositionals: false,
      strict: true,
    }));
  } catch (e) {
    throw new UsageError((e as Error).message, { cause: e });
  }
  if (values.help) {
    for (const line of TIME_HELP.split("\n")) io.out(line);
    return 0;
  }

  const zone = values.tz ?? hostZone();
  try {
    new Intl.DateTimeFormat("en-US", { timeZone: zone });
  } catch {
    throw new UsageError(`--tz "${zone}" is not a known IANA time zone`);
  }

  let current: boolean | null = null;
  if (values.current !== undefined) {
    const c = values.current.toLowerCase();
    if (c === "true") current = true;
    else if (c === "false") current = false;
    else if (c === "none") current = null;
    else throw new UsageError(`--current must be true, false or none, not "${values.current}"`);
  }

  let count = 1;
  if (values.count !== undefined) {
    count = Number(values.count);
    if (!/^\d+$/.test(values.count) || count < 1 || count > 10_000) {
      throw new UsageError(`--count must be a whole number from 1 to 10000, not "${values.count}"`);
    }
  }

  let now = values.now === undefined ? Date.now() / 1000 : parseNow(values.now, zone);
  let parsed;
  try {
    parsed = parseTimeSpec(spec);
  } catch (e) {
    if (e instanceof TimeSpecError) throw new CommandError(e.message, { cause: e });
    throw e;
  }
  if (parsed.now !== undefined) {
    // A leading Unix timestamp is the base time; take it out so that
    // --count can move on from each result.
    if (values.now !== undefined) {
      throw new UsageError(`give the base time once: --now "${values.now}" or "${spec[0]}"`);
    }
    now = parsed.now;
    spec = spec.slice(1);
  }
  for (let i = 0; i < count; i++) {
    let t: number;
    try {
      t = timeAt(spec, { now, current, zone });
    } catch (e) {
      if (e instanceof TimeSpecError) throw new CommandError(e.message, { cause: e });
      throw e;
    }
    io.out(`${localIso(t, zone)}  ${t}`);
    // The next one is looked for from the whole second after this result.
    now = Math.floor(t) + 1;
  }
  return 0;
}
