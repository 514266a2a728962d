/**
 * Script definitions in the store: adding, updating, reverting, listing and
 * deleting scripts under `/meta/script/<name>/:code/`. Every change is one
 * etcd transaction, guarded so that concurrent changes cannot interleave.
 *
 * @module
 */

import type { Store, TxnOp } from "../store/store.ts";
import { inTree, Layout, SCRIPT_KEYS, TASK_KEYS, TASK_TAG } from "../layout.ts";
import { checkName } from "../names.ts";
import { checkScript, isLanguage, type Language } from "./check.ts";
import { typeCheckScript } from "./typecheck.ts";

/** The taskdef of script tasks (host/tasks/task_defs.ts re-exports it). */
export const SCRIPT_TASKDEF = "task/script";

/**
 * The check of code about to be stored, once: syntax and imports, then, when
 * `typeCheck`, the types against the moat API. Throws `ScriptCheckError`.
 */
function checkCode(name: string, code: string, language: Language, typeCheck = false): void {
  checkSize(name, code);
  checkScript(name, code, language);
  if (typeCheck) typeCheckScript(name, code, language);
}
import type { Clock } from "../time/clock.ts";
import { SystemClock } from "../time/clock.ts";

/**
 * The largest script, in bytes of UTF-8: 512 KiB. `update` writes the new
 * code and the old one in one etcd transaction, and etcd refuses a request
 * over 1.5 MiB (its `--max-request-bytes` default), so two of these fit
 * with room to spare. Checked before anything is sent.
 */
export const MAX_SCRIPT_BYTES = 512 * 1024;

/** Refuse code larger than {@linkcode MAX_SCRIPT_BYTES} with a `RangeError` naming the script. */
export function checkSize(name: string, code: string): void {
  const bytes = new TextEncoder().encode(code).length;
  if (bytes > MAX_SCRIPT_BYTES) {
    throw new RangeError(
      `script "${name}" is ${bytes} bytes; a script may be at most ${MAX_SCRIPT_BYTES} bytes ` +
        `(${MAX_SCRIPT_BYTES / 1024} KiB): split it into libraries (moat.load)`,
    );
  }
}

/** What `ScriptDefs.info` and `list` return about one script. */
export interface ScriptInfo {
  /** The script's name (`/meta/script/<name>/:code`). */
  name: string;
  /** The language its code is written in. */
  language: Language;
  /** Its description; "" when none. */
  descr: string;
  /** Unix seconds. */
  created: number;
  /** Unix seconds of the last change of `code`. */
  timestamp: number;
  /** Whether an `old_code` exists (to revert to). */
  hasOld: boolean;
  /** Whether a `new_code` waits to be checked and promoted. */
  hasNew: boolean;
  /** Which version runs: current (default), old or new. */
  current: "current" | "old" | "new";
  /**
   * The back-references in `tasks/` (task paths by their `script_loc`), as
   * stored: a hint for other tools, stale after hand edits. Which tasks use
   * a script is `ScriptDefs.users()`, read from the tasks.
   */
  tasks: Record<string, string>;
  /** The script's declared variable types (`types/<var>`). */
  types: Record<string, string>;
  /** The script's default values (`values/<var>`), as stored text. */
  values: Record<string, string>;
}

/** Options shared by the stores' users. */
export interface DefsOptions {
  /** @default new SystemClock() */
  clock?: Clock;
}

/** A change that could not be made because of what is (or is not) stored. */
export class DefinitionError extends Error {
  /** Always `DefinitionError`. */
  override name = "DefinitionError";
  /** Make the error; `options.cause` is the underlying error. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
  }
}

/**
 * A task names a script that does not exist (it was deleted, or never
 * added): the task cannot run until the script is added again.
 */
export class MissingScriptError extends DefinitionError {
  /** Always `MissingScriptError`. */
  override name = "MissingScriptError";
  /** The script's name. */
  readonly script: string;
  /** Make the error for script `script`. */
  constructor(script: string, options?: ErrorOptions) {
    super(`script "${script}" does not exist`, options);
    this.script = script;
  }
}

/** Unix seconds as the decimal text stored in etcd (millisecond precision). */
export function unixText(ms: number): string {
  return (ms / 1000).toFixed(3);
}

/** Script definitions over a store. */
export class ScriptDefs {
  #store: Store;
  #layout: Layout;
  #clock: Clock;

  /** The script definitions in `store` below `layout`'s root. */
  constructor(store: Store, layout: Layout, options: DefsOptions = {}) {
    this.#store = store;
    this.#layout = layout;
    this.#clock = options.clock ?? new SystemClock();
  }

