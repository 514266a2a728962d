/**
 * `moat time SPEC… [--now T] [--current true|false|none] [--tz ZONE]
 * [--location LAT,LON] [--count N] [--json]`: print when a time
 * specification next matches, in the installation's zone and, for sun
 * events, at its location (see installation_zone.ts).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { type CliIO, CommandError, UsageError } from "./io.ts";
import { type Globals, resolveGlobals } from "./command.ts";
import { installationLocation, installationZone } from "./installation_zone.ts";
import { timeAt } from "../time/time_at.ts";
import { localIso, localToUnix } from "../time/zone.ts";
import { looksNumeric, parseTimeSpec, TimeSpecError } from "../time/time_spec.ts";

/** The help text of `moat time`. */
export const TIME_HELP = `Usage: moat time SPEC… [options]

Print when the time specification SPEC next matches, as local ISO time with
offset and as Unix seconds, e.g.

  $ moat time 2 hr 30 min --tz Europe/Berlin --now 2026-03-29T00:00
  2026-03-29T03:00:00+02:00  1774746000

SPEC is a list of fields such as "7 hr 30 min", "-1 fri", "- 10 sec",
"2 mo 29 dy" or "1 wk", or a sun event such as "sunset", "sat dawn" or
"30 min before sunset" (see docs/time.md). Negative numbers in SPEC are
part of it, not options.

A sun event needs the installation's location: --location, else
/config/location in etcd ("LAT LON"), read like the zone.

Without --tz the zone is the installation's: /config/timezone in etcd when
etcd answers within 1.5 s (--etcd, --root, MOAT_ETCD, MOAT_ROOT), else the
machine's zone. A note on standard error says which zone is used.

Options:
  --now T         the base time: Unix seconds, or an ISO date-time; without an
                  offset it is local time in the zone (default: now)
  --current C     true: the first matching moment; false: the first moment
                  that does not match; none: the start of the next matching
                  period (default: none)
  --tz ZONE       IANA time zone (default: the installation's, see above)
  --location LAT,LON
                  where sun events are computed, decimal degrees, north and
                  east positive, e.g. 52.52,13.405 (default: the
                  installation's /config/location)
  --count N       print the next N results (default 1); each is computed
                  with now = one second after the previous result
  --json          print each result as one JSON object per line:
                  {"time": ISO, "unix": seconds, "zone": ZONE}
  --etcd URL      etcd endpoints to read /config/timezone and /config/location from
  --root PREFIX   root prefix in etcd (default /moat)
  -h, --help      print this help

Exit code 0 on success, 1 for a spec that cannot be parsed or never matches,
2 for bad arguments (a missing SPEC among them).`;

/** Options that take a value, for telling values from spec tokens. */
const VALUE_OPTIONS = new Set([
  "--now",
  "--current",
  "--tz",
  "--location",
  "--count",
  "--etcd",
  "--root",
]);

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
      // As "--opt=value", so that a value starting with "-" (--location -33.9,151.2) is one.
      if (VALUE_OPTIONS.has(a) && i + 1 < args.length) options.push(`${a}=${args[++i]!}`);
      else options.push(a);
    }
  }
  return { spec, options };
}

/**
 * The globals that name the etcd to read the zone from: `globals`, with
 * `--etcd`/`--root` given after `time` over them; without `globals`, from
 * those options and the environment.
 */
function zoneGlobals(values: { etcd?: string; root?: string }, globals?: Globals): Globals {
  if (values.etcd === undefined && values.root === undefined && globals !== undefined) {
    return globals;
  }
  const own = {
    ...(values.etcd !== undefined ? { etcd: values.etcd } : {}),
    ...(values.root !== undefined ? { root: values.root } : {}),
  };
  return resolveGlobals(
    own,
    globals === undefined ? Deno.env.toObject() : {},
    () => "localhost",
    globals,
  );
}

/**
 * Run `moat time` with the arguments after `time`; returns the exit code.
 * `globals` name the etcd to read the installation's zone from; without
 * them, they come from `--etcd`/`--root` among `args` and the environment
 * (`MOAT_ETCD`, `MOAT_ROOT`, …).
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
export async function timeCommand(
  args: string[],
  io: CliIO,
  globals?: Globals,
): Promise<number> {
  const split = splitArgs(args);
  // Words typed on a command line are whitespace-separated tokens too.
  let spec = split.spec.flatMap((w) => w.trim().split(/\s+/)).filter((w) => w !== "");
  const options = split.options;
  let values: {
    now?: string;
    current?: string;
    tz?: string;
    location?: string;
    count?: string;
    json?: boolean;
    etcd?: string;
    root?: string;
    help?: boolean;
  };
  try {
    ({ values } = parseArgs({
      args: options,
      options: {
        now: { type: "string" },
        current: { type: "string" },
        tz: { type: "string" },
        location: { type: "string" },
        count: { type: "string" },
        json: { type: "boolean" },
        etcd: { type: "string" },
        root: { type: "string" },
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

  if (spec.length === 0) {
    throw new UsageError(
      'moat time needs a time specification, e.g. "moat time 7 hr 30 min"',
    );
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

  const { zone, from } = await installationZone(
    values.tz === undefined ? zoneGlobals(values, globals) : undefined,
    values.tz,
  );
  if (from !== "") io.err(`note: zone ${zone} (${from})`);

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
  let location;
  if (parsed.event !== undefined || values.location !== undefined) {
    const found = await installationLocation(
      values.location === undefined ? zoneGlobals(values, globals) : undefined,
      values.location,
    );
    if (found.location === undefined) {
      throw new CommandError(
        `"${parsed.event}" needs the installation's location: give --location LAT,LON ` +
          `or set /config/location in etcd ("LAT LON"); ${found.from}`,
      );
    }
    location = found.location;
    if (found.from !== "") {
      io.err(`note: location ${location.latitude} ${location.longitude} (${found.from})`);
    }
  }
  for (let i = 0; i < count; i++) {
    let t: number;
    try {
      t = timeAt(spec, { now, current, zone, ...(location ? { location } : {}) });
    } catch (e) {
      if (e instanceof TimeSpecError) throw new CommandError(e.message, { cause: e });
      throw e;
    }
    if (values.json) io.out(JSON.stringify({ time: localIso(t, zone), unix: t, zone }));
    else io.out(`${localIso(t, zone)}  ${t}`);
    // The next one is looked for from the whole second after this result.
    now = Math.floor(t) + 1;
  }
  return 0;
}
