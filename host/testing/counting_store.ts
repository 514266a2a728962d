/**
 * A `Store` that counts the operations made through it, by kind, and passes
 * each to the store it wraps: for tests that hold a code path to the store
 * operations it needs (e.g. one `moat.data.set` is one transaction).
 *
 * @example
 * ```ts
 * import { MemoryStore } from "../store/memory_store.ts";
 * import { CountingStore } from "./counting_store.ts";
 *
 * const store = new CountingStore(new MemoryStore());
 * await store.put("/a", "1");
 * await store.range("/");
 * if (store.count("put") !== 1 || store.total() !== 2) throw new Error("miscounted");
 * store.reset();
 * await store.close();
 * ```
 *
 * @module
 */

import type {
  Compare,
  KeyValue,
  Lease,
  LeaseOptions,
  RangeOptions,
  RangeResult,
  Store,
  TxnOp,
  TxnResult,
  Watch,
  WatchEvent,
  WatchOptions,
} from "../store/store.ts";

/** The operations a `CountingStore` counts: every method of `Store` but `close`. */
export type StoreOperation = "get" | "range" | "put" | "delete" | "txn" | "watch" | "grantLease";

/** A store that counts the operations made through it; see the module doc. */
export class CountingStore implements Store {
  #inner: Store;
  #counts = new Map<StoreOperation, number>();
  /** Every operation in order, with the key or prefix it named (`txn`: its first op's key). */
  readonly log: { op: StoreOperation; key: string }[] = [];

  /** Count the operations made on `inner`. */
  constructor(inner: Store) {
    this.#inner = inner;
  }

  /** How many `op`s were made since the start or the last `reset`. */
  count(op: StoreOperation): number {
    return this.#counts.get(op) ?? 0;
  }

  /** How many operations of any kind were made (watches and leases included). */
  total(): number {
    let n = 0;
    for (const v of this.#counts.values()) n += v;
    return n;
  }

  /** The counts by operation, for messages: `{ range: 4, txn: 1 }`. */
  counts(): Partial<Record<StoreOperation, number>> {
    return Object.fromEntries(this.#counts);
  }

  /** Start counting from zero. */
  reset(): void {
    this.#counts.clear();
    this.log.length = 0;
  }

  #count(op: StoreOperation, key: string): void {
    this.#counts.set(op, this.count(op) + 1);
    this.log.push({ op, key });
  }

  /** See `Store.get`. */
  get(key: string): Promise<KeyValue | undefined> {
    this.#count("get", key);
    return this.#inner.get(key);
  }

  /** See `Store.range`. */
  range(prefix: string, options?: RangeOptions): Promise<RangeResult> {
    this.#count("range", prefix);
    return this.#inner.range(prefix, options);
  }

  /** See `Store.put`. */
  put(key: string, value: string, options?: { lease?: string }): Promise<number> {
    this.#count("put", key);
    return this.#inner.put(key, value, options);
  }

  /** See `Store.delete`. */
  delete(key: string, options?: { prefix?: boolean }): Promise<number> {
    this.#count("delete", key);
    return this.#inner.delete(key, options);
  }

  /** See `Store.txn`. */
  txn(compares: Compare[], success: TxnOp[], failure?: TxnOp[]): Promise<TxnResult> {
    this.#count("txn", success[0]?.key ?? compares[0]?.key ?? "");
    return this.#inner.txn(compares, success, failure);
  }

  /** See `Store.watch`. */
  watch(
    prefix: string,
    onEvents: (events: WatchEvent[]) => void,
    options?: WatchOptions,
  ): Promise<Watch> {
    this.#count("watch", prefix);
    return this.#inner.watch(prefix, onEvents, options);
  }

  /** See `Store.grantLease`. */
  grantLease(ttl: number, options?: LeaseOptions): Promise<Lease> {
    this.#count("grantLease", String(ttl));
    return this.#inner.grantLease(ttl, options);
  }

  /** Closes the wrapped store. */
  close(): Promise<void> {
    return this.#inner.close();
  }
}
