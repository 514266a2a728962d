/**
 * `moat script try FILE [key=value…] [--at TIME] [--until SPEC|--for DURATION]
 * [--tz ZONE] [--tree FILE] [--events FILE] [--lib NAME=FILE…] [--no-typecheck]
 * [--json]`: run a script locally, on the embedded store and bus, through
 * virtual time (see try_session.ts for how the clock moves). The code gets
 * the checks of `moat script def add` first: what is tried is what would run.
 *
 * @module
 */

import type { Command, CommandContext } from "./command.ts";
import { UsageError } from "./io.ts";
import { escapeControl } from "../text.ts";
import { DataFileError, parseDataFile } from "./data_file.ts";
import { readManifestFile } from "./caps_cmd.ts";
import { parseNow } from "./time_cmd.ts";
import { formatSpan, type TryEvent, type TryLibrary, trySession } from "./try_session.ts";
import { checkScript, isLanguage, type Language, languageOf } from "../scripts/check.ts";
import { typeCheckScript } from "../scripts/typecheck.ts";
import { installationLocation, installationZone } from "./installation_zone.ts";
import { checkName } from "../names.ts";
import { parseAssignments } from "../tasks/task_defs.ts";
import { timeAt } from "../time/time_at.ts";
import { parseTimeSpec } from "../time/time_spec.ts";

const UNIT_MS: Record<string, number> = {
  w: 604_800_000,
  d: 86_400_000,
  h: 3_600_000,
  m: 60_000,
  s: 1000,
};

/**
 * Parse a duration such as `7d`, `36h`, `90m`, `3600s` or `1d12h`, in ms.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseDuration } from "./try_cmd.ts";
 * assert.equal(parseDuration("1d12h", "--for"), 36 * 3600_000);
 * assert.throws(() => parseDuration("7 days", "--for"), /not a duration/);
 * ```
 */
export function parseDuration(text: string, what: string): number {
  const t = text.trim().toLowerCase();
  if (!/^(\d+(\.\d+)?[wdhms])+$/.test(t)) {
    throw new UsageError(
      `${what} "${text}" is not a duration (e.g. 7d, 36h, 90m, 3600s, 1d12h)`,
    );
  }
  let ms = 0;
  for (const m of t.matchAll(/(\d+(?:\.\d+)?)([wdhms])/g)) ms += Number(m[1]) * UNIT_MS[m[2]!]!;
  if (!(ms > 0)) throw new UsageError(`${what} "${text}" must be longer than zero`);
  return ms;
}

/** A virtual time: Unix seconds, an ISO date-time (local to `zone` without offset), or `+DURATION`. */
function parseTime(text: string | number, what: string, zone: string, startMs: number): number {
  if (typeof text === "number") {
    if (!Number.isFinite(text)) throw new UsageError(`${what}: ${text} is not a time`);
    return text * 1000;
  }
  if (text.startsWith("+")) return startMs + parseDuration(text.slice(1), what);
  try {
    return parseNow(text, zone) * 1000;
  } catch (e) {
    throw new UsageError(
      (e as Error).message.replace("--now", what) +
        (what === "--at" ? "" : " (or +DURATION after --at, e.g. +36h)"),
    );
  }
}

async function readText(file: string, what: string): Promise<string> {
  try {
    return await Deno.readTextFile(file);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new UsageError(`${what}: "${file}" does not exist`);
    }
    throw new UsageError(`${what}: cannot read "${file}": ${(e as Error).message}`);
  }
}

function parseData(text: string, what: string, file: string): unknown {
  try {
    return parseDataFile(text, file);
  } catch (e) {
    if (e instanceof DataFileError) throw new UsageError(`${what} "${file}" ${e.message}`);
    throw e;
  }
}

const isPlainObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);

/**
 * The keys a `--tree` file (JSON or YAML) seeds: an object mapping root-relative
 * paths to values. A nested object is a folder (its keys are appended to
 * the path); strings are stored as they are, other values as JSON text.
 */
export function treeEntries(value: unknown, file: string): [string, string][] {
  if (!isPlainObject(value)) {
    throw new UsageError(`--tree "${file}" must hold an object of paths and values`);
  }
  const out: [string, string][] = [];
  const walk = (prefix: string, obj: Record<string, unknown>) => {
    for (const [k, v] of Object.entries(obj)) {
      const path = prefix === "" ? k.replace(/^\/+|\/+$/g, "") : `${prefix}/${k}`;
      const segs = path.split("/");
      if (path === "" || segs.some((s) => s === "" || s === "." || s === "..")) {
        throw new UsageError(`--tree "${file}": "${path}" is not a valid path below the root`);
      }
      if (isPlainObject(v)) walk(path, v);
      else out.push([path, typeof v === "string" ? v : JSON.stringify(v)]);
    }
  };
  walk("", value);
  return out;
}

