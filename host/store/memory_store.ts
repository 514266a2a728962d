/**
 * `MemoryStore`: the embedded `Store`, with etcd's semantics in one process.
 *
 * Revisions work as in etcd: an empty store is at revision 1 and every write
 * (a put, a delete that deletes something, a transaction that changes
 * something) raises it by one, so the first write is revision 2. Lease
 * expiry and keep-alives run on an injected `Clock`.
 *
 * @module
 */

import { type Clock, SystemClock } from "../time/clock.ts";
import {
  type Compare,
  type KeyValue,
  type Lease,
  type LeaseOptions,
  rangeBounds,
  type RangeOptions,
  type RangeResult,
  RangeTooLargeError,
  type Store,
  StoreCompactedError,
  type TxnOp,
  type TxnResponse,
  type TxnResult,
  type Watch,
  type WatchEvent,
  type WatchOptions,
} from "./store.ts";

/** Options of `MemoryStore`. */
export interface MemoryStoreOptions {
  /**
   * The clock that drives lease expiry and automatic keep-alives.
   * @default new SystemClock()
   */
  clock?: Clock;
  /**
   * How many revisions of change history are kept for watches with a
   * `startRevision`; older start revisions fail with `StoreCompactedError`.
   * @default 10000
   */
  historySize?: number;
}

interface LeaseRecord {
  readonly id: string;
  readonly ttl: number;
  expiresAt: number;
  readonly keys: Set<string>;
  /** Aborts the pending expiry sleep (re-armed on every keep-alive). */
  expiry: AbortController;
  /** Aborts the automatic keep-alive loop. */
  readonly keepAlive: AbortController;
  readonly resolveLost: (reason: Error) => void;
}

interface Change {
  type: "put" | "delete";
  key: string;
  value?: string;
  lease?: string;
}

/** Compare two strings by Unicode code point, which is etcd's UTF-8 byte order. */
function compareKeys(a: string, b: string): number {
  const length = Math.min(a.length, b.length);
  for (let i = 0; i < length; i++) {
    const x = a.codePointAt(i)!;
    const y = b.codePointAt(i)!;
    if (x !== y) return x < y ? -1 : 1;
    if (x > 0xffff) i++;
  }
  return a.length - b.length;
}

/** The length of `text` in UTF-8 bytes, without encoding it. */
function utf8Length(text: string): number {
  let length = 0;
  for (let i = 0; i < text.length; i++) {
    const unit = text.charCodeAt(i);
    if (unit < 0x80) length += 1;
    else if (unit < 0x800) length += 2;
    else if (unit >= 0xd800 && unit <= 0xdbff && i + 1 < text.length) {
      const next = text.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        // A surrogate pair: one code point of four bytes.
        length += 4;
        i++;
      } else {
        length += 3;
      }
    } else length += 3;
  }
  return length;
}

function holds(op: Compare["op"], order: number): boolean {
  switch (op) {
    case "==":
      return order === 0;
    case "!=":
      return order !== 0;
    case "<":
      return order < 0;
    case ">":
      return order > 0;
  }
}

function validateLeaseId(lease: string | undefined): string {
  if (lease === undefined || lease === "0") return "0";
  if (!/^[1-9][0-9]*$/.test(lease)) {
    throw new TypeError(`Invalid lease id "${lease}": expected decimal digits`);
  }
  return lease;
}

class MemoryWatch implements Watch {
  readonly #prefix: string;
  readonly #onEvents: (events: WatchEvent[]) => void;
  readonly #onError: ((error: Error) => void) | undefined;
  readonly #detach: (watch: MemoryWatch) => void;
  #queue: WatchEvent[][] = [];
  #scheduled = false;
  #closed = false;

