/**
 * The run settings of a task (`ttl`, `refresh`, `restart`, `retry`,
 * `max_retry`): `/config/run` defaults, overridden per task, and the
 * restart/retry policy they define.
 *
 * @module
 */

import { type Layout, RUN_DEFAULTS, type RunSetting } from "../layout.ts";
import type { Store } from "../store/store.ts";
import { DEFAULT_LIMITS, LIMIT_KEYS, readLimits, type SandboxLimits } from "../bridge/limits.ts";
import { DEFAULT_QUOTAS, INSTALL_WIDE, QUOTA_KEYS, readQuotas } from "../capabilities/quotas.ts";

/** Effective run settings of one task, in seconds. */
export type RunConfig = Record<RunSetting, number>;

const NAMES = Object.keys(RUN_DEFAULTS) as RunSetting[];

/**
 * Merge the defaults, `/config/run/<name>` values and per-task values.
 * Values that are not non-negative numbers are ignored and reported
 * through `warn` (a value typed by hand must not stop the host).
 */
export function runConfig(
  global: Record<string, string>,
  task: Record<string, string>,
  warn: (message: string) => void = () => {},
): RunConfig {
  const out = { ...RUN_DEFAULTS } as RunConfig;
  for (const [where, src] of [["/config/run", global], ["task", task]] as const) {
    for (const name of NAMES) {
      const text = src[name];
      if (text === undefined) continue;
      const n = Number(text.trim());
      if (text.trim() === "" || !Number.isFinite(n) || n < 0) {
        warn(`ignoring ${where} ${name} = "${text}": not a non-negative number`);
        continue;
      }
      out[name] = n;
    }
  }
  // A lease needs at least one second; keep-alives need a positive divisor.
  out.ttl = Math.max(1, Math.round(out.ttl));
  if (out.refresh < 1) out.refresh = 1;
  return out;
}

/**
 * Seconds to wait before the next run, or `undefined` for "do not run
 * again". After a normal end: `restart` (0 = never). After a failure:
 * `retry × 1.1^(failures-1)`, at most `max_retry` (`max_retry` 0 = never).
 */
export function nextDelay(
  config: RunConfig,
  outcome: "ok" | "error" | "fail",
  consecutiveFailures: number,
): number | undefined {
  if (outcome === "ok") return config.restart > 0 ? config.restart : undefined;
  if (config.max_retry <= 0) return undefined;
  const n = Math.max(1, consecutiveFailures);
  return Math.min(config.retry * 1.1 ** (n - 1), config.max_retry);
}

/** A run that ends sooner than this after it started is a quick end, s. */
export const QUICK_RUN_S = 10;

/** The smallest pause the quick-end back-off doubles, s. */
export const QUICK_BASE_S = 1;

/**
 * The pause after the `quickEnds`-th quick end in a row (runs shorter than
 * {@linkcode QUICK_RUN_S}, whether they ended ok or not): the usual
 * `delay` (at least {@linkcode QUICK_BASE_S}) doubled for every quick end
 * after the first, at most `max_retry` (or its default when `max_retry` is
 * 0). A script that ends at once, again and again, then costs the
 * installation a start every few minutes rather than every `restart`
 * seconds (or, with `retry` 0, in a tight loop).
 */
export function quickEndDelay(config: RunConfig, delay: number, quickEnds: number): number {
  if (quickEnds <= 1) return delay;
  const cap = Math.max(delay, config.max_retry > 0 ? config.max_retry : RUN_DEFAULTS.max_retry);
  return Math.min(Math.max(delay, QUICK_BASE_S) * 2 ** (quickEnds - 1), cap);
}

/** A sandbox group's name: 1 to 64 letters, digits, `_`, `-` and `.`. */
const GROUP_NAME = /^[A-Za-z0-9_.-]{1,64}$/;

/**
 * The task's sandbox group (key `group`), or `undefined` for a process of
 * its own. Only the task sets it: a group in `/config/run` would put every
 * task into one crash domain, so it is ignored (and reported through `warn`),
 * like a name that is not 1 to 64 letters, digits, `_`, `-` or `.`.
 */
export function readGroup(
  global: Record<string, string>,
  task: Record<string, string>,
  warn: (message: string) => void = () => {},
): string | undefined {
  if (global.group !== undefined) {
    warn(`ignoring /config/run group = "${global.group}": group can only be set per task`);
  }
  const text = task.group;
  if (text === undefined) return undefined;
  if (!GROUP_NAME.test(text)) {
    warn(`ignoring task group = "${text}": not 1 to 64 letters, digits, "_", "-" or "."`);
    return undefined;
  }
  return text;
}

/** Which family a per-task setting belongs to. */
export type SettingKind = "run" | "limit" | "quota";

/** Where a setting's effective value comes from. */
export type SettingSource = "task" | "/config/run" | "default";

/** One setting as `moat script config` shows it. */
export interface SettingRow {
  /** The key, as stored (`restart`, `cpu_window`, `value_size`, …). */
  key: string;
  /** Run setting, sandbox limit or quota. */
  kind: SettingKind;
  /** The value in force (text for `group`: "" for none). */
  value: number | string;
  /** Where `value` comes from. */
  source: SettingSource;
  /** The value when neither the task nor `/config/run` sets it. */
  default: number | string;
  /** Whether only `/config/run` may set it (some quotas). */
  installWide: boolean;
  /** The task's stored text, when it has one (in force or not). */
  task?: string;
  /** The `/config/run` text, when there is one (in force or not). */
  global?: string;
  /** Values stored but not in force, and why (a hand-typed bad value). */
  ignored: string[];
}

