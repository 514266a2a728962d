/**
 * The time zone a CLI command works in, as the installation says: `--tz`
 * when given, else `/config/timezone` in etcd when etcd answers quickly,
 * else the machine's own zone (quietly: a preview of times must work
 * without etcd). `moat time` and `moat script try` use it, and read the
 * installation's location (`--location`, else `/config/location`) the same
 * way, for sun events.
 *
 * @module
 */

import type { Globals } from "./command.ts";
import { CommandError, UsageError } from "./io.ts";
import { openEtcd } from "./services.ts";
import { hostZone } from "../time/zone.ts";
import { type Location, parseLocation } from "../time/sun.ts";

/** How long to wait for etcd before using the machine's zone, ms. */
export const ZONE_ETCD_TIMEOUT_MS = 1500;

/** The zone a command uses and where it came from. */
export interface InstallationZone {
  /** An IANA zone name. */
  zone: string;
  /** `option`: `--tz`; `etcd`: `/config/timezone`; `machine`: the machine's own zone. */
  source: "option" | "etcd" | "machine";
  /** Where it came from, in words: `""` for `--tz`, else e.g. `from /moat/config/timezone`. */
  from: string;
}

/** Whether `zone` is an IANA zone this runtime knows. */
export function isKnownZone(zone: string): boolean {
  try {
    new Intl.DateTimeFormat("en-US", { timeZone: zone });
    return true;
  } catch {
    return false;
  }
}

/** Options of {@linkcode installationZone}. */
export interface InstallationZoneOptions {
  /** How long to wait for etcd, ms. @default ZONE_ETCD_TIMEOUT_MS */
  timeoutMs?: number;
}

/**
 * The zone to use: `given` (`--tz`; a usage error when unknown), else
 * `/config/timezone` below `globals.root` in the etcd `globals` name, else
 * (also without `globals`) the machine's zone. Bad connection settings (an unreadable TLS file, a
 * user without a password) are usage errors; etcd not answering is not.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { installationZone } from "./installation_zone.ts";
 * import { resolveGlobals } from "./command.ts";
 * const globals = resolveGlobals({}, {}, () => "h");
 * const z = await installationZone(globals, "Europe/Berlin");
 * assert.equal(z.zone, "Europe/Berlin");
 * assert.equal(z.source, "option");
 * ```
 */
export async function installationZone(
  globals: Globals | undefined,
  given: string | undefined,
  options: InstallationZoneOptions = {},
): Promise<InstallationZone> {
  if (given !== undefined) {
    if (!isKnownZone(given)) throw new UsageError(`--tz "${given}" is not a known IANA time zone`);
    return { zone: given, source: "option", from: "" };
  }
  const machine = hostZone();
  if (globals === undefined) {
    return { zone: machine, source: "machine", from: "the machine's zone" };
  }
  const key = `${globals.root}/config/timezone`;
  const value = await readKey(globals, key, options.timeoutMs ?? ZONE_ETCD_TIMEOUT_MS);
  if (value === null) return { zone: machine, source: "machine", from: "the machine's zone" };
  if (value === undefined || value === "") {
    return { zone: machine, source: "machine", from: `the machine's zone; ${key} is not set` };
  }
  if (!isKnownZone(value)) {
    return {
      zone: machine,
      source: "machine",
      from: `the machine's zone; ${key} "${value}" is not a known IANA time zone`,
    };
  }
  return { zone: value, source: "etcd", from: `from ${key}` };
}

/**
 * The value of `key` in etcd, trimmed; `undefined` when it is not set, `null`
 * when etcd does not answer within `timeoutMs` (quietly: no etcd is no error).
 */
async function readKey(
  globals: Globals,
  key: string,
  timeoutMs: number,
): Promise<string | undefined | null> {
  // The etcd client retries a refused connection until its deadline: ask
  // the network first, so that a machine without etcd answers at once.
  if (!(await anyListening(globals.etcd, timeoutMs))) return null;
  const store = await openEtcd(globals, { timeoutMs });
  try {
    return (await store.get(key))?.value.trim();
  } catch {
    return null;
  } finally {
    await store.close().catch(() => {});
  }
}

/** The location a command uses and where it came from. */
export interface InstallationLocation {
  /** The location; undefined when neither `--location` nor `/config/location` gives one. */
  location?: Location;
  /** Where it came from, in words: `""` for `--location`, else e.g. `from /moat/config/location`. */
  from: string;
}

/**
 * The location for sun events: `given` (`--location LAT,LON`; a usage error
 * when malformed), else `/config/location` ("LAT LON") below `globals.root`
 * in etcd when etcd answers quickly, else none. A malformed
 * `/config/location` is an error naming the key.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { installationLocation } from "./installation_zone.ts";
 * const l = await installationLocation(undefined, "52.52,13.405");
 * assert.deepEqual(l.location, { latitude: 52.52, longitude: 13.405 });
 * ```
 */
export async function installationLocation(
  globals: Globals | undefined,
  given: string | undefined,
  options: InstallationZoneOptions = {},
): Promise<InstallationLocation> {
  if (given !== undefined) {
    try {
      return { location: parseLocation(given), from: "" };
    } catch (e) {
      throw new UsageError(`--location: ${(e as Error).message}`, { cause: e });
    }
  }
  if (globals === undefined) return { from: "no --location given" };
  const key = `${globals.root}/config/location`;
  const value = await readKey(globals, key, options.timeoutMs ?? ZONE_ETCD_TIMEOUT_MS);
  if (value === null) return { from: `etcd did not answer for ${key}` };
  if (value === undefined || value === "") return { from: `${key} is not set` };
  try {
    return { location: parseLocation(value), from: `from ${key}` };
  } catch (e) {
    throw new CommandError(`${key}: ${(e as Error).message}`, { cause: e });
  }
}

/** Whether any of the endpoint URLs accepts a TCP connection within `timeoutMs`. */
async function anyListening(endpoints: string[], timeoutMs: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(false), timeoutMs);
  });
  const probes = endpoints.map(async (e) => {
    const url = new URL(e);
    const port = Number(url.port || (url.protocol === "https:" ? 443 : 80));
    const conn = await Deno.connect({ hostname: url.hostname.replace(/^\[|\]$/g, ""), port });
    conn.close();
    return true;
  });
  try {
    return await Promise.race([Promise.any(probes).catch(() => false), late]);
  } finally {
    clearTimeout(timer);
  }
}
