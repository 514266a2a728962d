/**
 * Script tasks in the store: `/task/<path>/:task/` with taskdef
 * `task/script`, kept in step with the script's `tasks/` index.
 *
 * @module
 */

import type { Compare, Store, TxnOp } from "../store/store.ts";
import { checkVarName, parseName } from "../names.ts";
import { isValueType, parseCliValue } from "../codec.ts";
import { DefinitionError, type ScriptDefs } from "../scripts/definitions.ts";
import { Layout, SCRIPT_KEYS, TASK_KEYS } from "../layout.ts";

/** The taskdef of script tasks. */
export const SCRIPT_TASKDEF = "task/script";

/** What is stored about one script task. */
export interface TaskInfo {
  /** The task path below `/task/`, starting with its host. */
  path: string;
  /** The task's kind; `task/script` for script tasks. */
  taskdef: string;
  /** The name of the script the task runs. */
  script: string;
  /** The task's id in the script's `tasks/`. */
  scriptLoc: string;
  /** Its description; "" when none. */
  descr: string;
  /** `data/<var>` as stored text. */
  data: Record<string, string>;
  /** Every other key below `:task/` (per-task settings such as `ttl`). */
  other: Record<string, string>;
}

/** Parse `key=value` arguments; `key=` means "delete key" (value undefined). */
export function parseAssignments(args: string[]): [string, string | undefined][] {
  return args.map((a) => {
    const eq = a.indexOf("=");
    if (eq <= 0) throw new RangeError(`"${a}" is not key=value`);
    const key = checkVarName(a.slice(0, eq));
    const value = a.slice(eq + 1);
    return [key, value === "" ? undefined : value];
  });
}

/** Script tasks over a store. */
export class TaskDefs {
  #store: Store;
  #layout: Layout;
  #scripts: ScriptDefs;

  /** The task definitions in `store`; `scripts` keeps each script's `tasks/` in step. */
  constructor(store: Store, layout: Layout, scripts: ScriptDefs) {
    this.#store = store;
    this.#layout = layout;
    this.#scripts = scripts;
  }

  /** Read one task, or `undefined`. */
  async get(path: string): Promise<TaskInfo | undefined> {
    return (await this.read(path)).task;
  }

  /** Like `get`, with the store revision it was read at. */
  async read(path: string): Promise<{ task: TaskInfo | undefined; revision: number }> {
    const dir = this.#layout.taskDir(path);
    const { kvs, revision } = await this.#store.range(dir);
    if (kvs.length === 0) return { task: undefined, revision };
    const task = toTask(path, new Map(kvs.map((kv) => [kv.key.slice(dir.length), kv.value])));
    return { task, revision };
  }

  /** Like `get`, but only script tasks, and a missing one is an error. */
  async require(path: string): Promise<TaskInfo> {
    const t = await this.get(path);
    if (!t) throw new DefinitionError(`task "${path}" does not exist`);
    if (t.taskdef !== SCRIPT_TASKDEF) {
      throw new DefinitionError(`task "${path}" is not a script task (taskdef "${t.taskdef}")`);
    }
    return t;
  }

  /** Every script task whose path starts with `prefix`, sorted by path. */
  async list(prefix = ""): Promise<TaskInfo[]> {
    const base = this.#layout.tasksPrefix;
    const { kvs } = await this.#store.range(base + prefix);
    const byPath = new Map<string, Map<string, string>>();
    for (const kv of kvs) {
      const split = Layout.taskOf(kv.key, base);
      if (!split) continue;
      let m = byPath.get(split.path);
      if (!m) byPath.set(split.path, m = new Map());
      m.set(split.rest, kv.value);
    }
    return [...byPath].map(([p, m]) => toTask(p, m))
      .filter((t) => t.taskdef === SCRIPT_TASKDEF)
      .sort((a, b) => a.path < b.path ? -1 : a.path > b.path ? 1 : 0);
  }

