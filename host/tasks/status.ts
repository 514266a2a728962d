/**
 * Status records of task runs (`/status/run/<path>/:task/`) and the state
 * `moat status` shows for them.
 *
 * @module
 */

import type { Store, TxnOp } from "../store/store.ts";
import { ERROR_RECORD_KEYS, inTree, Layout, STATUS_KEYS, TASK_KEYS } from "../layout.ts";
import { parseRecord } from "../capabilities/schedules.ts";

/** A recorded schedule of a task (`schedule/<id>`, docs/time.md "Catch-up"). */
export interface ScheduleStatus {
  /** The schedule's id. */
  id: string;
  /** Unix seconds its last completed firing was due. */
  due: number;
  /** Whether that firing was a catch-up. */
  late: boolean;
  /** Unix seconds that firing completed. */
  done: number;
  /** Unix seconds of the next due time after it, as computed then; null when none. */
  next: number | null;
}

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
  /**
   * True when the task itself no longer exists: a status left behind
   * (written by hand, or by a host that has not cleaned it yet). Such a row
   * is never a live task; `moat status` says so in its message.
   */
  gone?: true;
  /** The task's recorded schedules, by id (absent when none). */
  schedules?: ScheduleStatus[];
}

/** The schedule records among the keys of one status directory. */
function schedulesOf(keys: Map<string, string>): { schedules?: ScheduleStatus[] } {
  const out: ScheduleStatus[] = [];
  for (const [key, value] of keys) {
    if (!key.startsWith(STATUS_KEYS.schedules)) continue;
    const r = parseRecord(value);
    if (r === undefined) continue;
    const id = key.slice(STATUS_KEYS.schedules.length);
    out.push({ id, due: r.due, late: r.late, done: r.done, next: r.next });
  }
  out.sort((a, b) => a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
  return out.length > 0 ? { schedules: out } : {};
}

/** Derive the shown state from the keys of one status directory. */
export function shownState(path: string, keys: Map<string, string>): StatusRow {
  const started = num(keys.get(STATUS_KEYS.started));
  const stopped = num(keys.get(STATUS_KEYS.stopped));
  const message = keys.get(STATUS_KEYS.message) ?? "";
  const running = keys.get(STATUS_KEYS.running);
  const crashed = num(keys.get(STATUS_KEYS.crashed));
  const extra = { ...(crashed !== undefined ? { crashed } : {}), ...schedulesOf(keys) };
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
    return { path, state: "new", since: 0, message: "", ...opt(started, stopped), ...extra };
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
 * Status rows of every task in the tree below `prefix` (a tree path:
 * `h1/porch` holds `h1/porch` and `h1/porch/light`, not `h1/porchsvc`),
 * including tasks that never ran ("new"), and status directories whose task
 * is gone (marked `gone`).
 */
export async function readStatus(
  store: Store,
  layout: Layout,
  prefix = "",
): Promise<StatusRow[]> {
  const dirs = new Map<string, Map<string, string>>();
  const tasks = new Set<string>();
  const eachTagged = async (
    base: string,
    fn: (path: string, rest: string, value: string) => void,
  ) => {
    const { kvs } = await store.range(base + prefix.replace(/\/+$/, ""));
    for (const kv of kvs) {
      const split = Layout.taskOf(kv.key, base);
      if (split && inTree(split.path, prefix)) fn(split.path, split.rest, kv.value);
    }
  };
  const dir = (path: string) => {
    let m = dirs.get(path);
    if (!m) dirs.set(path, m = new Map());
    return m;
  };
  await eachTagged(layout.tasksPrefix, (path) => {
    tasks.add(path);
    dir(path);
  });
  await eachTagged(layout.statusPrefix, (path, rest, value) => void dir(path).set(rest, value));
  return [...dirs].sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0)
    .map(([path, keys]) => {
      const row = shownState(path, keys);
      return tasks.has(path) ? row : { ...row, gone: true as const };
    });
}

/**
 * Remove what the tree keeps about the runs of a deleted task: its status
 * directory (`/status/run/<path>/:task/`) and its error records (those its
 * `error/<tag>` pointers name, and any other whose `loc` is the task). One
 * transaction, made only while the task does not exist (a task created
 * again meanwhile keeps its new status). Returns whether anything was
 * removed. Called by the CLI when it deletes a task, and by the host when
 * its watch sees a task go (docs/etcd-layout.md, "Deleting a task").
 */
export async function forgetTask(store: Store, layout: Layout, path: string): Promise<boolean> {
  const sdir = layout.statusDir(path);
  const [status, records] = await Promise.all([
    store.range(sdir),
    store.range(layout.errorsPrefix),
  ]);
  const ops: TxnOp[] = [];
  const dirs = new Set<string>();
  for (const kv of status.kvs) {
    const rest = kv.key.slice(sdir.length);
    if (rest.startsWith(STATUS_KEYS.errors)) {
      const tag = rest.slice(STATUS_KEYS.errors.length);
      if (tag !== "" && !tag.includes("/") && kv.value !== "" && !kv.value.includes("/")) {
        dirs.add(`${layout.errorsPrefix}${tag}/${kv.value}/`);
      }
    }
  }
  for (const kv of records.kvs) {
    const parts = kv.key.slice(layout.errorsPrefix.length).split("/");
    if (parts.length === 3 && parts[2] === ERROR_RECORD_KEYS.loc && kv.value === path) {
      dirs.add(`${layout.errorsPrefix}${parts[0]}/${parts[1]}/`);
    }
  }
  if (status.kvs.length === 0 && dirs.size === 0) return false;
  for (const d of dirs) ops.push({ type: "delete", key: d, prefix: true });
  // The status directory goes last: until then, a retry finds the pointers.
  if (status.kvs.length > 0) ops.push({ type: "delete", key: sdir, prefix: true });
  const guard = {
    key: layout.taskDir(path) + TASK_KEYS.taskdef,
    target: "createRevision" as const,
    op: "==" as const,
    value: 0,
  };
  // etcd allows 128 operations per transaction (--max-txn-ops).
  for (let i = 0; i < ops.length; i += TXN_OPS) {
    const res = await store.txn([guard], ops.slice(i, i + TXN_OPS));
    if (!res.succeeded) return false;
  }
  return true;
}

/** Operations per transaction when many keys go at once (etcd's limit is 128). */
const TXN_OPS = 100;