/** The events of an `--events` file (JSON or YAML). */
export function parseEvents(
  value: unknown,
  file: string,
  zone: string,
  startMs: number,
): TryEvent[] {
  if (!Array.isArray(value)) {
    throw new UsageError(`--events "${file}" must hold a list of events`);
  }
  return value.map((ev, i): TryEvent => {
    const what = `--events "${file}", event ${i + 1}`;
    if (!isPlainObject(ev)) throw new UsageError(`${what}: not an object`);
    const at = ev.at;
    if (typeof at !== "string" && typeof at !== "number") {
      throw new UsageError(
        `${what}: "at" must be a time (ISO date-time, Unix seconds or +DURATION)`,
      );
    }
    const atMs = parseTime(at, `${what}: "at"`, zone, startMs);
    if (atMs < startMs) throw new UsageError(`${what}: "at" ${JSON.stringify(at)} is before --at`);
    const kinds = [
      ...["alert", "call", "put", "delete"].filter((k) => typeof ev[k] === "string"),
      ...["stop", "start"].filter((k) => ev[k] === true),
    ];
    if (kinds.length !== 1) {
      throw new UsageError(
        `${what}: needs one of "alert": TOPIC, "call": NAME, "put": PATH, "delete": PATH, ` +
          `"stop": true or "start": true`,
      );
    }
    if (kinds[0] === "stop" || kinds[0] === "start") return { atMs, kind: kinds[0] };
    if (kinds[0] === "put" || kinds[0] === "delete") {
      const path = (ev[kinds[0]] as string).replace(/^\/+|\/+$/g, "");
      if (path === "" || path.split("/").some((s) => s === "" || s === "." || s === "..")) {
        throw new UsageError(`${what}: "${path}" is not a valid path below the root`);
      }
      if (kinds[0] === "delete") return { atMs, kind: "delete", path };
      if (ev.value === undefined) throw new UsageError(`${what}: "put" needs a "value"`);
      const value = typeof ev.value === "string" ? ev.value : JSON.stringify(ev.value);
      return { atMs, kind: "put", path, value };
    }
    const isAlert = kinds[0] === "alert";
    if (isAlert) return { atMs, kind: "alert", topic: ev.alert as string, data: ev.data ?? null };
    const timeout = ev.timeout ?? 15;
    if (typeof timeout !== "number" || !(timeout > 0)) {
      throw new UsageError(`${what}: "timeout" must be a positive number of seconds`);
    }
    return {
      atMs,
      kind: "call",
      name: ev.call as string,
      args: ev.args ?? null,
      timeoutMs: timeout * 1000,
    };
  });
}

function languageFor(ctx: CommandContext, file: string): Language {
  const l = ctx.values.language;
  if (typeof l !== "string") return file === "-" ? "typescript" : languageOf(file);
  if (!isLanguage(l)) {
    throw new UsageError(`--language must be typescript or javascript, not "${l}"`);
  }
  return l;
}

