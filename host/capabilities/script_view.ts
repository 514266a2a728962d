/**
 * What one running script sees of the MoaT tree: its `moat.data` (the
 * task's `data/` over the script's `values/` defaults, typed by the
 * script's `types/`), the nodes it looked up with `moat.tree.lookup`, and
 * the changes to both, pushed into the sandbox as `data` and `tree` events.
 * Everything arrives through the host's one watch (WatchHub).
 *
 * Hidden prefixes (`/config/amqp` and those listed in
 * `/config/script/hidden`) do not exist from a script's point of view, nor
 * does any task's `:task/secret/` (the values of `secret` variables): a
 * script reads its own task's secrets through `moat.data` only.
 *
 * @module
 */

import type { Store, WatchEvent } from "../store/store.ts";
import type { Subscription, WatchHub } from "../store/watch_hub.ts";
import { isSecretKey, type Layout, SCRIPT_KEYS, TASK_KEYS } from "../layout.ts";
import {
  decodeTyped,
  decodeUntyped,
  encodeTyped,
  encodeUntyped,
  isValueType,
  type Value,
} from "../codec.ts";
import { checkVarName } from "../names.ts";
import { CapabilityError } from "./capability_error.ts";
import type {
  DataEvent,
  Json,
  NodeSnapshot,
  ScriptEvent,
  TreeEvent,
} from "../../sandbox/protocol.ts";
import { RangeTooLargeError } from "../store/store.ts";
import { DataMirror, type Layer } from "./_data_mirror.ts";
import { DEFAULT_QUOTAS, quotaError, type Quotas, utf8Length } from "./quotas.ts";
import type { Grants } from "./manifest.ts";

/** Most keys one looked-up node may hold. */
export const MAX_NODE_KEYS = 10_000;

/**
 * Most bytes (keys and values) one looked-up node may hold: its snapshot
 * must fit in one bridge message (1 MiB), and the host reads no more than
 * this from etcd for one lookup.
 */
export const MAX_NODE_BYTES = 768 * 1024;

/** How many earlier secret values of a run are still masked in what it logs. */
export const MAX_SEEN_SECRETS = 64;

/** Prefixes always hidden from scripts, root-relative. */
export const ALWAYS_HIDDEN = ["config/amqp"];

/** Normalise a root-relative tree path; throws CapabilityError naming the problem. */
export function treePath(path: string): string {
  const p = path.replace(/^\/+/, "").replace(/\/+$/, "");
  if (p === "") throw new CapabilityError("bad_path", "a tree path must not be empty");
  for (const seg of p.split("/")) {
    if (seg === "") {
      throw new CapabilityError("bad_path", `tree path "${path}" has an empty segment`);
    }
    if (seg === "." || seg === "..") {
      throw new CapabilityError("bad_path", `tree path "${path}" must not contain "${seg}"`);
    }
    // deno-lint-ignore no-control-regex
    if (/[\u0000-\u001f\u007f]/.test(seg)) {
      throw new CapabilityError("bad_path", `tree path "${path}" contains control characters`);
    }
  }
  return p;
}

function under(key: string, prefix: string): boolean {
  return key === prefix || key.startsWith(prefix + "/");
}

/** Everything one running script may see; see the module doc. */
export class ScriptView {
  #store: Store;
  #layout: Layout;
  #hub: WatchHub;
  #task: string;
  #taskDir: string;
  #scriptDir: string;
  #token: string;
  #watched = new Set<string>();
  #hidden: string[] = [...ALWAYS_HIDDEN];
  #subs: Subscription[] = [];
  /** The `tree` subscription: the hub delivers only what is below a watched path. */
  #tree: Subscription | undefined;
  #send: ((event: ScriptEvent) => void) | undefined;
  #queue: ScriptEvent[] = [];
  #closed = false;
  #dataRefresh: Promise<void> = Promise.resolve();
  /** `dataSet`s run one after the other, so that the data quotas hold. */
  #writing: Promise<unknown> = Promise.resolve();
  #quotas: Quotas;
  /** What the script's capability manifest lets it read of the tree (manifest.ts). */
  #grants: Grants | undefined;
  /** The layers of `moat.data`: script values, script types, task values, task data, task secrets. */
  #dirs: readonly [string, string, string, string, string];
  #mirror: DataMirror;
  /** Secret values this run's script was given, oldest first (`secretValues`). */
  #seenSecrets = new Set<string>();

