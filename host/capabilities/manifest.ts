/**
 * Capability manifests (docs/security.md, "Capability manifests"): what an
 * administrator lets one script use. A manifest is stored beside the
 * script's code (`<scripts>/<name>/:code/caps`) or, replacing it whole,
 * in a task (`<task>/:task/caps`), as JSON text; only the CLI or etcd
 * change it, never the script. A capability the manifest leaves out stays
 * as without a manifest; one it names is limited to what it lists. A use
 * outside it is refused with code `denied` ({@linkcode DeniedError}).
 *
 * @module
 */

import { checkPattern, topicMatches } from "../bus/bus.ts";
import { checkName } from "../names.ts";
import { LIMIT_KEYS, readLimits, type SandboxLimits } from "../bridge/limits.ts";
import { INSTALL_WIDE, QUOTA_KEYS, type Quotas, readQuotas } from "./quotas.ts";
import { CapabilityError } from "./capability_error.ts";
import { treePath } from "./script_view.ts";
import type { Store } from "../store/store.ts";
import { type Layout, SCRIPT_KEYS, TASK_KEYS } from "../layout.ts";

/** A validated manifest; absent members leave their capability as it is without one. */
export interface Manifest {
  /** `tree.read`: root-relative prefixes the script may look up and monitor. */
  tree?: { read?: string[] };
  /** `data.write`: keys of `moat.data` the script may set. */
  data?: { write?: string[] };
  /** RPC name patterns (bus syntax) the script may serve and call. */
  rpc?: { serve?: string[]; call?: string[] };
  /** Alert patterns (bus syntax) the script may send and listen to. */
  alert?: { send?: string[]; receive?: string[] };
  /** Script names the script may `moat.load`. */
  load?: string[];
  /** Whether the script may use `moat.thread` (`false`: every call is refused). */
  thread?: boolean;
  /** Quotas and sandbox limits by their keys (`monitors`, `cpu`, …); they win over the task's. */
  limits?: Record<string, number>;
}

/** The capabilities a manifest can limit, as `denied` messages name them. */
export type Capability =
  | "tree.read"
  | "data.write"
  | "rpc.serve"
  | "rpc.call"
  | "alert.send"
  | "alert.receive"
  | "load"
  | "thread";

/** A manifest that cannot be used: the message names the member. */
export class ManifestError extends Error {
  override name = "ManifestError";
}

/** A use outside the script's manifest: code `denied`, naming the capability and the value. */
export class DeniedError extends CapabilityError {
  override name = "DeniedError";
  /** The capability refused. */
  readonly capability: Capability;
  constructor(capability: Capability, value: string) {
    super(
      "denied",
      capability === "thread"
        ? `denied: ${value} is not allowed by this script's manifest ("thread": false)`
        : `denied: ${capability} ${JSON.stringify(value)} is not in this script's manifest`,
    );
    this.capability = capability;
  }
}

const SHAPE: Record<string, "list" | "limits" | "flag" | Record<string, "list">> = {
  tree: { read: "list" },
  data: { write: "list" },
  rpc: { serve: "list", call: "list" },
  alert: { send: "list", receive: "list" },
  load: "list",
  thread: "flag",
  limits: "limits",
};

/** The quota keys and the sandbox limit keys a manifest may set. */
export const MANIFEST_LIMIT_KEYS: readonly string[] = [
  ...Object.values(LIMIT_KEYS),
  ...(Object.entries(QUOTA_KEYS) as [keyof Quotas, string][])
    .filter(([field]) => !INSTALL_WIDE.has(field))
    .map(([, key]) => key),
];

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

/** Check one listed item of member `where`; returns its canonical form. */
function checkItem(where: string, item: unknown): string {
  if (typeof item !== "string") {
    throw new ManifestError(`${where}: every item must be a string, not ${JSON.stringify(item)}`);
  }
  try {
    switch (where) {
      case "tree.read":
        return treePath(item);
      case "data.write":
        if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(item)) {
          throw new RangeError(`"${item}" is not a data key (letters, digits and "_")`);
        }
        return item;
      case "load":
        return checkName(item, "script");
      default:
        // RPC names and alert topics: patterns in the bus's own syntax.
        checkPattern(item);
        return item;
    }
  } catch (e) {
    // checkPattern speaks of alert patterns; RPC names use the same syntax.
    const why = (e as Error).message.replace(/^alert pattern/, "pattern");
    throw new ManifestError(`${where}: ${why}`);
  }
}

