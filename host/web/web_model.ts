/**
 * What `moat web` shows, kept live from one etcd watch: a mirror of the
 * keys the page needs (tasks, run status, error records, the scripts' code
 * versions, hidden prefixes, the zone), and the views derived from it.
 *
 * Every string a script or etcd made is escaped here (host/text.ts) before
 * it leaves the server; the page also only ever sets it as text.
 *
 * @module
 */

import type { Store, WatchEvent } from "../store/store.ts";
import { WatchHub } from "../store/watch_hub.ts";
import {
  CODE_TAG,
  inTree,
  isSecretKey,
  Layout,
  SCRIPT_KEYS,
  STATUS_KEYS,
  TASK_KEYS,
} from "../layout.ts";
import { SECRET_MASK } from "../capabilities/secret_mask.ts";
import { type ShownState, shownState } from "../tasks/status.ts";
import { escapeControl } from "../text.ts";
import { decodeUntyped } from "../codec.ts";
import { ALWAYS_HIDDEN } from "../capabilities/script_view.ts";
import { type ErrorRecord, parseErrorRecords } from "../capabilities/error_records.ts";

/** One task as the page lists it. */
export interface TaskView {
  path: string;
  /** The host name: the first segment of the path. */
  host: string;
  state: ShownState;
  /** Unix seconds since when the state holds; 0 if never. */
  since: number;
  message: string;
  /** The script the task runs ("" when none). */
  script: string;
  /** The running code version: the script's `timestamp` (Unix seconds; 0 if unknown). */
  version: number;
  /** Which version runs (`current`, `old`, `new`). */
  current: string;
  /** Runs started since this server started watching. */
  restarts: number;
  /** Who holds `running` (state "run"). */
  runner: string;
  /** The status of a deleted task. */
  gone: boolean;
}

/** One error record as the page shows it: its strings escaped. */
export type ErrorView = ErrorRecord;

/** The whole page's state. */
export interface StateView {
  /** The installation's zone ("" when /config/timezone is not set). */
  zone: string;
  tasks: TaskView[];
  errors: ErrorView[];
}

/** A task's own page, but for its debug object and log. */
export interface TaskDetail {
  task: TaskView;
  /** `data/<var>` of the task: raw values (escaped); a secret (`secret/<var>`) as `***`. */
  data: Record<string, string>;
  /** `values/<var>` of the task, over the script's. */
  values: Record<string, string>;
  errors: ErrorView[];
}

const e = escapeControl;

function under(key: string, prefix: string): boolean {
  return key === prefix || key.startsWith(prefix + "/");
}

/** Options of a `WebModel`. */
export interface WebModelOptions {
  /** Called after each batch of changes that touched what the page shows. */
  onChange?: () => void;
}

/** The live mirror; `start()` reads and watches, `close()` stops. */
export class WebModel {
  #store: Store;
  #layout: Layout;
  #hub: WatchHub;
  #keys = new Map<string, string>();
  #restarts = new Map<string, number>();
  #onChange: () => void;
  #prefixes: string[];