function scriptName(ctx: CommandContext, file: string): string {
  const given = ctx.values.name;
  const n = typeof given === "string"
    ? given
    : file === "-"
    ? "stdin"
    : (file.split("/").pop() ?? "script").replace(/\.(m?[tj]s|cjs)$/i, "").replace(/\s+/g, "_");
  try {
    return checkName(n, "script");
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

/** The checks of `moat script def add`: syntax and imports, then (unless skipped) the types. */
function checkCode(ctx: CommandContext, file: string, code: string, language: Language): void {
  checkScript(file, code, language);
  if (ctx.values["no-typecheck"] !== true) typeCheckScript(file, code, language);
}

async function libraries(ctx: CommandContext): Promise<TryLibrary[]> {
  const raw = ctx.values.lib;
  const list = Array.isArray(raw) ? raw : raw === undefined ? [] : [raw];
  const out: TryLibrary[] = [];
  for (const item of list) {
    const text = String(item);
    const eq = text.indexOf("=");
    if (eq <= 0) throw new UsageError(`--lib "${text}" must be NAME=FILE`);
    const name = text.slice(0, eq);
    const file = text.slice(eq + 1);
    try {
      checkName(name, "script");
    } catch (e) {
      throw new UsageError(`--lib: ${(e as Error).message}`);
    }
    const code = await readText(file, "--lib");
    const language = languageOf(file);
    checkCode(ctx, file, code, language);
    out.push({ name, code, language });
  }
  return out;
}

/** `moat script try`. */
export const tryCommand: Command = {
  kind: "command",
  name: "try",
  summary: "run a script locally through virtual time (no etcd, no broker)",
  args: "FILE|- [key=value…]",
  help: `Runs the script as task try/NAME on a real host in a real sandbox, but on the
embedded store and bus, with a virtual clock: it starts at --at and jumps to the
next moment the script waits for as soon as the script rests, so a week of
schedules takes seconds. Prints the log, each wait, each injected event and every
write to the task's data/, each line prefixed with the virtual time in --tz.
key=value words become the task's data (as with moat script add); a key the script
writes with moat.data.set must exist, e.g. light=false.

Checks: the code gets the checks of moat script def add first (syntax, no import
or export, and the types against the moat API unless --no-typecheck); so does
each --lib. --caps FILE runs the script under that capability manifest
(docs/security.md): a use outside it is refused with code denied.

Time: the script's own clock and timers run on the virtual clock: Date.now(),
new Date() (no arguments), performance.now(), setTimeout, setInterval and their
clear…, as well as moat.time_at, moat.wait and moat.run_at. The clock moves only
when the script rests (every pending thing is a timer or a wait); a script that
never yields stops virtual time and is stopped by its CPU budget. Real time still
rules moat.call timeouts, the on_stop budget and the sandbox's limits. Timer
firings are summed up at the end, one "timer" line per kind and delay.

Zone: --tz, else /config/timezone in etcd when etcd answers within 1.5 s, else
the machine's zone; the first line says which. Location (for sun events such as
"30 min before sunset"): --location, else /config/location in etcd, read the
same way; without either, a spec with a sun event fails.

Both files are JSON, or YAML when the name ends in .yaml or .yml.
--tree FILE: an object of paths below the root and their values, e.g.
  {"device/onewire/10/:dev": {"temp": -20}, "meta/script/NAME/:code/types/light": "bool"}
  or in YAML:
    device/onewire/10/:dev:
      temp: -20
  (a nested object is a folder; strings are stored as they are, others as JSON).
--events FILE: a list of events, each at a TIME (an ISO date-time, Unix
  seconds, or +DURATION after --at):
  {"at": TIME, "alert": TOPIC, "data": …}    publish an alert
  {"at": TIME, "call": NAME, "args": …}      call an RPC and print the reply
  {"at": TIME, "put": PATH, "value": …}      write a value into the tree
  {"at": TIME, "delete": PATH}               delete a key and everything below it
  {"at": TIME, "stop": true}                 stop the script as its host would (on_stop runs)
  {"at": TIME, "start": true}                start it again (a restart, a take-over)
Firings of schedules with an id (moat.wait/run_at {id, catch_up}) print a "fire"
line; a catch-up of a firing missed while the script was stopped is marked "late".

--json prints each line as one JSON object: {"time": ISO, "unix": seconds,
"kind": "info"|"wait"|"data"|…, "text": the rest of the line}.

Exit code 0 when the run reached its end or the script ended ok, 1 when the script
ended with an error or failed (or failed its check), 2 for bad arguments.`,
  options: {
    at: {
      type: "string",
      arg: "TIME",
      help:
        "virtual start: ISO date-time (local in --tz without offset) or Unix seconds (default: now)",
    },
    until: {
      type: "string",
      arg: "SPEC",
      help: 'stop at the next moment after --at matching the time spec, e.g. "mon 0 hr"',
    },
    for: {
      type: "string",
      arg: "DURATION",
      help: "stop after this much virtual time: 7d, 36h, 90m, 3600s, 1d12h (default 1d)",
    },
    tz: {
      type: "string",
      arg: "ZONE",
      help: "the installation's time zone and of the output " +
        "(default: /config/timezone in etcd, else the machine's)",
    },
    location: {
      type: "string",
      arg: "LAT,LON",
      help: "the installation's location for sun events, decimal degrees, north and east " +
        "positive, e.g. 52.52,13.405 or --location=-33.87,151.21 (default: /config/location " +
        "in etcd)",
    },
    tree: {
      type: "string",
      arg: "FILE",
      help: "seed the tree from a JSON or YAML file (see above)",
    },
    events: {
      type: "string",
      arg: "FILE",
      help:
        "inject alerts, RPC calls, tree changes, stops and starts at virtual times (JSON or YAML, see above)",
    },
    lib: {
      type: "string",
      arg: "NAME=FILE",
      multiple: true,
      help: "store another script under NAME, for moat.load (repeatable)",
    },
    name: { type: "string", arg: "NAME", help: "the script's name (default: the file's name)" },
    language: {
      type: "string",
      arg: "LANG",
      help: "typescript or javascript (default: from the file name; typescript for -)",
    },
    "no-typecheck": {
      type: "boolean",
      help: "skip the type check against the moat API (the syntax and import check still runs)",
    },
    json: { type: "boolean", help: "print the trace as JSON lines (see above)" },
    caps: {
      type: "string",
      arg: "FILE",
      help: "run under the capability manifest in FILE (JSON or YAML; docs/security.md)",
    },
  },
  minArgs: 1,
  async run(ctx) {
    const file = ctx.positionals[0]!;
    let data: [string, string][];
    try {
      data = parseAssignments(ctx.positionals.slice(1)).map(([k, v]) => [k, v ?? ""]);
    } catch (e) {
      throw new UsageError((e as Error).message);
    }
    // The installation's zone (/config/timezone) when etcd answers, unless --tz says.
    const { zone, from: zoneFrom } = await installationZone(
      ctx.globals,
      typeof ctx.values.tz === "string" ? ctx.values.tz : undefined,
    );
    // The installation's location (/config/location) likewise, unless --location says.
    const { location, from: locationFrom } = await installationLocation(
      ctx.globals,
      typeof ctx.values.location === "string" ? ctx.values.location : undefined,
    );
    if (location !== undefined && locationFrom !== "") {
      ctx.io.err(`note: location ${location.latitude} ${location.longitude} (${locationFrom})`);
    }
    const startMs = typeof ctx.values.at === "string"
      ? parseTime(ctx.values.at, "--at", zone, 0)
      : Math.floor(Date.now() / 1000) * 1000;
    if (typeof ctx.values.until === "string" && typeof ctx.values.for === "string") {
      throw new UsageError("--until and --for exclude each other");
    }
    let endMs: number;
    if (typeof ctx.values.until === "string") {
      try {
        parseTimeSpec(ctx.values.until);
        endMs = timeAt(ctx.values.until, {
          now: startMs / 1000,
          zone,
          ...(location !== undefined ? { location } : {}),
        }) * 1000;
      } catch (e) {
        throw new UsageError(`--until: ${(e as Error).message}`);
      }
    } else {
      endMs = startMs +
        parseDuration(typeof ctx.values.for === "string" ? ctx.values.for : "1d", "--for");
    }
    const tree: [string, string][] = typeof ctx.values.tree === "string"
      ? treeEntries(
        parseData(await readText(ctx.values.tree, "--tree"), "--tree", ctx.values.tree),
        ctx.values.tree,
      )
      : [];
    // The run's host reads /config/location as an installation's would (--tree may override).
    if (location !== undefined) {
      tree.unshift(["config/location", `${location.latitude} ${location.longitude}`]);
    }
    const events = typeof ctx.values.events === "string"
      ? parseEvents(
        parseData(await readText(ctx.values.events, "--events"), "--events", ctx.values.events),
        ctx.values.events,
        zone,
        startMs,
      )
      : [];
    const libs = await libraries(ctx);
    const caps = typeof ctx.values.caps === "string"
      ? await readManifestFile(ctx.values.caps)
      : undefined;
    const name = scriptName(ctx, file);
    const code = file === "-"
      ? await new Response(Deno.stdin.readable).text()
      : await readText(file, "script");
    const language = languageFor(ctx, file);
    checkCode(ctx, file, code, language);

    const began = performance.now();
    const result = await trySession({
      name,
      code,
      language,
      source: file === "-" ? "standard input" : file,
      data,
      startMs,
      endMs,
      zone,
      ...(location !== undefined ? { location } : {}),
      tree,
      events,
      libraries: libs,
      ...(caps !== undefined ? { caps } : {}),
      out: ctx.io.out,
      verbose: ctx.globals.verbose,
      json: ctx.values.json === true,
      zoneFrom,
    });
    const real = ((performance.now() - began) / 1000).toFixed(2);
    const late = events.filter((e) => e.atMs > endMs).length;
    if (late > 0) ctx.io.err(`note: ${late} event(s) after the end were not injected`);
    ctx.io.err(
      `simulated ${
        formatSpan(result.reachedMs - startMs)
      } in ${real} s (${result.steps} clock steps)`,
    );
    if (result.state === "error" || result.state === "fail") {
      ctx.io.err(
        `error: the script ended with ${result.state}: ${escapeControl(result.message)}`,
      );
      return 1;
    }
    return 0;
  },
};