  /**
   * Create a script task. The script must exist; `data` values are checked
   * against the script's declared types.
   */
  async add(
    script: string,
    path: string,
    options: { data?: [string, string][]; descr?: string } = {},
  ): Promise<TaskInfo> {
    const segs = parseName(path, "task");
    if (segs.length < 2) {
      throw new RangeError(
        `task name "${path}" must start with the host that runs it, e.g. "myhost/${path}"`,
      );
    }
    const info = await this.#scripts.require(script);
    const data = options.data ?? [];
    for (const [k, v] of data) {
      const t = info.types[k];
      parseCliValue(v, t !== undefined && isValueType(t) ? t : undefined, `value of "${k}"`);
    }
    const dir = this.#layout.taskDir(path);
    const sdir = this.#layout.scriptDir(script);
    const loc = crypto.randomUUID().replaceAll("-", "").slice(0, 12);
    const guards: Compare[] = [
      { key: dir + TASK_KEYS.taskdef, target: "createRevision", op: "==", value: 0 },
      { key: sdir + SCRIPT_KEYS.code, target: "createRevision", op: ">", value: 0 },
    ];
    const ops: TxnOp[] = [
      { type: "put", key: dir + TASK_KEYS.taskdef, value: SCRIPT_TASKDEF },
      { type: "put", key: dir + TASK_KEYS.script, value: script },
      { type: "put", key: dir + TASK_KEYS.scriptLoc, value: loc },
      { type: "put", key: dir + TASK_KEYS.descr, value: options.descr ?? "" },
      ...data.map(([k, v]): TxnOp => ({ type: "put", key: `${dir}data/${k}`, value: v })),
      { type: "put", key: `${sdir}tasks/${loc}`, value: path },
    ];
    const res = await this.#store.txn(guards, ops);
    if (!res.succeeded) {
      if (await this.get(path)) throw new DefinitionError(`task "${path}" already exists`);
      throw new DefinitionError(`script "${script}" does not exist`);
    }
    return (await this.get(path))!;
  }

  /** Delete a script task and its entry in the script's `tasks/`. */
  async delete(path: string): Promise<void> {
    const t = await this.require(path);
    const ops: TxnOp[] = [{ type: "delete", key: this.#layout.taskDir(path), prefix: true }];
    if (t.script && t.scriptLoc) {
      try {
        ops.push({
          type: "delete",
          key: `${this.#layout.scriptDir(t.script)}tasks/${t.scriptLoc}`,
        });
      } catch {
        // A hand-edited, invalid script name: there is no index entry to remove.
      }
    }
    await this.#store.txn([], ops);
  }

  /**
   * Set (`value` given) or delete (`undefined`) data values of a task;
   * returns the task's data afterwards.
   */
  async param(
    path: string,
    changes: [string, string | undefined][],
  ): Promise<Record<string, string>> {
    const t = await this.require(path);
    if (changes.length === 0) return t.data;
    const info = t.script ? await this.#scripts.info(t.script) : undefined;
    const dir = this.#layout.taskDir(path);
    const ops: TxnOp[] = [];
    for (const [k, v] of changes) {
      if (v === undefined) {
        ops.push({ type: "delete", key: `${dir}data/${k}` });
      } else {
        const type = info?.types[k];
        parseCliValue(
          v,
          type !== undefined && isValueType(type) ? type : undefined,
          `value of "${k}"`,
        );
        ops.push({ type: "put", key: `${dir}data/${k}`, value: v });
      }
    }
    await this.#store.txn(
      [{ key: dir + TASK_KEYS.taskdef, target: "createRevision", op: ">", value: 0 }],
      ops,
    );
    return (await this.require(path)).data;
  }
}

/** The keys of a task that `TaskInfo` has fields for; the rest are its settings. */
const OWN_KEYS: ReadonlySet<string> = new Set([
  TASK_KEYS.taskdef,
  TASK_KEYS.script,
  TASK_KEYS.scriptLoc,
  TASK_KEYS.descr,
]);

function toTask(path: string, keys: Map<string, string>): TaskInfo {
  const data: Record<string, string> = {};
  const other: Record<string, string> = {};
  for (const [k, v] of keys) {
    if (k.startsWith(TASK_KEYS.data)) data[k.slice(TASK_KEYS.data.length)] = v;
    else if (!OWN_KEYS.has(k)) other[k] = v;
  }
  return {
    path,
    taskdef: keys.get(TASK_KEYS.taskdef) ?? "",
    script: keys.get(TASK_KEYS.script) ?? "",
    scriptLoc: keys.get(TASK_KEYS.scriptLoc) ?? "",
    descr: keys.get(TASK_KEYS.descr) ?? "",
    data,
    other,
  };
}