  /** Read everything about one script, or `undefined` when it does not exist. */
  async info(name: string): Promise<ScriptInfo | undefined> {
    const dir = this.#layout.scriptDir(name);
    const { kvs } = await this.#store.range(dir);
    const keys = new Map(kvs.map((kv) => [kv.key.slice(dir.length), kv.value]));
    return keys.has(SCRIPT_KEYS.code) ? toInfo(name, keys) : undefined;
  }

  /** Like `info`, but a missing script is a `DefinitionError`. */
  async require(name: string): Promise<ScriptInfo> {
    const info = await this.info(name);
    if (!info) throw new MissingScriptError(name);
    return info;
  }

  /**
   * Every script in the tree below `prefix` (a tree path: `porch` holds
   * `porch` and `porch/light`, not `porchsvc`), sorted by name.
   */
  async list(prefix = ""): Promise<ScriptInfo[]> {
    const { kvs } = await this.#store.range(
      this.#layout.scriptsPrefix + prefix.replace(/\/+$/, ""),
    );
    const byName = new Map<string, Map<string, string>>();
    for (const kv of kvs) {
      const split = Layout.splitTagged(kv.key, this.#layout.scriptsPrefix, ":code");
      if (!split || !inTree(split.name, prefix)) continue;
      let m = byName.get(split.name);
      if (!m) byName.set(split.name, m = new Map());
      m.set(split.rest, kv.value);
    }
    const out: ScriptInfo[] = [];
    for (const [name, keys] of [...byName].sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0)) {
      if (keys.has(SCRIPT_KEYS.code)) out.push(toInfo(name, keys));
    }
    return out;
  }

  /** The code of one version: "code" (default), "old" or "new". */
  async code(name: string, which: "code" | "old" | "new" = "code"): Promise<string> {
    await this.require(name);
    const key = this.#layout.scriptDir(name) +
      (which === "code"
        ? SCRIPT_KEYS.code
        : which === "old"
        ? SCRIPT_KEYS.oldCode
        : SCRIPT_KEYS.newCode);
    const kv = await this.#store.get(key);
    if (!kv) {
      throw new DefinitionError(`script "${name}" has no ${which === "old" ? "old" : "new"} code`);
    }
    return kv.value;
  }

  /** Store a new script after checking it; refuses an existing name. */
  async add(
    name: string,
    code: string,
    options: { language: Language; descr?: string; typeCheck?: boolean },
  ): Promise<void> {
    checkName(name, "script");
    checkCode(name, code, options.language, options.typeCheck);
    const dir = this.#layout.scriptDir(name);
    const now = unixText(this.#clock.now());
    const res = await this.#store.txn(
      [{ key: dir + SCRIPT_KEYS.code, target: "createRevision", op: "==", value: 0 }],
      [
        { type: "put", key: dir + SCRIPT_KEYS.code, value: code },
        { type: "put", key: dir + SCRIPT_KEYS.language, value: options.language },
        { type: "put", key: dir + SCRIPT_KEYS.descr, value: options.descr ?? "" },
        { type: "put", key: dir + SCRIPT_KEYS.created, value: now },
        { type: "put", key: dir + SCRIPT_KEYS.timestamp, value: now },
      ],
    );
    if (!res.succeeded) throw new DefinitionError(`script "${name}" already exists`);
  }

