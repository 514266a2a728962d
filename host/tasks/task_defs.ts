/**
 * Script tasks in the store: `/task/<path>/:task/` with taskdef
 * `task/script`, kept in step with the script's `tasks/` index.
 *
 * @module
 */

import type { Compare, Store, TxnOp } from "../store/store.ts";
import { checkVarName, parseName } from "../names.ts";
import { decodeTyped, decodeUntyped, isValueType, parseCliValue, type Value } from "../codec.ts";
import { DefinitionError, SCRIPT_TASKDEF, type ScriptDefs } from "../scripts/definitions.ts";
import { inTree, Layout, SCRIPT_KEYS, TASK_KEYS } from "../layout.ts";
import { forgetTask } from "./status.ts";
import { checkSetting, isSettingKey } from "./run_config.ts";

export { SCRIPT_TASKDEF };

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
  /**
   * `secret/<var>` as stored text: the values of `secret` variables. Never
   * print them unless the user asked for them by name (docs/security.md).
   */
  secrets: Record<string, string>;
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

/**
 * The `RangeError` for a secret value given as a `key=value` word: a command
 * line ends up in shell histories and process lists.
 */
function secretOnCommandLine(key: string, script: string): RangeError {
  return new RangeError(
    `"${key}" is a secret (script "${script}" declares it so): it cannot be given on ` +
      `the command line; use moat script param TASK ${key} --secret-file FILE ` +
      `(or --secret-file - for standard input)`,
  );
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

  /**
   * Every script task in the tree below `prefix` (a tree path: `h1/porch`
   * holds `h1/porch` and `h1/porch/light`, not `h1/porchsvc`), sorted by path.
   */
  async list(prefix = ""): Promise<TaskInfo[]> {
    const base = this.#layout.tasksPrefix;
    const { kvs } = await this.#store.range(base + prefix.replace(/\/+$/, ""));
    const byPath = new Map<string, Map<string, string>>();
    for (const kv of kvs) {
      const split = Layout.taskOf(kv.key, base);
      if (!split || !inTree(split.path, prefix)) continue;
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
    options: {
      data?: [string, string][];
      descr?: string;
      /** Per-task settings (`restart`, `retry`, …; see run_config.ts), checked first. */
      settings?: [string, string][];
    } = {},
  ): Promise<TaskInfo> {
    const segs = parseName(path, "task");
    if (segs.length < 2) {
      throw new RangeError(
        `task name "${path}" must start with the host that runs it, e.g. "myhost/${path}"`,
      );
    }
    const settings = options.settings ?? [];
    for (const [k, v] of settings) checkSetting(k, v);
    const info = await this.#scripts.require(script);
    const data = options.data ?? [];
    for (const [k, v] of data) {
      if (info.types[k] === "secret") throw secretOnCommandLine(k, script);
      checkTyped(k, v, info.types[k], script);
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
      ...settings.map(([k, v]): TxnOp => ({ type: "put", key: dir + k, value: v.trim() })),
      { type: "put", key: `${sdir}tasks/${loc}`, value: path },
    ];
    const res = await this.#store.txn(guards, ops);
    if (!res.succeeded) {
      if (await this.get(path)) throw new DefinitionError(`task "${path}" already exists`);
      throw new DefinitionError(`script "${script}" does not exist`);
    }
    return (await this.get(path))!;
  }

  /**
   * Delete a script task, its entry in the script's `tasks/`, and then its
   * status and error records (`forgetTask`): a deleted task leaves no live
   * trace. A host running it stops it when its watch sees it go.
   */
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
    await forgetTask(this.#store, this.#layout, path);
  }

  /**
   * Set (`value` given) or delete (`undefined`) per-task settings (run
   * settings, sandbox limits, quotas: run_config.ts); every change is
   * checked before anything is written (a `RangeError` naming the key).
   */
  async setSettings(path: string, changes: [string, string | undefined][]): Promise<TaskInfo> {
    for (const [k, v] of changes) {
      if (v === undefined) {
        if (!isSettingKey(k)) checkSetting(k, "");
      } else checkSetting(k, v);
    }
    const t = await this.require(path);
    if (changes.length === 0) return t;
    const dir = this.#layout.taskDir(path);
    const res = await this.#store.txn(
      [{ key: dir + TASK_KEYS.taskdef, target: "createRevision", op: ">", value: 0 }],
      changes.map(([k, v]): TxnOp =>
        v === undefined
          ? { type: "delete", key: dir + k }
          : { type: "put", key: dir + k, value: v.trim() }
      ),
    );
    if (!res.succeeded) throw new DefinitionError(`task "${path}" does not exist`);
    return await this.require(path);
  }

  /**
   * The task's data values read as a script reads them: by the script's
   * declared type (`types/<key>`), else as JSON when the text parses, else
   * the text. A stored text that does not fit its type is a `TypeError`
   * naming the key. With `only`, just that key (if the task has it).
   */
  async values(path: string, only?: string): Promise<Record<string, Value>> {
    const t = await this.require(path);
    const info = t.script ? await this.#scripts.info(t.script) : undefined;
    const out: Record<string, Value> = {};
    for (const [k, text] of Object.entries(t.data)) {
      if (only !== undefined && k !== only) continue;
      const type = info?.types[k];
      out[k] = type !== undefined && isValueType(type)
        ? decodeTyped(text, type, `data value "${k}" of task "${path}" (type ${type})`)
        : decodeUntyped(text);
    }
    return out;
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
      if (info?.types[k] === "secret") {
        // Deleting a secret is harmless; setting one goes through `setSecret`.
        if (v !== undefined) throw secretOnCommandLine(k, t.script);
        ops.push({ type: "delete", key: dir + TASK_KEYS.secret + k });
      } else if (v === undefined) {
        ops.push({ type: "delete", key: `${dir}data/${k}` });
      } else {
        checkTyped(k, v, info?.types[k], t.script);
        ops.push({ type: "put", key: `${dir}data/${k}`, value: v });
      }
    }
    await this.#store.txn(
      [{ key: dir + TASK_KEYS.taskdef, target: "createRevision", op: ">", value: 0 }],
      ops,
    );
    return (await this.require(path)).data;
  }

  /**
   * Set (`value` given) or delete (`undefined`) the secret value `key` of a
   * task (`secret/<key>`); the task's script must declare `key` as
   * `secret` (else a `RangeError` naming it).
   */
  async setSecret(path: string, key: string, value: string | undefined): Promise<void> {
    checkVarName(key);
    const t = await this.require(path);
    const info = t.script ? await this.#scripts.info(t.script) : undefined;
    if (info?.types[key] !== "secret") {
      throw new RangeError(
        `"${key}" is not a secret: script "${t.script}" does not declare types/${key} as secret`,
      );
    }
    const dir = this.#layout.taskDir(path);
    const res = await this.#store.txn(
      [{ key: dir + TASK_KEYS.taskdef, target: "createRevision", op: ">", value: 0 }],
      [
        value === undefined
          ? { type: "delete", key: dir + TASK_KEYS.secret + key }
          : { type: "put", key: dir + TASK_KEYS.secret + key, value },
      ],
    );
    if (!res.succeeded) throw new DefinitionError(`task "${path}" does not exist`);
  }
}

