/**
 * The run settings of a task (`ttl`, `refresh`, `restart`, `retry`,
 * `max_retry`): `/config/run` defaults, overridden per task, and the
 * restart/retry policy they define.
 *
 * @module
 */

import { RUN_DEFAULTS, type RunSetting } from "../layout.ts";

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