function checkLimit(key: string, value: unknown): number {
  if (!MANIFEST_LIMIT_KEYS.includes(key)) {
    throw new ManifestError(
      `limits: unknown key "${key}"; the keys are ${MANIFEST_LIMIT_KEYS.join(", ")}`,
    );
  }
  const text = typeof value === "number" ? String(value) : typeof value === "string" ? value : "";
  const n = Number(text.trim());
  let why: string | undefined;
  const warn = (m: string) => why ??= m.replace(/^ignoring task [^:]*: /, "");
  if (Object.values(LIMIT_KEYS).includes(key)) readLimits({}, { [key]: text }, warn);
  else readQuotas({}, { [key]: text }, warn);
  if (text.trim() === "" || !Number.isFinite(n)) why ??= "not a number";
  if (why !== undefined) {
    throw new ManifestError(`limits.${key}: ${JSON.stringify(value)} is not valid: ${why}`);
  }
  return n;
}

/** Check a manifest (parsed JSON or YAML); throws ManifestError naming the bad member. */
export function checkManifest(value: unknown): Manifest {
  if (!isObject(value)) throw new ManifestError("a manifest must be an object");
  const out: Record<string, unknown> = {};
  for (const [key, member] of Object.entries(value)) {
    const shape = SHAPE[key];
    if (shape === undefined) {
      throw new ManifestError(
        `unknown member "${key}"; the members are ${Object.keys(SHAPE).join(", ")}`,
      );
    }
    if (shape === "flag") {
      if (typeof member !== "boolean") {
        throw new ManifestError(`${key}: must be true or false, not ${JSON.stringify(member)}`);
      }
      out[key] = member;
    } else if (shape === "list") {
      if (!Array.isArray(member)) throw new ManifestError(`${key}: must be a list`);
      out[key] = member.map((i) => checkItem(key, i));
    } else if (shape === "limits") {
      if (!isObject(member)) throw new ManifestError(`${key}: must be an object`);
      const limits: Record<string, number> = {};
      for (const [k, v] of Object.entries(member)) limits[k] = checkLimit(k, v);
      out[key] = limits;
    } else {
      if (!isObject(member)) throw new ManifestError(`${key}: must be an object`);
      const sub: Record<string, string[]> = {};
      for (const [k, v] of Object.entries(member)) {
        if (shape[k] === undefined) {
          throw new ManifestError(
            `${key}: unknown member "${k}"; the members are ${Object.keys(shape).join(", ")}`,
          );
        }
        if (!Array.isArray(v)) throw new ManifestError(`${key}.${k}: must be a list`);
        sub[k] = v.map((i) => checkItem(`${key}.${k}`, i));
      }
      out[key] = sub;
    }
  }
  return out as Manifest;
}

/** Parse stored manifest text (JSON); throws ManifestError naming `where`. */
export function parseManifest(text: string, where = "the manifest"): Manifest {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new ManifestError(`${where} is not valid JSON: ${(e as Error).message}`);
  }
  try {
    return checkManifest(value);
  } catch (e) {
    throw new ManifestError(`${where}: ${(e as Error).message}`);
  }
}

/** The canonical stored text of a valid manifest. */
export function manifestText(m: Manifest): string {
  return JSON.stringify(m);
}

/**
 * Whether every name or topic `pattern` matches is matched by `grant`
 * (both in the bus's syntax: `*` one word, `#` zero or more). Judged word
 * by word, conservatively: a `#` in `pattern` is within only a `#` of
 * `grant`, a `*` only a `*` or a `#`, a word only the same word, a `*` or a
 * `#`. So `door.*` is within `door.#` and `#`, but `door.#` is not within
 * `door.*`, nor `*.open` within `door.*`.
 */
export function patternWithin(pattern: string, grant: string): boolean {
  const p = pattern.split(".");
  const g = grant.split(".");
  const failed = new Set<number>();
  const within = (i: number, j: number): boolean => {
    const key = i * (g.length + 1) + j;
    if (failed.has(key)) return false;
    let ok: boolean;
    if (j === g.length) ok = i === p.length;
    else if (g[j] === "#") ok = within(i, j + 1) || (i < p.length && within(i + 1, j));
    else if (i === p.length || p[i] === "#") ok = false;
    else if (g[j] === "*") ok = within(i + 1, j + 1);
    else ok = p[i] === g[j] && within(i + 1, j + 1);
    if (!ok) failed.add(key);
    return ok;
  };
  return within(0, 0);
}