interface SettingSpec {
  key: string;
  kind: SettingKind;
  default: number | string;
  installWide: boolean;
  /** Read the setting from one `/config/run` map and one task map. */
  read(global: Record<string, string>, task: Record<string, string>, warn: Warn): number | string;
}

type Warn = (message: string) => void;

function specs(): SettingSpec[] {
  const out: SettingSpec[] = [];
  for (const name of NAMES) {
    out.push({
      key: name,
      kind: "run",
      default: RUN_DEFAULTS[name],
      installWide: false,
      read: (g, t, w) => runConfig(g, t, w)[name],
    });
  }
  out.push({
    key: "group",
    kind: "run",
    default: "",
    installWide: false,
    read: (g, t, w) => readGroup(g, t, w) ?? "",
  });
  for (const [field, key] of Object.entries(LIMIT_KEYS) as [keyof SandboxLimits, string][]) {
    out.push({
      key,
      kind: "limit",
      default: DEFAULT_LIMITS[field],
      installWide: false,
      read: (g, t, w) => readLimits(g, t, w)[field] ?? DEFAULT_LIMITS[field],
    });
  }
  for (const [field, key] of Object.entries(QUOTA_KEYS) as [keyof typeof QUOTA_KEYS, string][]) {
    out.push({
      key,
      kind: "quota",
      default: DEFAULT_QUOTAS[field],
      installWide: INSTALL_WIDE.has(field),
      read: (g, t, w) => readQuotas(g, t, w)[field],
    });
  }
  return out;
}

/**
 * Every per-task setting: the run settings (`ttl`, `refresh`, `restart`,
 * `retry`, `max_retry`, `group`), the sandbox limits (host/bridge/limits.ts) and the
 * quotas (host/capabilities/quotas.ts), in that order. Each is read by the
 * same code the host uses, so what `moat script config` shows is what a run
 * gets.
 */
export const SETTINGS: readonly Readonly<SettingSpec>[] = Object.freeze(specs());

const BY_KEY = new Map(SETTINGS.map((s) => [s.key, s]));

/** Whether `key` names a per-task setting. */
export function isSettingKey(key: string): boolean {
  return BY_KEY.has(key);
}

/**
 * The settings in force for a task with keys `task`, under `/config/run`
 * keys `global`: value, source and default of each, and the stored values
 * that are ignored (with the reason the host logs).
 */
export function settingRows(
  global: Record<string, string>,
  task: Record<string, string>,
): SettingRow[] {
  return SETTINGS.map((spec) => {
    const ignored: string[] = [];
    const value = spec.read(
      pick(global, spec.key),
      pick(task, spec.key),
      (m) => ignored.push(m.replace(/^ignoring /, "")),
    );
    const valid = (src: Record<string, string>, where: "global" | "task") => {
      let ok = true;
      const one = pick(src, spec.key);
      spec.read(where === "global" ? one : {}, where === "task" ? one : {}, () => ok = false);
      return ok && one[spec.key] !== undefined;
    };
    const source: SettingSource = valid(task, "task")
      ? "task"
      : valid(global, "global")
      ? "/config/run"
      : "default";
    return {
      key: spec.key,
      kind: spec.kind,
      value,
      source,
      default: spec.default,
      installWide: spec.installWide,
      ...(task[spec.key] !== undefined ? { task: task[spec.key] } : {}),
      ...(global[spec.key] !== undefined ? { global: global[spec.key] } : {}),
      ignored,
    };
  });
}

function pick(src: Record<string, string>, key: string): Record<string, string> {
  const v = src[key];
  return v === undefined ? {} : { [key]: v };
}

/**
 * Check a value for a task's setting `key` as the host will read it; throws
 * a `RangeError` naming the key: an unknown key, a value the host would
 * ignore (not a number, below the minimum), or an install-wide quota.
 */
export function checkSetting(key: string, text: string): void {
  const spec = BY_KEY.get(key);
  if (!spec) {
    throw new RangeError(
      `unknown setting "${key}"; the settings are ${SETTINGS.map((s) => s.key).join(", ")}`,
    );
  }
  let why: string | undefined;
  spec.read({}, { [key]: text }, (m) => {
    // "ignoring task KEY = "TEXT": WHY" -> WHY
    const head = `ignoring task ${key} = "${text}": `;
    why ??= m.startsWith(head) ? m.slice(head.length) : m;
  });
  if (why !== undefined) throw new RangeError(`cannot set ${key} = "${text}": ${why}`);
}

/** The `/config/run/<key>` values, as stored text. */
export async function readGlobalSettings(
  store: Store,
  layout: Layout,
): Promise<Record<string, string>> {
  const prefix = layout.runConfigPrefix;
  const { kvs } = await store.range(prefix);
  const out: Record<string, string> = {};
  for (const kv of kvs) out[kv.key.slice(prefix.length)] = kv.value;
  return out;
}