  /** Check new code and promote it: `old_code` ← `code` ← new. */
  async update(
    name: string,
    code: string,
    options: { language?: Language; typeCheck?: boolean } = {},
  ): Promise<void> {
    const dir = this.#layout.scriptDir(name);
    checkSize(name, code);
    const codeKv = await this.#store.get(dir + SCRIPT_KEYS.code);
    if (!codeKv) throw new MissingScriptError(name);
    const langKv = await this.#store.get(dir + SCRIPT_KEYS.language);
    const language = options.language ??
      (langKv && isLanguage(langKv.value) ? langKv.value : "typescript");
    checkCode(name, code, language, options.typeCheck);
    const ops: TxnOp[] = [
      { type: "put", key: dir + SCRIPT_KEYS.oldCode, value: codeKv.value },
      { type: "put", key: dir + SCRIPT_KEYS.code, value: code },
      { type: "put", key: dir + SCRIPT_KEYS.language, value: language },
      { type: "put", key: dir + SCRIPT_KEYS.timestamp, value: unixText(this.#clock.now()) },
      { type: "delete", key: dir + SCRIPT_KEYS.newCode },
    ];
    const res = await this.#store.txn(
      [{ key: dir + SCRIPT_KEYS.code, target: "modRevision", op: "==", value: codeKv.modRevision }],
      ops,
    );
    if (!res.succeeded) {
      throw new DefinitionError(`script "${name}" was changed meanwhile; try again`);
    }
  }

  /** Swap `code` and `old_code`. */
  async revert(name: string): Promise<void> {
    const dir = this.#layout.scriptDir(name);
    const codeKv = await this.#store.get(dir + SCRIPT_KEYS.code);
    if (!codeKv) throw new DefinitionError(`script "${name}" does not exist`);
    const oldKv = await this.#store.get(dir + SCRIPT_KEYS.oldCode);
    if (!oldKv) throw new DefinitionError(`script "${name}" has no old code to revert to`);
    const res = await this.#store.txn(
      [
        { key: dir + SCRIPT_KEYS.code, target: "modRevision", op: "==", value: codeKv.modRevision },
        {
          key: dir + SCRIPT_KEYS.oldCode,
          target: "modRevision",
          op: "==",
          value: oldKv.modRevision,
        },
      ],
      [
        { type: "put", key: dir + SCRIPT_KEYS.code, value: oldKv.value },
        { type: "put", key: dir + SCRIPT_KEYS.oldCode, value: codeKv.value },
        { type: "put", key: dir + SCRIPT_KEYS.timestamp, value: unixText(this.#clock.now()) },
      ],
    );
    if (!res.succeeded) {
      throw new DefinitionError(`script "${name}" was changed meanwhile; try again`);
    }
  }

  /**
   * The paths of the script tasks that name each script, sorted, read from
   * the tasks themselves (their `script` keys), not from the scripts'
   * `tasks/` back-references: a task made or deleted by hand counts as it
   * is. Only scripts with at least one task are in the map.
   */
  async users(): Promise<Map<string, string[]>> {
    const base = this.#layout.tasksPrefix;
    const { kvs } = await this.#store.range(base);
    const byPath = new Map<string, { taskdef?: string; script?: string }>();
    for (const kv of kvs) {
      const split = Layout.splitTagged(kv.key, base, TASK_TAG);
      if (!split) continue;
      if (split.rest !== TASK_KEYS.taskdef && split.rest !== TASK_KEYS.script) continue;
      let t = byPath.get(split.name);
      if (!t) byPath.set(split.name, t = {});
      if (split.rest === TASK_KEYS.taskdef) t.taskdef = kv.value;
      else t.script = kv.value;
    }
    const out = new Map<string, string[]>();
    for (const [path, t] of byPath) {
      if (t.taskdef !== SCRIPT_TASKDEF || t.script === undefined) continue;
      let l = out.get(t.script);
      if (!l) out.set(t.script, l = []);
      l.push(path);
    }
    for (const l of out.values()) l.sort();
    return out;
  }

  /**
   * Delete a script. While tasks use it (by their `script` key, see
   * `users`) this is refused, naming them, unless `force`. Returns the
   * paths of the tasks it leaves without their script: the hosts end
   * them with state `fail` and do not retry them until the script exists
   * again.
   */
  async delete(name: string, options: { force?: boolean } = {}): Promise<string[]> {
    await this.require(name);
    const users = (await this.users()).get(name) ?? [];
    if (users.length > 0 && !options.force) {
      throw new DefinitionError(
        `script "${name}" is used by ${users.length === 1 ? "task" : "tasks"} ${
          users.join(", ")
        }; delete ${users.length === 1 ? "it" : "them"} first or use --force`,
      );
    }
    await this.#store.delete(this.#layout.scriptDir(name), { prefix: true });
    return users;
  }
}

function toInfo(name: string, keys: Map<string, string>): ScriptInfo {
  const sub = (dir: string) => {
    const out: Record<string, string> = {};
    for (const [k, v] of keys) if (k.startsWith(dir)) out[k.slice(dir.length)] = v;
    return out;
  };
  const lang = keys.get(SCRIPT_KEYS.language) ?? "typescript";
  const current = keys.get(SCRIPT_KEYS.current);
  return {
    name,
    language: isLanguage(lang) ? lang : "typescript",
    descr: keys.get(SCRIPT_KEYS.descr) ?? "",
    created: Number(keys.get(SCRIPT_KEYS.created) ?? 0) || 0,
    timestamp: Number(keys.get(SCRIPT_KEYS.timestamp) ?? 0) || 0,
    hasOld: keys.has(SCRIPT_KEYS.oldCode),
    hasNew: keys.has(SCRIPT_KEYS.newCode),
    current: current === "old" || current === "new" ? current : "current",
    tasks: sub("tasks/"),
    types: sub(SCRIPT_KEYS.types),
    values: sub(SCRIPT_KEYS.values),
  };
}