function under(key: string, prefix: string): boolean {
  return key === prefix || key.startsWith(prefix + "/");
}

/**
 * The limits of one run as its manifest sets them, checked where the run
 * uses a capability. Without a manifest (or for a capability it leaves
 * out) every check passes.
 */
export class Grants {
  /** The manifest in force, if any. */
  readonly manifest: Manifest | undefined;

  constructor(manifest?: Manifest) {
    this.manifest = manifest;
  }

  /** Refuse a tree lookup or monitor of a root-relative path outside `tree.read`. */
  treeRead(path: string): void {
    const list = this.manifest?.tree?.read;
    if (list && !list.some((p) => under(path, p))) throw new DeniedError("tree.read", path);
  }

  /** Refuse a `moat.data` write of a key outside `data.write`. */
  dataWrite(key: string): void {
    const list = this.manifest?.data?.write;
    if (list && !list.includes(key)) throw new DeniedError("data.write", key);
  }

  /** Refuse serving an RPC name outside `rpc.serve`. */
  rpcServe(name: string): void {
    this.#names("rpc.serve", this.manifest?.rpc?.serve, name);
  }

  /** Refuse calling an RPC name outside `rpc.call`. */
  rpcCall(name: string): void {
    this.#names("rpc.call", this.manifest?.rpc?.call, name);
  }

  /** Refuse sending an alert topic outside `alert.send`. */
  alertSend(topic: string): void {
    this.#names("alert.send", this.manifest?.alert?.send, topic);
  }

  /** Refuse listening to a pattern not within one of `alert.receive` (see {@linkcode patternWithin}). */
  alertReceive(pattern: string): void {
    const list = this.manifest?.alert?.receive;
    if (list && !list.some((g) => patternWithin(pattern, g))) {
      throw new DeniedError("alert.receive", pattern);
    }
  }

  /** Refuse `moat.load` of a script outside `load`. */
  load(name: string): void {
    const list = this.manifest?.load;
    if (list && !list.includes(name)) throw new DeniedError("load", name);
  }

  /** Whether `moat.thread` may run (refused only by `"thread": false`). */
  get threadAllowed(): boolean {
    return this.manifest?.thread !== false;
  }

  /** Refuse `moat.thread` when the manifest says `"thread": false`. */
  thread(): void {
    if (!this.threadAllowed) throw new DeniedError("thread", "moat.thread");
  }

  #names(cap: Capability, list: string[] | undefined, name: string): void {
    if (list && !list.some((g) => topicMatches(g, name))) throw new DeniedError(cap, name);
  }
}

/**
 * The quotas and sandbox limits of a run with the manifest's `limits` over
 * them: the manifest wins over the task and `/config/run`.
 */
export function applyManifestLimits(
  manifest: Manifest | undefined,
  settings: { limits: Partial<SandboxLimits>; quotas: Quotas },
): { limits: Partial<SandboxLimits>; quotas: Quotas } {
  const set = manifest?.limits;
  if (!set) return settings;
  const limits = { ...settings.limits };
  const quotas = { ...settings.quotas };
  for (const [key, value] of Object.entries(set)) {
    const lim = Object.entries(LIMIT_KEYS).find(([, k]) => k === key);
    if (lim) {
      limits[lim[0] as keyof SandboxLimits] = value;
      continue;
    }
    const quota = Object.entries(QUOTA_KEYS).find(([, k]) => k === key);
    if (quota) quotas[quota[0] as keyof Quotas] = value;
  }
  return { limits, quotas };
}

/**
 * The manifest in force for a run of `script` in a task with other keys
 * `task.other`: the task's (`:task/caps`) when it has one, replacing the
 * script's whole, else the script's (`:code/caps`), else none. Throws
 * ManifestError, naming the key, when the one in force is malformed.
 */
export async function readManifest(
  store: Store,
  layout: Layout,
  script: string,
  task: { path: string; other: Record<string, string> },
): Promise<Manifest | undefined> {
  const own = task.other[TASK_KEYS.caps];
  if (own !== undefined) {
    return parseManifest(own, `the manifest of task ${task.path} (${TASK_KEYS.caps})`);
  }
  const kv = await store.get(layout.scriptDir(script) + SCRIPT_KEYS.caps);
  if (kv === undefined) return undefined;
  return parseManifest(kv.value, `the manifest of script ${script}`);
}
