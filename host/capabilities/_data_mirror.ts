/**
 * The host's copy of what a run's `moat.data` is made of: the script's
 * `values/` and `types/`, the task's `values/` and `data/`. Read once when
 * the run starts (and again after a failed watch), then kept by the watch,
 * so that neither a `moat.data.set` nor the `data` event after a change
 * reads the store. Each key keeps the revision it was last seen at (deleted
 * ones too), so that a late event or read cannot undo a newer one.
 *
 * It also keeps the size of the task's `data/` and `secret/` (keys, and
 * bytes of keys and values) as a running tally, for the `data_keys` and
 * `data_size` quotas.
 *
 * @module
 */

import type { KeyValue, WatchEvent } from "../store/store.ts";
import { utf8Length } from "./quotas.ts";

/** One of the four layers below its directory: key (relative) → value text. */
export type Layer = ReadonlyMap<string, string>;

/** The mirror of some prefixes; see the module doc. */
export class DataMirror {
  #prefixes: readonly string[];
  #tallied: readonly string[];
  #layers = new Map<string, Map<string, string>>();
  /** The newest revision seen of each key, present or deleted. */
  #revs = new Map<string, number>();
  #keys = 0;
  #bytes = 0;

  /**
   * @param prefixes the directories mirrored (each ends with "/")
   * @param tallied those of them whose size is kept (the task's `data/` and `secret/`)
   */
  constructor(prefixes: readonly string[], tallied: string | readonly string[]) {
    this.#prefixes = prefixes;
    this.#tallied = typeof tallied === "string" ? [tallied] : tallied;
    for (const p of prefixes) this.#layers.set(p, new Map());
  }

  /** The keys and values below `prefix`, relative to it. */
  layer(prefix: string): Layer {
    return this.#layers.get(prefix)!;
  }

  /** Keys below the tallied prefixes. */
  get dataKeys(): number {
    return this.#keys;
  }

  /** Bytes of the keys (relative) and values below the tallied prefixes, as UTF-8. */
  get dataBytes(): number {
    return this.#bytes;
  }

  /** What `prefix` held at `revision`, as read from the store. */
  load(prefix: string, kvs: readonly KeyValue[], revision: number): void {
    const present = new Set<string>();
    for (const kv of kvs) {
      present.add(kv.key);
      this.#set(kv.key, kv.value, kv.modRevision);
    }
    // Gone at `revision`, unless seen again since.
    for (const rel of [...this.layer(prefix).keys()]) {
      const key = prefix + rel;
      if (!present.has(key)) this.#delete(key, revision);
    }
  }

  /** Apply watch events; returns whether any mirrored key changed. */
  apply(events: readonly WatchEvent[]): boolean {
    let changed = false;
    for (const e of events) {
      changed = (e.type === "put"
        ? this.#set(e.kv.key, e.kv.value, e.kv.modRevision)
        : this.#delete(e.kv.key, e.kv.modRevision)) || changed;
    }
    return changed;
  }

  /** Our own write of `key`, at `revision`, before its watch event comes. */
  put(key: string, value: string, revision: number): void {
    this.#set(key, value, revision);
  }

  #prefixOf(key: string): string | undefined {
    return this.#prefixes.find((p) => key.startsWith(p));
  }

  #set(key: string, value: string, rev: number): boolean {
    const p = this.#prefixOf(key);
    if (p === undefined || (this.#revs.get(key) ?? 0) > rev) return false;
    this.#revs.set(key, rev);
    const layer = this.#layers.get(p)!;
    const rel = key.slice(p.length);
    const old = layer.get(rel);
    if (old === value) return false;
    if (this.#tallied.includes(p)) {
      if (old === undefined) {
        this.#keys++;
        this.#bytes += utf8Length(rel);
      } else {
        this.#bytes -= utf8Length(old);
      }
      this.#bytes += utf8Length(value);
    }
    layer.set(rel, value);
    return true;
  }

  #delete(key: string, rev: number): boolean {
    const p = this.#prefixOf(key);
    if (p === undefined || (this.#revs.get(key) ?? 0) > rev) return false;
    this.#revs.set(key, rev);
    const layer = this.#layers.get(p)!;
    const rel = key.slice(p.length);
    const old = layer.get(rel);
    if (old === undefined) return false;
    if (this.#tallied.includes(p)) {
      this.#keys--;
      this.#bytes -= utf8Length(rel) + utf8Length(old);
    }
    layer.delete(rel);
    return true;
  }
}
