/**
 * The script's view of the MoaT tree inside its Worker: every value it can
 * read synchronously (`moat.data`, nodes from `moat.tree.lookup`), kept
 * current by the host's `data` and `tree` events, and its monitors.
 *
 * Like every `sandbox/_worker_*.ts` module, the function here is copied
 * into the Worker as source text: it may use globals and its parameters,
 * nothing else from this module.
 *
 * @module
 */

import type { DataEvent, Json, NodeSnapshot, TreeEvent } from "./protocol.ts";

/** A node of the tree as the script holds it (types/moat.d.ts `MoatNode`). */
export interface TreeNode {
  readonly path: string;
  readonly value: Json | undefined;
  get(name: string): Json | TreeNode | undefined;
  keys(): string[];
}

/** What a monitor's function gets (types/moat.d.ts `MoatChange`). */
export interface TreeChange {
  readonly node: TreeNode;
  readonly is_new: boolean | null;
  readonly added: string[];
  readonly deleted: string[];
}

/** What {@linkcode treeView} gives the `moat` object. */
export interface TreeView {
  /** The node object of a root-relative path (one per path). */
  nodeOf(path: string): TreeNode;
  /** Whether `v` is a node handed out by this view. */
  isNode(v: unknown): v is TreeNode;
  /** The names of a path's children, sorted. */
  childrenOf(path: string): string[];
  /** Replace what is known at and below a node with a snapshot of it. */
  loadSnapshot(snap: NodeSnapshot): void;
  /** A `data` event: the task's whole `moat.data` view. */
  applyData(ev: DataEvent): void;
  /** A `tree` event: changes below watched nodes; calls the monitors they touch. */
  applyTree(ev: TreeEvent): void;
  /** `moat.data.get`. */
  dataGet(key: string): unknown;
  /** `moat.data.keys`. */
  dataKeys(): string[];
  /** The script's own write of `key` went through: show it at once. */
  dataWritten(key: string, value: Json): void;
  /**
   * Start calling `fn` for changes at or below `path` (and once now);
   * `children` are the path's children when the script asked.
   */
  monitor(path: string, fn: (change: TreeChange) => unknown, children: string[]): void;
  /** The path `moat.tree.lookup(...segments)` means; a TypeError for bad segments. */
  checkSegments(segments: unknown[]): string;
}

/**
 * The tree view. `fail` ends the script with an error (a monitor threw);
 * `isEnding` says whether it is ending (monitors are no longer called).
 */
