/**
 * Error records: `/status/errors/<tag>/<id>/{loc, msg, counter, created,
 * timestamp}`, with a pointer `error/<tag>` = `<id>` in the status
 * directory of the task they belong to. Scripts keep them with
 * `moat.set_error` / `moat.clear_error`; the host keeps tag `job` for task
 * failures, cleared by a successful run.
 *
 * @module
 */

import type { Store } from "../store/store.ts";
import { ERROR_RECORD_KEYS, inTree, type Layout, STATUS_KEYS } from "../layout.ts";
import type { Clock } from "../time/clock.ts";
import { unixText } from "../scripts/definitions.ts";

/** The tag the host uses for failed runs. */
export const JOB_TAG = "job";

/** Tags only the host may set or clear: scripts cannot forge or hide its records. */
export const RESERVED_TAGS: ReadonlySet<string> = new Set([JOB_TAG]);

/** The prefix of the tags the host records refusals of a capability manifest under. */
export const DENIED_TAG_PREFIX = "denied.";

/** Whether `tag` is the host's: a reserved tag or a `denied.<capability>` record. */
export function isHostTag(tag: string): boolean {
  return RESERVED_TAGS.has(tag) || tag.startsWith(DENIED_TAG_PREFIX);
}

/** Options of {@linkcode ErrorRecords.set}. */
export interface SetErrorOptions {
  /**
   * Most records the task may hold: recording a new tag beyond it first
   * removes the task's oldest record (never one of the host's, see {@linkcode isHostTag}).
   * @default unbounded
   */
  maxPerTask?: number;
}

/** One error record, as `moat errors` shows it. */
export interface ErrorRecord {
  /** What the error is about (one word: `job`, a script's own tag). */
  tag: string;
  /** The record's id below its tag. */
  id: string;
  /** Where the error was seen: a task path. */
  loc: string;
  /** The message. */
  msg: string;
  /** How often it was recorded. */
  counter: number;
  /** Unix seconds of the first time. */
  created: number;
  /** Unix seconds of the last time. */
  timestamp: number;
}

/**
 * The error records among `kvs` (keys with their values): each key
 * `<base><tag>/<id>/<field>`, where `base` is the layout's `errorsPrefix`,
 * gives one field of a record; other keys are passed over. One record a
 * tag and id, in the order first seen, its missing fields empty or 0.
 */
export function parseErrorRecords(
  base: string,
  kvs: Iterable<readonly [key: string, value: string]>,
): ErrorRecord[] {
  const byId = new Map<string, Map<string, string>>();
  for (const [key, value] of kvs) {
    if (!key.startsWith(base)) continue;
    const parts = key.slice(base.length).split("/");
    if (parts.length !== 3) continue;
    const k = `${parts[0]}/${parts[1]}`;
    let m = byId.get(k);
    if (!m) byId.set(k, m = new Map());
    m.set(parts[2]!, value);
  }
  return [...byId].map(([k, m]) => {
    const [tag, id] = k.split("/") as [string, string];
    return {
      tag,
      id,
      loc: m.get(ERROR_RECORD_KEYS.loc) ?? "",
      msg: m.get(ERROR_RECORD_KEYS.msg) ?? "",
      counter: Number(m.get(ERROR_RECORD_KEYS.counter) ?? 0) || 0,
      created: Number(m.get(ERROR_RECORD_KEYS.created) ?? 0) || 0,
      timestamp: Number(m.get(ERROR_RECORD_KEYS.timestamp) ?? 0) || 0,
    };
  });
}

/** Check an error tag: one segment of letters, digits, `_`, `.`, `-`. */
export function checkTag(tag: string): string {
  if (typeof tag !== "string" || tag === "") throw new RangeError("error tag must not be empty");
  if (!/^[A-Za-z0-9_.-]{1,100}$/.test(tag) || tag === "." || tag === "..") {
    throw new RangeError(
      `error tag "${tag}" may only contain letters, digits, "_", "." and "-" (at most 100)`,
    );
  }
  return tag;
}

/** Keeps error records of tasks. */
export class ErrorRecords {
  #store: Store;
  #layout: Layout;
  #clock: Clock;

  /** The error records in `store`, dated by `clock`. */
  constructor(store: Store, layout: Layout, clock: Clock) {
    this.#store = store;
    this.#layout = layout;
    this.#clock = clock;
  }

