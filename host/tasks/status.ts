/**
 * Status records of task runs (`/status/run/<path>/:task/`) and the state
 * `moat status` shows for them.
 *
 * @module
 */

import type { Store } from "../store/store.ts";
import { Layout, STATUS_KEYS } from "../layout.ts";

/** What `moat status` shows for a task. */
export type ShownState = "run" | "ok" | "error" | "fail" | "crash" | "new";

/** One row of `moat status`. */
export interface StatusRow {
  /** The task path below `/task/`. */
  path: string;
  /** What the task is doing, or how its last run ended. */
  state: ShownState;
  /** Unix seconds since when the state holds (started or stopped); 0 if never. */
  since: number;
  /** The last run's message; "" when none. */
  message: string;
  /** Who holds `running` (while state is "run"). */
  runner?: string;
  /** Unix seconds when the last run started. */
  started?: number;
  /** Unix seconds when the last run ended. */
  stopped?: number;
  /**
   * `started` of the last run that crashed (its host died): the host that
   * took the task over keeps it, since its own `started` replaces the
   * evidence. Shown with "run" rows.
   */
  crashed?: number;
}

/** Derive the shown state from the keys of one status directory. */
export function shownState(path: string, keys: Map<string, string>): StatusRow {
  const started = num(keys.get(STATUS_KEYS.started));
  const stopped = num(keys.get(STATUS_KEYS.stopped));
  const message = keys.get(STATUS_KEYS.message) ?? "";
  const running = keys.get(STATUS_KEYS.running);
  const crashed = num(keys.get(STATUS_KEYS.crashed));
  const extra = crashed !== undefined ? { crashed } : {};
  if (running !== undefined) {
    let runner = running;
    try {
      const r = JSON.parse(running) as { host?: unknown; pid?: unknown };
      runner = `${String(r.host)} pid ${String(r.pid)}`;
    } catch {
      // A hand-written value: show it as it is.
    }
    return {
      path,
      state: "run",
      since: started ?? 0,
      message: "",
      runner,
      ...opt(started, stopped),
      ...extra,
    };
  }
  if (started === undefined) {
    return { path, state: "new", since: 0, message: "", ...opt(started, stopped) };
  }
  // Started, not running, and no end recorded after that start: the run
  // ended without saying how (its host died).
  if (stopped === undefined || stopped < started) {
    return {
      path,
      state: "crash",
      since: started,
      message: "started but neither running nor stopped: its host died",
      ...opt(started, stopped),
      ...extra,
    };
  }
  const s = keys.get(STATUS_KEYS.state);
  const state: ShownState = s === "ok" || s === "error" || s === "fail" ? s : "crash";
  return { path, state, since: stopped, message, ...opt(started, stopped), ...extra };
}

function num(s: string | undefined): number | undefined {
  if (s === undefined) return undefined;
  const n = Number(s);
  return Number.isFinite(n) ? n : undefined;
}

function opt(started: number | undefined, stopped: number | undefined) {
  return {
    ...(started !== undefined ? { started } : {}),
    ...(stopped !== undefined ? { stopped } : {}),
  };
}

/**
 * Status rows of every script task below `prefix` (a task path prefix),
 * including tasks that never ran ("new").
 */
export async function readStatus(
  store: Store,
  layout: Layout,
  prefix = "",
): Promise<StatusRow[]> {
  const dirs = new Map<string, Map<string, string>>();
  const eachTagged = async (
    base: string,
    fn: (path: string, rest: string, value: string) => void,
  ) => {
    const { kvs } = await store.range(base + prefix);
    for (const kv of kvs) {
      const split = Layout.taskOf(kv.key, base);
      if (split) fn(split.path, split.rest, kv.value);
    }
  };
  const dir = (path: string) => {
    let m = dirs.get(path);
    if (!m) dirs.set(path, m = new Map());
    return m;
  };
  await eachTagged(layout.tasksPrefix, (path) => void dir(path));
  // Status of tasks that no longer exist is shown too, as long as it is kept.
  await eachTagged(layout.statusPrefix, (path, rest, value) => void dir(path).set(rest, value));
  return [...dirs].sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0)
    .map(([path, keys]) => shownState(path, keys));
}