/**
 * Check text given for data value `key` against the script's declared type
 * `type` (if any); a text that does not parse is a `RangeError` (a bad
 * argument) naming the key and the type.
 */
function checkTyped(key: string, text: string, type: string | undefined, script: string): void {
  if (type === undefined || !isValueType(type)) return;
  try {
    parseCliValue(text, type, `value of "${key}"`);
  } catch (e) {
    throw new RangeError(
      `${(e as Error).message} (script "${script}" declares ${key} as ${type})`,
      { cause: e },
    );
  }
}

/** The keys of a task that `TaskInfo` has fields for; the rest are its settings. */
const OWN_KEYS: ReadonlySet<string> = new Set([
  TASK_KEYS.taskdef,
  TASK_KEYS.script,
  TASK_KEYS.scriptLoc,
  TASK_KEYS.descr,
]);

/** A task from its keys below `:task/` (relative to the task's folder). */
export function toTask(path: string, keys: Map<string, string>): TaskInfo {
  const data: Record<string, string> = {};
  const secrets: Record<string, string> = {};
  const other: Record<string, string> = {};
  for (const [k, v] of keys) {
    if (k.startsWith(TASK_KEYS.data)) data[k.slice(TASK_KEYS.data.length)] = v;
    else if (k.startsWith(TASK_KEYS.secret)) secrets[k.slice(TASK_KEYS.secret.length)] = v;
    else if (!OWN_KEYS.has(k)) other[k] = v;
  }
  return {
    path,
    taskdef: keys.get(TASK_KEYS.taskdef) ?? "",
    script: keys.get(TASK_KEYS.script) ?? "",
    scriptLoc: keys.get(TASK_KEYS.scriptLoc) ?? "",
    descr: keys.get(TASK_KEYS.descr) ?? "",
    data,
    secrets,
    other,
  };
}