  constructor(
    prefix: string,
    onEvents: (events: WatchEvent[]) => void,
    onError: ((error: Error) => void) | undefined,
    detach: (watch: MemoryWatch) => void,
  ) {
    this.#prefix = prefix;
    this.#onEvents = onEvents;
    this.#onError = onError;
    this.#detach = detach;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Queue the events of one revision that match the prefix. */
  offer(events: readonly WatchEvent[]): void {
    if (this.#closed) return;
    const mine = events.filter((e) => e.kv.key.startsWith(this.#prefix));
    if (mine.length === 0) return;
    this.#queue.push(mine.map(copyEvent));
    this.#schedule();
  }

  /** Report a fatal error (asynchronously) and close. */
  fail(error: Error): void {
    this.#detach(this);
    this.#closed = true;
    this.#queue = [];
    queueMicrotask(() => this.#onError?.(error));
  }

  #schedule(): void {
    if (this.#scheduled) return;
    this.#scheduled = true;
    // Deliver asynchronously, as a real store does, but strictly in order.
    queueMicrotask(() => this.#drain());
  }

  #drain(): void {
    this.#scheduled = false;
    // Bounded by the queue; a callback that writes queues more and reschedules.
    const batches = this.#queue;
    this.#queue = [];
    for (const batch of batches) {
      if (this.#closed) return;
      try {
        this.#onEvents(batch);
      } catch (error) {
        // A throwing callback is the caller's bug: surface it, keep delivering.
        queueMicrotask(() => {
          throw error;
        });
      }
    }
  }

  close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      this.#queue = [];
      this.#detach(this);
    }
    return Promise.resolve();
  }
}

function copyKv(kv: KeyValue): KeyValue {
  return { ...kv };
}

function copyEvent(event: WatchEvent): WatchEvent {
  const copy: WatchEvent = { type: event.type, kv: copyKv(event.kv) };
  if (event.prevKv) copy.prevKv = copyKv(event.prevKv);
  return copy;
}

class MemoryLease implements Lease {
  readonly id: string;
  readonly ttl: number;
  readonly lost: Promise<Error>;
  readonly #keepAliveOnce: () => Promise<void>;
  readonly #revoke: () => Promise<void>;
  readonly #held: () => boolean;

  constructor(
    id: string,
    ttl: number,
    lost: Promise<Error>,
    keepAliveOnce: () => Promise<void>,
    revoke: () => Promise<void>,
    held: () => boolean,
  ) {
    this.id = id;
    this.ttl = ttl;
    this.lost = lost;
    this.#keepAliveOnce = keepAliveOnce;
    this.#revoke = revoke;
    this.#held = held;
  }

  /** In memory there is no link to lose: held while the store has it and its time is not up. */
  held(): boolean {
    return this.#held();
  }

  keepAliveOnce(): Promise<void> {
    return this.#keepAliveOnce();
  }

  revoke(): Promise<void> {
    return this.#revoke();
  }
}

/**
 * The embedded `Store`: everything in memory, the same semantics as etcd
 * (revisions, versions, transactions, prefix watches with history replay,
 * leases). Used by `deno task demo` and as the test double of `EtcdStore`.
 *
 * @example
 * ```ts
 * import { MemoryStore } from "./memory_store.ts";
 * const store = new MemoryStore();
 * const revision = await store.put("/moat/a", "1");
 * console.assert((await store.get("/moat/a"))?.modRevision === revision);
 * await store.close();
 * ```
 */
export class MemoryStore implements Store {
  readonly #clock: Clock;
  readonly #historySize: number;
  readonly #kv = new Map<string, KeyValue>();
  #revision = 1;
  /** Events per revision, oldest first; revisions ≤ #compacted are gone. */
  #history: { revision: number; events: WatchEvent[] }[] = [];
  #compacted = 0;
  readonly #watches = new Set<MemoryWatch>();
  readonly #leases = new Map<string, LeaseRecord>();
  #nextLease = 0x1000;
  #closed = false;

  /** An empty store at revision 1. */
  constructor(options: MemoryStoreOptions = {}) {
    this.#clock = options.clock ?? new SystemClock();
    const historySize = options.historySize ?? 10_000;
    if (!Number.isInteger(historySize) || historySize < 1) {
      throw new RangeError(`Invalid historySize ${historySize}: expected an integer ≥ 1`);
    }
    this.#historySize = historySize;
  }

  #checkOpen(): void {
    if (this.#closed) throw new Error("MemoryStore is closed");
  }

  get(key: string): Promise<KeyValue | undefined> {
    return this.#async(() => {
      const kv = this.#kv.get(key);
      return kv ? copyKv(kv) : undefined;
    });
  }

  range(prefix: string, options: RangeOptions = {}): Promise<RangeResult> {
    return this.#async(() => {
      const { maxKeys, maxBytes } = rangeBounds(options);
      if (maxKeys === Infinity && maxBytes === Infinity) {
        return { kvs: this.#rangeNow(prefix, true), revision: this.#revision };
      }
      // Checked while collecting, so an oversized range is refused before
      // it is copied whole.
      const kvs: KeyValue[] = [];
      let size = 0;
      for (const kv of this.#kv.values()) {
        if (!kv.key.startsWith(prefix)) continue;
        if (kvs.length + 1 > maxKeys) throw new RangeTooLargeError(prefix, "keys", maxKeys);
        size += utf8Length(kv.key) + utf8Length(kv.value);
        if (size > maxBytes) throw new RangeTooLargeError(prefix, "bytes", maxBytes);
        kvs.push(copyKv(kv));
      }
      return { kvs: kvs.sort((a, b) => compareKeys(a.key, b.key)), revision: this.#revision };
    });
  }

  put(key: string, value: string, options: { lease?: string } = {}): Promise<number> {
    return this.#async(() => {
      const change: Change = { type: "put", key, value };
      if (options.lease !== undefined) change.lease = options.lease;
      this.#commit([change]);
      return this.#revision;
    });
  }