  #pointer(task: string, tag: string): string {
    return this.#layout.errorPointer(task, tag);
  }

  #record(tag: string, id: string): string {
    return `${this.#layout.errorsPrefix}${tag}/${id}/`;
  }

  /**
   * Record error `tag` of `task` with `msg`, or count it again (counter + 1,
   * new message and timestamp) when it is recorded already.
   */
  async set(task: string, tag: string, msg: string, options: SetErrorOptions = {}): Promise<void> {
    checkTag(tag);
    const pointer = this.#pointer(task, tag);
    const now = unixText(this.#clock.now());
    // A few tries: another writer may count the same record concurrently.
    for (let attempt = 0; attempt < 5; attempt++) {
      const ptr = await this.#store.get(pointer);
      if (!ptr && options.maxPerTask !== undefined) {
        await this.#makeRoom(task, options.maxPerTask - 1);
      }
      if (ptr) {
        const dir = this.#record(tag, ptr.value);
        const counter = await this.#store.get(dir + ERROR_RECORD_KEYS.counter);
        if (counter) {
          const n = (Number(counter.value) || 0) + 1;
          const res = await this.#store.txn(
            [{
              key: dir + ERROR_RECORD_KEYS.counter,
              target: "modRevision",
              op: "==",
              value: counter.modRevision,
            }],
            [
              { type: "put", key: dir + ERROR_RECORD_KEYS.counter, value: String(n) },
              { type: "put", key: dir + ERROR_RECORD_KEYS.msg, value: msg },
              { type: "put", key: dir + ERROR_RECORD_KEYS.timestamp, value: now },
            ],
          );
          if (res.succeeded) return;
          continue;
        }
      }
      const id = crypto.randomUUID().replaceAll("-", "").slice(0, 16);
      const dir = this.#record(tag, id);
      const res = await this.#store.txn(
        [
          ptr
            ? { key: pointer, target: "modRevision", op: "==", value: ptr.modRevision }
            : { key: pointer, target: "createRevision", op: "==", value: 0 },
        ],
        [
          { type: "put", key: dir + ERROR_RECORD_KEYS.loc, value: task },
          { type: "put", key: dir + ERROR_RECORD_KEYS.msg, value: msg },
          { type: "put", key: dir + ERROR_RECORD_KEYS.counter, value: "1" },
          { type: "put", key: dir + ERROR_RECORD_KEYS.created, value: now },
          { type: "put", key: dir + ERROR_RECORD_KEYS.timestamp, value: now },
          { type: "put", key: pointer, value: id },
        ],
      );
      if (res.succeeded) return;
    }
    throw new Error(`could not record error "${tag}" of ${task}: too much contention`);
  }

  /**
   * Remove the task's oldest records (by creation) until at most `keep`
   * remain; the host's tags (isHostTag) are kept and do not count.
   */
  async #makeRoom(task: string, keep: number): Promise<void> {
    const dir = this.#layout.statusDir(task) + STATUS_KEYS.errors;
    const { kvs } = await this.#store.range(dir);
    const own = kvs
      .filter((kv) => !isHostTag(kv.key.slice(dir.length)))
      .sort((a, b) => a.createRevision - b.createRevision);
    for (const kv of own.slice(0, Math.max(0, own.length - keep))) {
      await this.clear(task, kv.key.slice(dir.length));
    }
  }

  /** Clear error `tag` of `task` (nothing happens when there is none). */
  async clear(task: string, tag: string): Promise<void> {
    checkTag(tag);
    const pointer = this.#pointer(task, tag);
    const ptr = await this.#store.get(pointer);
    if (!ptr) return;
    await this.#store.txn(
      [{ key: pointer, target: "modRevision", op: "==", value: ptr.modRevision }],
      [
        { type: "delete", key: this.#record(tag, ptr.value), prefix: true },
        { type: "delete", key: pointer },
      ],
    );
  }

  /** Every record of a task in the tree below `prefix` (a task path), sorted by location and tag. */
  async list(prefix = ""): Promise<ErrorRecord[]> {
    const base = this.#layout.errorsPrefix;
    const { kvs } = await this.#store.range(base);
    return parseErrorRecords(base, kvs.map((kv) => [kv.key, kv.value] as const))
      .filter((r) => inTree(r.loc, prefix))
      .sort((a, b) => a.loc < b.loc ? -1 : a.loc > b.loc ? 1 : a.tag < b.tag ? -1 : 1);
  }
}