  /** A model of the tree below `layout.root` in `store`. */
  constructor(store: Store, layout: Layout, options: WebModelOptions = {}) {
    this.#store = store;
    this.#layout = layout;
    this.#onChange = options.onChange ?? (() => {});
    this.#hub = new WatchHub(store, layout.root + "/");
    this.#prefixes = [
      layout.tasksPrefix,
      layout.statusPrefix,
      layout.errorsPrefix,
      layout.scriptsPrefix,
      `${layout.configPrefix}script/hidden`,
      layout.timezoneKey,
    ];
  }

  /** Whether the page keeps `key` (code bodies are left out: they can be big). */
  #wanted(key: string): boolean {
    if (!this.#prefixes.some((p) => key.startsWith(p))) return false;
    if (key.startsWith(this.#layout.scriptsPrefix)) {
      const s = Layout.splitTagged(key, this.#layout.scriptsPrefix, CODE_TAG);
      return s !== undefined &&
        (s.rest === SCRIPT_KEYS.timestamp || s.rest === SCRIPT_KEYS.current ||
          s.rest.startsWith(SCRIPT_KEYS.values));
    }
    return true;
  }

  /**
   * What the mirror keeps of `key`'s value: a task's secret only as `***`,
   * so that no view of the page, its JSON included, can hold its text.
   */
  #kept(key: string, value: string): string {
    return isSecretKey(key.slice(this.#layout.root.length + 1)) ? SECRET_MASK : value;
  }

  /** Read the tree and follow it with one watch. */
  async start(): Promise<void> {
    let revision = Infinity;
    for (const p of this.#prefixes) {
      const r = await this.#store.range(p);
      revision = Math.min(revision, r.revision);
      for (const kv of r.kvs) {
        if (this.#wanted(kv.key)) this.#keys.set(kv.key, this.#kept(kv.key, kv.value));
      }
    }
    // Events from the first read's revision on are replayed in order: the
    // mirror ends at the newest value of every key.
    this.#hub.subscribe(this.#layout.root + "/", (events) => this.#apply(events), {
      onResync: () => void this.#reread(),
    });
    await this.#hub.start(revision + 1);
  }

  async #reread(): Promise<void> {
    const fresh = new Map<string, string>();
    for (const p of this.#prefixes) {
      const r = await this.#store.range(p);
      for (const kv of r.kvs) {
        if (this.#wanted(kv.key)) fresh.set(kv.key, this.#kept(kv.key, kv.value));
      }
    }
    this.#keys = fresh;
    this.#onChange();
  }

  #apply(events: WatchEvent[]): void {
    let changed = false;
    for (const ev of events) {
      const k = ev.kv.key;
      if (!this.#wanted(k)) continue;
      changed = true;
      if (ev.type === "delete") {
        this.#keys.delete(k);
        continue;
      }
      this.#keys.set(k, this.#kept(k, ev.kv.value));
      // A new `started` is a new run: counted, as the page's "runs seen".
      if (k.startsWith(this.#layout.statusPrefix) && k.endsWith(`/${STATUS_KEYS.started}`)) {
        const t = Layout.taskOf(k, this.#layout.statusPrefix);
        if (t && t.rest === STATUS_KEYS.started) {
          this.#restarts.set(t.path, (this.#restarts.get(t.path) ?? 0) + 1);
        }
      }
    }
    if (changed) this.#onChange();
  }

  /** Root-relative prefixes hidden from scripts: hidden from the page too. */
  #hidden(): string[] {
    const list = [...ALWAYS_HIDDEN];
    const text = this.#keys.get(`${this.#layout.configPrefix}script/hidden`);
    if (text !== undefined) {
      // The same reading as host/capabilities/script_view.ts.
      const v = decodeUntyped(text);
      const items = Array.isArray(v) ? v : String(v).split(/[\s,]+/);
      const root = this.#layout.root.replace(/^\//, "");
      for (const item of items) {
        if (typeof item !== "string") continue;
        const p = item.replace(/^\/+/, "").replace(/\/+$/, "");
        const rel = root && (p === root || p.startsWith(root + "/")) ? p.slice(root.length + 1) : p;
        if (rel) list.push(rel);
      }
    }
    return list;
  }

  /**
   * Whether the task at `path` is hidden: its definition or its status lies
   * under a hidden prefix. (A hidden key inside a task hides that value only.)
   */
  isHiddenTask(path: string): boolean {
    const hidden = this.#hidden();
    return hidden.some((h) => under(`task/${path}`, h) || under(`status/run/${path}`, h));
  }

  /** The zone of /config/timezone ("" when unset). */
  get zone(): string {
    return this.#keys.get(this.#layout.timezoneKey) ?? "";
  }

  /** Every task the page may show, sorted by path. */
  tasks(): TaskView[] {
    const dirs = new Map<string, Map<string, string>>();
    const defs = new Map<string, Map<string, string>>();
    const scripts = new Map<string, Map<string, string>>();
    const dir = (m: Map<string, Map<string, string>>, p: string) => {
      let d = m.get(p);
      if (!d) m.set(p, d = new Map());
      return d;
    };
    for (const [k, v] of this.#keys) {
      const L = this.#layout;
      let s;
      if ((s = Layout.taskOf(k, L.tasksPrefix))) {
        dir(defs, s.path).set(s.rest, v);
        dir(dirs, s.path);
      } else if ((s = Layout.taskOf(k, L.statusPrefix))) {
        dir(dirs, s.path).set(s.rest, v);
      } else if ((s = Layout.splitTagged(k, L.scriptsPrefix, CODE_TAG))) {
        dir(scripts, s.name).set(s.rest, v);
      }
    }
    const out: TaskView[] = [];
    for (const [path, keys] of [...dirs].sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0)) {
      if (this.isHiddenTask(path)) continue;
      const row = shownState(path, keys);
      const def = defs.get(path);
      const script = def?.get(TASK_KEYS.script) ?? "";
      const sd = scripts.get(script);
      out.push({
        path: e(path),
        host: e(path.split("/")[0]!),
        state: row.state,
        since: row.since,
        message: e(row.message),
        script: e(script),
        version: Number(sd?.get(SCRIPT_KEYS.timestamp) ?? 0) || 0,
        current: e(sd?.get(SCRIPT_KEYS.current) ?? "current"),
        restarts: this.#restarts.get(path) ?? 0,
        runner: e(row.runner ?? ""),
        gone: def === undefined,
      });
    }
    return out;
  }

  /** The error records the page may show, newest first. */
  errors(prefix = ""): ErrorView[] {
    const hidden = this.#hidden();
    return parseErrorRecords(this.#layout.errorsPrefix, this.#keys)
      .filter((r) =>
        inTree(r.loc, prefix) && !this.isHiddenTask(r.loc) &&
        !hidden.some((h) => under(`status/errors/${r.tag}/${r.id}`, h))
      )
      .map((r) => ({ ...r, tag: e(r.tag), id: e(r.id), loc: e(r.loc), msg: e(r.msg) }))
      .sort((a, b) => b.timestamp - a.timestamp);
  }

  /** The whole page's state. */
  state(): StateView {
    return { zone: e(this.zone), tasks: this.tasks(), errors: this.errors() };
  }

  /** One task's page (undefined for a task the page does not show). */
  task(path: string): TaskDetail | undefined {
    const view = this.tasks().find((t) => t.path === e(path));
    if (view === undefined) return undefined;
    const hidden = this.#hidden();
    const pick = (dirKey: string, sub: string, rel: string) => {
      const out: Record<string, string> = {};
      for (const [k, v] of this.#keys) {
        if (!k.startsWith(dirKey + sub)) continue;
        const name = k.slice(dirKey.length + sub.length);
        if (name === "" || name.includes("/")) continue;
        if (hidden.some((h) => under(`${rel}${sub}${name}`, h))) continue;
        out[e(name)] = e(v);
      }
      return out;
    };
    const L = this.#layout;
    const taskDir = L.taskDir(path);
    const relTask = taskDir.slice(L.root.length + 1);
    const values: Record<string, string> = {};
    if (view.script !== "") {
      try {
        const sdir = L.scriptDir(this.#scriptOf(path));
        Object.assign(values, pick(sdir, SCRIPT_KEYS.values, sdir.slice(L.root.length + 1)));
      } catch {
        // A script name that is no name: no defaults to show.
      }
    }
    Object.assign(values, pick(taskDir, TASK_KEYS.values, relTask));
    return {
      task: view,
      data: {
        ...pick(taskDir, TASK_KEYS.data, relTask),
        ...pick(taskDir, TASK_KEYS.secret, relTask),
      },
      values,
      errors: this.errors(path).filter((r) => r.loc === view.path),
    };
  }

  #scriptOf(path: string): string {
    return this.#keys.get(this.#layout.taskDir(path) + TASK_KEYS.script) ?? "";
  }

  /** Stop watching. Safe twice. */
  async close(): Promise<void> {
    await this.#hub.close();
  }
}