export function treeView(
  fail: (err: unknown) => void,
  isEnding: () => boolean,
): TreeView {
  const stringify = JSON.stringify;
  type MoatNode = TreeNode;
  type Change = TreeChange;
  // Every value the script can read synchronously, by root-relative key,
  // kept current by the host's `data` and `tree` events.
  const cache = new Map<string, Json>();
  let dataValues = new Map<string, { value: Json; type: string | null }>();
  let dataRefs = new Map<string, string | null>();
  const nodes = new Map<string, MoatNode>();
  const nodeSet = new WeakSet<object>();
  const childrenOf = (path: string): string[] => {
    const names = new Set<string>();
    const pre = path + "/";
    for (const k of cache.keys()) {
      if (k.startsWith(pre)) names.add(k.slice(pre.length).split("/")[0]!);
    }
    return [...names].sort();
  };
  const exists = (path: string): boolean => {
    if (cache.has(path)) return true;
    const pre = path + "/";
    for (const k of cache.keys()) if (k.startsWith(pre)) return true;
    return false;
  };
  const nodeOf = (path: string): MoatNode => {
    let n = nodes.get(path);
    if (n) return n;
    n = Object.freeze({
      path,
      get value(): Json | undefined {
        return cache.get(path);
      },
      get(name: string): Json | MoatNode | undefined {
        if (typeof name !== "string" || name === "") return undefined;
        const key = `${path}/${name}`;
        const pre = key + "/";
        for (const k of cache.keys()) if (k.startsWith(pre)) return nodeOf(key);
        return cache.get(key);
      },
      keys(): string[] {
        return childrenOf(path);
      },
      toString(): string {
        return `[moat node ${path}]`;
      },
    });
    nodes.set(path, n);
    nodeSet.add(n);
    return n;
  };
  const loadSnapshot = (snap: NodeSnapshot): void => {
    for (const k of [...cache.keys()]) {
      if (k === snap.path || k.startsWith(snap.path + "/")) cache.delete(k);
    }
    for (const [rel, v] of Object.entries(snap.entries)) {
      cache.set(rel === "" ? snap.path : `${snap.path}/${rel}`, v);
    }
  };
  const applyData = (ev: DataEvent): void => {
    const refs = new Map<string, string | null>();
    for (const [key, snap] of Object.entries(ev.refs)) {
      if (snap) loadSnapshot(snap);
      refs.set(key, snap ? snap.path : null);
    }
    dataValues = new Map(Object.entries(ev.values));
    dataRefs = refs;
  };
  interface Monitor {
    path: string;
    fn: (change: Change) => unknown;
    children: string[];
  }
  const monitors: Monitor[] = [];
  const deliver = (m: Monitor, isNew: boolean | null, added: string[], deleted: string[]) => {
    try {
      const r = m.fn(Object.freeze({ node: nodeOf(m.path), is_new: isNew, added, deleted }));
      if (r && typeof (r as Promise<unknown>).then === "function") {
        (r as Promise<unknown>).then(undefined, fail);
      }
    } catch (err) {
      fail(err);
    }
  };
  const applyTree = (ev: TreeEvent): void => {
    const touched = new Set<string>();
    for (const c of ev.changes) {
      if (c.value === null) cache.delete(c.key);
      else cache.set(c.key, c.value);
      touched.add(c.key);
    }
    for (const m of [...monitors]) {
      let hit = false;
      for (const k of touched) {
        if (k === m.path || k.startsWith(m.path + "/")) {
          hit = true;
          break;
        }
      }
      if (!hit || isEnding()) continue;
      const now = childrenOf(m.path);
      const before = new Set(m.children);
      const after = new Set(now);
      m.children = now;
      deliver(
        m,
        exists(m.path) ? false : null,
        now.filter((c) => !before.has(c)),
        [...before].filter((c) => !after.has(c)),
      );
    }
  };
  const checkSegments = (segments: unknown[]): string => {
    // Bad arguments throw at the call site (catchable), unlike lifecycle misuse.
    if (segments.length === 0) {
      throw new TypeError("moat.tree.lookup() needs at least one path segment");
    }
    const parts: string[] = [];
    for (const seg of segments) {
      if (typeof seg !== "string" && typeof seg !== "number") {
        throw new TypeError(`moat.tree.lookup() takes strings, got ${typeof seg}`);
      }
      for (const p of String(seg).split("/")) {
        if (p === "" || p === "." || p === "..") {
          throw new TypeError(`moat.tree.lookup(): bad path segment ${stringify(String(seg))}`);
        }
        parts.push(p);
      }
    }
    return parts.join("/");
  };

  return {
    nodeOf,
    isNode: (v: unknown): v is TreeNode => v !== null && typeof v === "object" && nodeSet.has(v),
    childrenOf,
    loadSnapshot,
    applyData,
    applyTree,
    dataGet(key: string): unknown {
      const v = dataValues.get(key);
      if (v === undefined) return undefined;
      if (v.type === "str/ref") {
        const path = dataRefs.get(key);
        return path ? nodeOf(path) : undefined;
      }
      return v.value;
    },
    dataKeys: (): string[] => [...dataValues.keys()].sort(),
    dataWritten(key: string, value: Json): void {
      const old = dataValues.get(key);
      dataValues.set(key, { value, type: old?.type ?? null });
    },
    monitor(path: string, fn: (change: Change) => unknown, children: string[]): void {
      const m: Monitor = { path, fn, children };
      monitors.push(m);
      deliver(m, true, [], []);
    },
    checkSegments,
  };
}