  /**
   * @param task the task path
   * @param script the script name
   * @param token the run's `running` value: writes are made only while it stands
   * @param quotas what the run may spend (`data_size`, `data_keys`, `monitors`)
   * @param grants the capability manifest's limits (`tree.read`); none: no limits
   */
  constructor(
    deps: { store: Store; layout: Layout; hub: WatchHub },
    run: { task: string; script: string; token: string; quotas?: Quotas; grants?: Grants },
  ) {
    this.#store = deps.store;
    this.#layout = deps.layout;
    this.#hub = deps.hub;
    this.#task = run.task;
    this.#taskDir = deps.layout.taskDir(run.task);
    this.#scriptDir = deps.layout.scriptDir(run.script);
    this.#token = run.token;
    this.#quotas = run.quotas ?? DEFAULT_QUOTAS;
    this.#grants = run.grants;
    const dataDir = this.#taskDir + TASK_KEYS.data;
    const secretDir = this.#taskDir + TASK_KEYS.secret;
    this.#dirs = [
      this.#scriptDir + SCRIPT_KEYS.values,
      this.#scriptDir + SCRIPT_KEYS.types,
      this.#taskDir + TASK_KEYS.values,
      dataDir,
      secretDir,
    ];
    // Secrets count towards the data quotas like any other value.
    this.#mirror = new DataMirror(this.#dirs, [dataDir, secretDir]);
  }

  get #rootSlash(): string {
    return this.#layout.root + "/";
  }

  /** Subscribe to changes and return the first `data` view. */
  async open(): Promise<DataEvent> {
    await this.#loadHidden();
    // The mirror follows the four layers from the watch; every change sends
    // a fresh view (the script's own writes too: it sees what was stored).
    const onData = (events: WatchEvent[]) => {
      this.#mirror.apply(events);
      this.#refreshData();
    };
    // After the host's watch failed and was re-opened (WatchHub), changes
    // in the gap were not seen: read the data and hidden prefixes afresh.
    const again = {
      onResync: () => {
        this.#dataRefresh = this.#dataRefresh.then(() => this.#reload()).catch(() => {});
        this.#refreshData();
      },
    };
    for (const dir of this.#dirs) this.#subs.push(this.#hub.subscribe(dir, onData, again));
    const hidden = () => void this.#loadHidden().catch(() => {});
    this.#subs.push(
      this.#hub.subscribe(`${this.#layout.configPrefix}script/hidden`, hidden, {
        onResync: hidden,
      }),
    );
    this.#tree = this.#hub.subscribe(
      [...this.#watched].map((p) => this.#rootSlash + p),
      (events) => this.#onTree(events),
    );
    this.#subs.push(this.#tree);
    await this.#reload();
    return await this.#data();
  }

  /** Read the four layers of `moat.data` into the mirror. */
  async #reload(): Promise<void> {
    await Promise.all(this.#dirs.map(async (dir) => {
      const { kvs, revision } = await this.#store.range(dir);
      this.#mirror.load(dir, kvs, revision);
    }));
  }

  /** Start delivering events through `send` (queued ones first). */
  attach(send: (event: ScriptEvent) => void): void {
    this.#send = send;
    for (const e of this.#queue.splice(0)) send(e);
  }

  /** Send an event into the script (queued until `attach`). */
  emit(event: ScriptEvent): void {
    if (this.#closed) return;
    if (this.#send) this.#send(event);
    else this.#queue.push(event);
  }

  async #loadHidden(): Promise<void> {
    const kv = await this.#store.get(`${this.#layout.configPrefix}script/hidden`);
    const list: string[] = [...ALWAYS_HIDDEN];
    if (kv) {
      const v = decodeUntyped(kv.value);
      const items = Array.isArray(v) ? v : String(v).split(/[\s,]+/);
      for (const item of items) {
        if (typeof item !== "string") continue;
        const p = item.replace(/^\/+/, "").replace(/\/+$/, "");
        const root = this.#layout.root.replace(/^\//, "");
        const rel = root && (p === root || p.startsWith(root + "/")) ? p.slice(root.length + 1) : p;
        if (rel) list.push(rel);
      }
    }
    this.#hidden = list;
  }

  /** Whether a root-relative key is hidden from scripts (a secret of any task's always is). */
  isHidden(key: string): boolean {
    return isSecretKey(key) || this.#hidden.some((h) => under(key, h));
  }

  /**
   * The task's secret values: those the mirror holds now and those the
   * script was given before (the newest `MAX_SEEN_SECRETS`), for masking
   * what the run logs or shows (secret_mask.ts).
   */
  secretValues(): string[] {
    return [...new Set([...this.#mirror.layer(this.#dirs[4]).values(), ...this.#seenSecrets])];
  }

  /** Remember a secret value the script is given (a bounded set, oldest dropped). */
  #sawSecret(value: string): void {
    this.#seenSecrets.delete(value);
    this.#seenSecrets.add(value);
    if (this.#seenSecrets.size > MAX_SEEN_SECRETS) {
      this.#seenSecrets.delete(this.#seenSecrets.values().next().value!);
    }
  }

  #refreshData(): void {
    // Serialise refreshes so that views are sent in the order of changes.
    this.#dataRefresh = this.#dataRefresh.then(async () => {
      if (this.#closed) return;
      try {
        this.emit({ event: "data", data: await this.#data() });
      } catch {
        // The next change sends a fresh view.
      }
    });
  }

  /**
   * The layers of `moat.data` as the mirror holds them: the task's data over
   * its values over the script's; a `secret` variable's value comes from the
   * task's `secret/` alone (a default in `values/` would be readable by
   * every script, so it is ignored).
   */
  #layers(): {
    text: Map<string, string>;
    types: Map<string, string>;
    data: Layer;
    secret: Layer;
  } {
    const [sv, st, tv, td, ts] = this.#dirs.map((d) => this.#mirror.layer(d)) as [
      Layer,
      Layer,
      Layer,
      Layer,
      Layer,
    ];
    const flat = (layer: Layer) => [...layer].filter(([k]) => !k.includes("/"));
    const types = new Map(flat(st));
    const text = new Map<string, string>([...flat(sv), ...flat(tv), ...flat(td)]);
    for (const [k, t] of types) {
      if (t !== "secret") continue;
      const v = ts.get(k);
      if (v === undefined) text.delete(k);
      else text.set(k, v);
    }
    return { text, types, data: td, secret: ts };
  }

  async #data(): Promise<DataEvent> {
    const { text, types } = this.#layers();
    const values: DataEvent["values"] = {};
    const refs: DataEvent["refs"] = {};
    const keys = new Set([...text.keys(), ...types.keys()]);
    for (const key of keys) {
      const raw = text.get(key);
      const t = types.get(key);
      const type = t !== undefined && isValueType(t) ? t : null;
      let value: Value = null;
      if (raw !== undefined) {
        try {
          value = type ? decodeTyped(raw, type, `data value "${key}"`) : decodeUntyped(raw);
        } catch {
          // A hand-written value that does not fit its type: the text itself.
          value = raw;
        }
      }
      if (type === "secret" && typeof value === "string") this.#sawSecret(value);
      values[key] = { value: value as Json, type };
      if (type === "str/ref" && typeof value === "string" && value !== "") {
        try {
          const path = this.#relative(value);
          refs[key] = await this.lookup(path);
          this.#follow(path);
        } catch {
          refs[key] = null;
        }
      }
    }
    return { values, refs };
  }

  /** A path as written in a str/ref value: root-relative, or absolute with the root. */
  #relative(path: string): string {
    const p = treePath(path);
    const root = this.#layout.root.replace(/^\//, "");
    return root && p.startsWith(root + "/") && path.startsWith("/") ? p.slice(root.length + 1) : p;
  }

  /** The node at a root-relative path, or null (also for hidden paths). */
  async lookup(path: string): Promise<NodeSnapshot | null> {
    const p = treePath(path);
    // The manifest's refusal comes before "hidden": it tells the script
    // nothing about what exists outside its prefixes.
    this.#grants?.treeRead(p);
    if (this.isHidden(p)) return null;
    const base = this.#rootSlash + p;
    let own, below;
    try {
      // Bounded reads: a huge node costs the host and etcd no more than
      // the bound, however often a script asks for it.
      [own, below] = await Promise.all([
        this.#store.get(base),
        this.#store.range(base + "/", { maxKeys: MAX_NODE_KEYS, maxBytes: MAX_NODE_BYTES }),
      ]);
    } catch (e) {
      if (!(e instanceof RangeTooLargeError)) throw e;
      const what = e.limit === "keys" ? `${MAX_NODE_KEYS} keys` : `${MAX_NODE_BYTES} bytes`;
      throw new CapabilityError(
        "too_large",
        `node "${p}" holds more than ${what}; look up a deeper node`,
      );
    }
    const entries: NodeSnapshot["entries"] = {};
    if (own) entries[""] = decodeUntyped(own.value) as Json;
    for (const kv of below.kvs) {
      const rel = kv.key.slice(base.length + 1);
      if (this.isHidden(`${p}/${rel}`)) continue;
      entries[rel] = decodeUntyped(kv.value) as Json;
    }
    if (Object.keys(entries).length === 0) return null;
    return { path: p, entries };
  }

  /** Deliver `tree` events for keys at or below `path` from now on. */
  watch(path: string): void {
    const p = treePath(path);
    this.#grants?.treeRead(p);
    if (!this.#watched.has(p) && this.#watched.size >= this.#quotas.monitors) {
      // Every watched path costs the host work on every etcd change.
      throw quotaError(this.#quotas, "monitors", `cannot monitor "${p}": too many monitors`);
    }
    this.#follow(p);
  }

  /** Deliver `tree` events for root-relative `path` (checked already). */
  #follow(path: string): void {
    if (this.#watched.has(path)) return;
    this.#watched.add(path);
    // Below the prefix as text: "a/b" also brings "a/bc", which #onTree drops.
    if (!this.#closed) this.#tree?.add(this.#rootSlash + path);
  }

  #onTree(events: WatchEvent[]): void {
    if (this.#watched.size === 0) return;
    // One `tree` event per etcd revision, so that monitors see every
    // revision's state in order (a watch batch may span several).
    let current: TreeEvent | undefined;
    const flush = () => {
      if (current && current.changes.length > 0) this.emit({ event: "tree", data: current });
    };
    for (const e of events) {
      const key = e.kv.key.slice(this.#rootSlash.length);
      let hit = false;
      for (const w of this.#watched) {
        if (under(key, w)) {
          hit = true;
          break;
        }
      }
      if (!hit || this.isHidden(key)) continue;
      if (current?.revision !== e.kv.modRevision) {
        flush();
        current = { revision: e.kv.modRevision, changes: [] };
      }
      current.changes.push({
        key,
        value: e.type === "put" ? decodeUntyped(e.kv.value) as Json : null,
      });
    }
    flush();
  }

  /**
   * Write `value` to an existing key of the task's data, type-checked, and
   * only while this run still owns the task.
   */
  dataSet(key: string, value: Json): Promise<void> {
    // One at a time: the data quotas are checked against what the last
    // write left, so concurrent writes cannot each pass the check.
    const next = this.#writing.then(() => this.#dataSet(key, value));
    this.#writing = next.catch(() => {});
    return next;
  }

  async #dataSet(key: string, value: Json): Promise<void> {
    try {
      checkVarName(key);
    } catch (e) {
      throw new CapabilityError("bad_key", (e as Error).message);
    }
    const { text, types, data, secret } = this.#layers();
    if (!text.has(key) && !types.has(key)) {
      throw new CapabilityError(
        "no_such_key",
        `cannot set "${key}": the task has no such value (you cannot add new values)`,
      );
    }
    const t = types.get(key);
    let encoded: string;
    try {
      encoded = t !== undefined && isValueType(t)
        ? encodeTyped(value as Value, t, `"${key}"`)
        : encodeUntyped(value as Value);
    } catch (e) {
      throw new CapabilityError("bad_type", `cannot set "${key}": ${(e as Error).message}`);
    }
    // A secret is written apart from the data, where no tree view reaches.
    const isSecret = t === "secret";
    this.#checkDataQuotas(isSecret ? secret : data, key, encoded);
    const running = this.#layout.statusKey(this.#task, "running");
    const dataKey = this.#taskDir + (isSecret ? TASK_KEYS.secret : TASK_KEYS.data) + key;
    let ok: boolean;
    try {
      const res = await this.#store.txn(
        [{ key: running, target: "value", op: "==", value: this.#token }],
        [{ type: "put", key: dataKey, value: encoded }],
      );
      ok = res.succeeded;
      // The next write's quotas count this one, before its watch event comes.
      if (ok) this.#mirror.put(dataKey, encoded, res.revision);
      if (ok && isSecret) this.#sawSecret(encoded);
    } catch {
      throw new CapabilityError("unavailable", `cannot set "${key}": the store is not reachable`);
    }
    if (!ok) {
      throw new CapabilityError(
        "not_running",
        `cannot set "${key}": this run no longer owns the task (its lease was lost)`,
      );
    }
  }

  /** Refuse a write that would take the task's `data/` and `secret/` over their quotas (from the mirror's tally). */
  #checkDataQuotas(data: Layer, key: string, encoded: string): void {
    const q = this.#quotas;
    const old = data.get(key);
    const keys = this.#mirror.dataKeys + (old === undefined ? 1 : 0);
    if (keys > q.dataKeys) {
      throw quotaError(
        q,
        "dataKeys",
        `cannot set "${key}": the task's data would hold ${keys} keys`,
      );
    }
    const bytes = this.#mirror.dataBytes -
      (old === undefined ? 0 : utf8Length(key) + utf8Length(old)) +
      utf8Length(key) + utf8Length(encoded);
    if (bytes > q.dataSize) {
      throw quotaError(
        q,
        "dataSize",
        `cannot set "${key}": the task's data would hold ${bytes} bytes`,
      );
    }
  }

  /** Stop all deliveries. Safe to call twice. */
  close(): void {
    this.#closed = true;
    for (const s of this.#subs.splice(0)) s.close();
    this.#queue = [];
  }
}
