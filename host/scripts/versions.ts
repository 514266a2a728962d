/**
 * Which code of a script runs, and the host's side of code changes: a
 * `new_code` written by hand is checked and promoted, or rejected with an
 * error recorded on the script while the running version stays.
 *
 * @module
 */

import type { Store } from "../store/store.ts";
import { type Layout, SCRIPT_KEYS } from "../layout.ts";
import type { Clock } from "../time/clock.ts";
import type { LogLevel } from "../log.ts";
import {
  checkScript,
  type Diagnostic,
  isLanguage,
  type Language,
  ScriptCheckError,
} from "./check.ts";
import { DefinitionError, MissingScriptError, unixText } from "./definitions.ts";
import type { TypeCheckInput } from "./typecheck.ts";
import { typeCheckApart, TypeCheckUnavailableError } from "./typecheck_apart.ts";

/** The key (below the script's `:code/`) where a rejected `new_code` is recorded. */
export const NEW_CODE_ERROR = `${SCRIPT_KEYS.errors}new_code`;

/** Loads scripts for running and promotes proposed versions. */
export class CodeVersions {
  #store: Store;
  #layout: Layout;
  #clock: Clock;
  #log: (level: LogLevel, message: string) => void;
  #typeCheck: (inputs: TypeCheckInput[]) => Promise<Diagnostic[][]>;
  /** Transpiled code by language + source, so restarts do not check again. */
  #cache = new Map<string, string>();

  constructor(
    store: Store,
    layout: Layout,
    options: {
      clock: Clock;
      log: (level: LogLevel, message: string) => void;
      /**
       * The type check of a proposed `new_code`: each input's problems.
       * @default {@linkcode typeCheckApart} (a Worker, as `moat script def add` checks)
       */
      typeCheck?: (inputs: TypeCheckInput[]) => Promise<Diagnostic[][]>;
    },
  ) {
    this.#store = store;
    this.#layout = layout;
    this.#clock = options.clock;
    this.#log = options.log;
    this.#typeCheck = options.typeCheck ?? typeCheckApart;
  }

  /** The JavaScript of the version of `name` that should run now. */
  async load(name: string): Promise<{ script: string; js: string }> {
    let dir: string;
    try {
      dir = this.#layout.scriptDir(name);
    } catch (e) {
      throw new DefinitionError(`the task names an invalid script: ${(e as Error).message}`);
    }
    const { kvs } = await this.#store.range(dir);
    const keys = new Map(kvs.map((kv) => [kv.key.slice(dir.length), kv.value]));
    if (!keys.has(SCRIPT_KEYS.code)) throw new MissingScriptError(name);
    const current = keys.get(SCRIPT_KEYS.current) ?? "current";
    const key = current === "old"
      ? SCRIPT_KEYS.oldCode
      : current === "new"
      ? SCRIPT_KEYS.newCode
      : SCRIPT_KEYS.code;
    const code = keys.get(key);
    if (code === undefined) {
      throw new DefinitionError(`script "${name}" has current = ${current} but no ${key}`);
    }
    const lang = keys.get(SCRIPT_KEYS.language) ?? "typescript";
    const language: Language = isLanguage(lang) ? lang : "typescript";
    return { script: name, js: this.#compile(name, code, language) };
  }

  #compile(name: string, code: string, language: Language): string {
    const cacheKey = `${language}\u0000${code}`;
    const hit = this.#cache.get(cacheKey);
    if (hit !== undefined) return hit;
    const js = checkScript(name, code, language);
    if (this.#cache.size > 256) this.#cache.clear();
    this.#cache.set(cacheKey, js);
    return js;
  }

  /**
   * Check `new_code` of `name` as `moat script def add` checks code (the
   * code check, then the type check against the moat API) and promote it
   * (`old_code` ← `code` ← `new_code`), or record why not under
   * `error/new_code`. Several hosts may try at once: the transaction lets
   * exactly one of them promote. When the type checker cannot run at all,
   * the host logs so and promotes on the code check alone.
   */
  async promote(name: string): Promise<"promoted" | "rejected" | "none"> {
    try {
      const dir = this.#layout.scriptDir(name);
      const { kvs } = await this.#store.range(dir);
      const byKey = new Map(kvs.map((kv) => [kv.key.slice(dir.length), kv]));
      const proposed = byKey.get(SCRIPT_KEYS.newCode);
      const code = byKey.get(SCRIPT_KEYS.code);
      if (!proposed || !code) return "none";
      if (byKey.get(SCRIPT_KEYS.current)?.value === "new") return "none";
      const lang = byKey.get(SCRIPT_KEYS.language)?.value ?? "typescript";
      const language: Language = isLanguage(lang) ? lang : "typescript";
      const refusal = await this.#check(name, proposed.value, language);
      if (refusal !== undefined) {
        await this.#store.txn(
          [{
            key: dir + SCRIPT_KEYS.newCode,
            target: "modRevision",
            op: "==",
            value: proposed.modRevision,
          }],
          [{ type: "put", key: dir + NEW_CODE_ERROR, value: refusal.message }],
        );
        this.#log(
          "warn",
          `new code of script ${name} rejected; the current version stays:\n${refusal.message}`,
        );
        return "rejected";
      }
      const res = await this.#store.txn(
        [
          {
            key: dir + SCRIPT_KEYS.newCode,
            target: "modRevision",
            op: "==",
            value: proposed.modRevision,
          },
          { key: dir + SCRIPT_KEYS.code, target: "modRevision", op: "==", value: code.modRevision },
        ],
        [
          { type: "put", key: dir + SCRIPT_KEYS.oldCode, value: code.value },
          { type: "put", key: dir + SCRIPT_KEYS.code, value: proposed.value },
          { type: "put", key: dir + SCRIPT_KEYS.timestamp, value: unixText(this.#clock.now()) },
          { type: "delete", key: dir + SCRIPT_KEYS.newCode },
          { type: "delete", key: dir + NEW_CODE_ERROR },
        ],
      );
      if (res.succeeded) this.#log("info", `promoted new code of script ${name}`);
      return res.succeeded ? "promoted" : "none";
    } catch (e) {
      this.#log("error", `could not promote new code of script ${name}: ${(e as Error).message}`);
      return "none";
    }
  }

  /** Why `code` may not run, as `def add` would say it; `undefined` when it may. */
  async #check(
    name: string,
    code: string,
    language: Language,
  ): Promise<ScriptCheckError | undefined> {
    try {
      this.#compile(name, code, language);
    } catch (e) {
      if (e instanceof ScriptCheckError) return e;
      throw e;
    }
    let problems: Diagnostic[];
    try {
      [problems = []] = await this.#typeCheck([{ file: name, code, language }]);
    } catch (e) {
      if (!(e instanceof TypeCheckUnavailableError)) throw e;
      this.#log(
        "warn",
        `new code of script ${name} not type-checked (${e.message}); ` +
          "promoting it on the code check alone",
      );
      return undefined;
    }
    return problems.length > 0 ? new ScriptCheckError(name, problems) : undefined;
  }

  /** Forget cached code. */
  close(): Promise<void> {
    this.#cache.clear();
    return Promise.resolve();
  }
}