  delete(key: string, options: { prefix?: boolean } = {}): Promise<number> {
    return this.#async(() => {
      const keys = options.prefix ? this.#rangeNow(key, false).map((kv) => kv.key) : [key];
      return this.#commit(keys.map((k) => ({ type: "delete", key: k })));
    });
  }

  txn(compares: Compare[], success: TxnOp[], failure: TxnOp[] = []): Promise<TxnResult> {
    return this.#async(() => {
      const succeeded = compares.every((c) => this.#compare(c));
      const ops = succeeded ? success : failure;
      this.#validateTxn(ops);
      // Every write of one transaction shares one revision, as in etcd; reads
      // inside it see the writes before them.
      const responses: TxnResponse[] = [];
      const pending: WatchEvent[] = [];
      const revision = this.#revision + 1;
      for (const op of ops) {
        if (op.type === "get") {
          const kvs = op.prefix
            ? this.#rangeNow(op.key, true)
            : [this.#kv.get(op.key)].filter((kv) => kv !== undefined).map(copyKv);
          responses.push({ type: "get", kvs });
        } else if (op.type === "put") {
          const change: Change = { type: "put", key: op.key, value: op.value };
          if (op.lease !== undefined) change.lease = op.lease;
          pending.push(this.#applyChange(change, revision));
          responses.push({ type: "put" });
        } else {
          const keys = op.prefix ? this.#rangeNow(op.key, false).map((kv) => kv.key) : [op.key];
          let deleted = 0;
          for (const key of keys) {
            if (!this.#kv.has(key)) continue;
            pending.push(this.#applyChange({ type: "delete", key }, revision));
            deleted++;
          }
          responses.push({ type: "delete", deleted });
        }
      }
      this.#publish(revision, pending);
      return { succeeded, revision: this.#revision, responses };
    });
  }

  watch(
    prefix: string,
    onEvents: (events: WatchEvent[]) => void,
    options: WatchOptions = {},
  ): Promise<Watch> {
    return this.#async(() => {
      const watch = new MemoryWatch(
        prefix,
        onEvents,
        options.onError,
        (w) => this.#watches.delete(w),
      );
      const start = options.startRevision;
      if (start !== undefined && start > 0 && start <= this.#revision) {
        if (start <= this.#compacted) {
          watch.fail(
            new StoreCompactedError(
              `Cannot watch "${prefix}" from revision ${start}: ` +
                `history before revision ${this.#compacted + 1} was compacted`,
            ),
          );
          return watch;
        }
        // Replay and subscribe in one synchronous step, so nothing falls between.
        for (const entry of this.#history) {
          if (entry.revision >= start) watch.offer(entry.events);
        }
      }
      this.#watches.add(watch);
      return watch;
    });
  }

  grantLease(ttl: number, options: LeaseOptions = {}): Promise<Lease> {
    return this.#async(() => {
      if (!Number.isInteger(ttl) || ttl < 1) {
        throw new RangeError(`Invalid lease TTL ${ttl}: expected whole seconds ≥ 1`);
      }
      const every = options.keepAliveEvery ?? ttl / 3;
      if (!(every >= 0) || !Number.isFinite(every)) {
        throw new RangeError(`Invalid keepAliveEvery ${every}: expected seconds ≥ 0`);
      }
      const id = String(this.#nextLease++);
      const { promise: lost, resolve: resolveLost } = Promise.withResolvers<Error>();
      const record: LeaseRecord = {
        id,
        ttl,
        expiresAt: this.#clock.now() + ttl * 1000,
        keys: new Set(),
        expiry: new AbortController(),
        keepAlive: new AbortController(),
        resolveLost,
      };
      this.#leases.set(id, record);
      this.#armExpiry(record);
      if (every > 0) this.#keepAliveLoop(record, every * 1000);
      return new MemoryLease(
        id,
        ttl,
        lost,
        () =>
          this.#async(() => {
            if (this.#leases.get(id) !== record) {
              throw new Error(`Cannot keep lease ${id} alive: it is gone`);
            }
            this.#refresh(record);
          }),
        () => {
          if (this.#closed || this.#leases.get(id) !== record) return Promise.resolve();
          return this.#async(() => this.#dropLease(record));
        },
        // Expired on the store's clock, even before its expiry timer ran.
        () =>
          !this.#closed && this.#leases.get(id) === record &&
          this.#clock.now() < record.expiresAt,
      );
    });
  }

  /**
   * Forget the change history up to and including `revision` (as etcd's
   * compaction does): watches starting at or before it fail with
   * `StoreCompactedError`.
   */
  compact(revision: number): Promise<void> {
    return this.#async(() => {
      if (revision > this.#revision) {
        throw new RangeError(
          `Cannot compact to revision ${revision}: the store is at ${this.#revision}`,
        );
      }
      if (revision <= this.#compacted) return;
      this.#compacted = revision;
      this.#history = this.#history.filter((entry) => entry.revision > revision);
    });
  }

  close(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    this.#closed = true;
    for (const watch of [...this.#watches]) void watch.close();
    for (const record of this.#leases.values()) {
      record.expiry.abort();
      record.keepAlive.abort();
      record.resolveLost(new Error(`Lease ${record.id} is no longer kept alive: store closed`));
    }
    this.#leases.clear();
    return Promise.resolve();
  }

  /** Run `fn` now and hand back its result as a promise (rejecting on throw). */
  #async<T>(fn: () => T): Promise<T> {
    try {
      this.#checkOpen();
      return Promise.resolve(fn());
    } catch (error) {
      return Promise.reject(error);
    }
  }

  #rangeNow(prefix: string, copy: boolean): KeyValue[] {
    const kvs: KeyValue[] = [];
    for (const kv of this.#kv.values()) {
      if (kv.key.startsWith(prefix)) kvs.push(copy ? copyKv(kv) : kv);
    }
    return kvs.sort((a, b) => compareKeys(a.key, b.key));
  }

  #compare(c: Compare): boolean {
    const kv = this.#kv.get(c.key);
    if (c.target === "value") {
      // As in etcd, a value compare on a missing key never holds.
      return kv !== undefined && holds(c.op, compareKeys(kv.value, c.value));
    }
    const actual = kv?.[c.target] ?? 0;
    return holds(c.op, actual - c.value);
  }

  #validateTxn(ops: TxnOp[]): void {
    const puts = new Set<string>();
    for (const op of ops) {
      if (op.type !== "put") continue;
      if (puts.has(op.key)) {
        throw new TypeError(`Invalid transaction: key "${op.key}" is put twice`);
      }
      puts.add(op.key);
      this.#leaseFor(op.lease);
    }
    for (const op of ops) {
      if (op.type !== "delete") continue;
      for (const key of puts) {
        if (op.prefix ? key.startsWith(op.key) : key === op.key) {
          throw new TypeError(`Invalid transaction: key "${key}" is both put and deleted`);
        }
      }
    }
  }

  #leaseFor(lease: string | undefined): LeaseRecord | undefined {
    const id = validateLeaseId(lease);
    if (id === "0") return undefined;
    const record = this.#leases.get(id);
    if (!record) throw new Error(`Cannot attach lease ${id}: lease not found`);
    return record;
  }

  /** Apply one-revision `changes`; returns how many changed something. */
  #commit(changes: Change[]): number {
    for (const change of changes) {
      if (change.type === "put") this.#leaseFor(change.lease);
    }
    const revision = this.#revision + 1;
    const events: WatchEvent[] = [];
    for (const change of changes) {
      if (change.type === "delete" && !this.#kv.has(change.key)) continue;
      events.push(this.#applyChange(change, revision));
    }
    this.#publish(revision, events);
    return events.length;
  }

  /** Apply one validated change at `revision` and return its event. */
  #applyChange(change: Change, revision: number): WatchEvent {
    const prev = this.#kv.get(change.key);
    if (prev && prev.lease !== "0") this.#leases.get(prev.lease)?.keys.delete(change.key);
    if (change.type === "delete") {
      this.#kv.delete(change.key);
      const kv: KeyValue = {
        key: change.key,
        value: "",
        createRevision: 0,
        modRevision: revision,
        version: 0,
        lease: "0",
      };
      return { type: "delete", kv, prevKv: prev! };
    }
    const lease = this.#leaseFor(change.lease);
    const kv: KeyValue = {
      key: change.key,
      value: change.value ?? "",
      createRevision: prev?.createRevision ?? revision,
      modRevision: revision,
      version: (prev?.version ?? 0) + 1,
      lease: lease?.id ?? "0",
    };
    this.#kv.set(change.key, kv);
    lease?.keys.add(change.key);
    const event: WatchEvent = { type: "put", kv };
    if (prev) event.prevKv = prev;
    return event;
  }

  /** Record the events of `revision` (if any) and hand them to the watches. */
  #publish(revision: number, events: WatchEvent[]): void {
    if (events.length === 0) return;
    this.#revision = revision;
    this.#history.push({ revision, events });
    if (this.#history.length > this.#historySize) {
      const dropped = this.#history.splice(0, this.#history.length - this.#historySize);
      this.#compacted = dropped[dropped.length - 1]!.revision;
    }
    for (const watch of this.#watches) watch.offer(events);
  }

  #refresh(record: LeaseRecord): void {
    record.expiresAt = this.#clock.now() + record.ttl * 1000;
    record.expiry.abort();
    record.expiry = new AbortController();
    this.#armExpiry(record);
  }

  #armExpiry(record: LeaseRecord): void {
    const signal = record.expiry.signal;
    this.#clock.sleepUntil(record.expiresAt, signal).then(
      () => {
        if (signal.aborted || this.#leases.get(record.id) !== record) return;
        if (this.#clock.now() < record.expiresAt) return this.#armExpiry(record);
        this.#dropLease(record);
        record.resolveLost(
          new Error(`Lease ${record.id} expired: no keep-alive within ${record.ttl} s`),
        );
      },
      () => {/* aborted: re-armed or dropped */},
    );
  }

  #keepAliveLoop(record: LeaseRecord, everyMs: number): void {
    const signal = record.keepAlive.signal;
    const tick = (): void => {
      this.#clock.sleepUntil(this.#clock.now() + everyMs, signal).then(
        () => {
          if (signal.aborted || this.#leases.get(record.id) !== record) return;
          this.#refresh(record);
          tick();
        },
        () => {/* aborted: the lease is gone */},
      );
    };
    tick();
  }

  /** Stop the lease's timers, forget it and delete its keys in one revision. */
  #dropLease(record: LeaseRecord): void {
    record.expiry.abort();
    record.keepAlive.abort();
    this.#leases.delete(record.id);
    const keys = [...record.keys].sort(compareKeys);
    this.#commit(keys.map((key) => ({ type: "delete", key })));
  }
}
