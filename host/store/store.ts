/**
 * The `Store` interface: the part of etcd v3 that moat-scripts uses.
 *
 * Two implementations pass one contract suite (`store_contract.ts`):
 * `EtcdStore` (a real etcd 3 server, via npm:etcd3) and `MemoryStore`
 * (the embedded default). Keys and values are UTF-8 strings.
 *
 * @module
 */

/** One key with its value and etcd metadata. */
export interface KeyValue {
  /** The full key. */
  key: string;
  /** The value as UTF-8 text. */
  value: string;
  /** Revision at which the key was created (0 never appears for a live key). */
  createRevision: number;
  /** Revision of the last modification. */
  modRevision: number;
  /** Number of modifications since creation (1 after the first put). */
  version: number;
  /** Lease the key is bound to, or "0" when none. */
  lease: string;
}

/** Comparison operator of a transaction guard. */
export type CompareOp = "==" | "!=" | "<" | ">";

/**
 * A transaction guard. A missing key has version 0, createRevision 0,
 * modRevision 0, and never compares equal on `value`.
 */
export type Compare =
  | { key: string; target: "value"; op: CompareOp; value: string }
  | {
    key: string;
    target: "version" | "createRevision" | "modRevision";
    op: CompareOp;
    value: number;
  };

/** One operation inside a transaction. */
export type TxnOp =
  | { type: "put"; key: string; value: string; lease?: string }
  | { type: "delete"; key: string; prefix?: boolean }
  | { type: "get"; key: string; prefix?: boolean };

/** The result of one `TxnOp`, in the same order as the ops. */
export type TxnResponse =
  | { type: "put" }
  | { type: "delete"; deleted: number }
  | { type: "get"; kvs: KeyValue[] };

/** The outcome of `Store.txn`. */
export interface TxnResult {
  /** Whether every compare held (and so `success` ran, else `failure`). */
  succeeded: boolean;
  /** The store revision after the transaction. */
  revision: number;
  /** One response per operation of the branch that ran, in order. */
  responses: TxnResponse[];
}

/** The result of a range read. */
export interface RangeResult {
  /** Matching keys, sorted by key. */
  kvs: KeyValue[];
  /** The store revision the read was served at. */
  revision: number;
}

/** Options of `Store.range`: bounds that keep a read from growing without limit. */
export interface RangeOptions {
  /**
   * The most keys the read may return; a range holding more rejects with
   * `RangeTooLargeError` (limit "keys") without reading the rest.
   * @default no bound
   */
  maxKeys?: number;
  /**
   * The most bytes (UTF-8 keys plus values) the read may return; a range
   * holding more rejects with `RangeTooLargeError` (limit "bytes") without
   * reading the rest.
   * @default no bound
   */
  maxBytes?: number;
}

/** One change seen by a watch. */
export interface WatchEvent {
  /** Whether the key was written or deleted. */
  type: "put" | "delete";
  /** For "delete", `value` is "" and `modRevision` is the deletion's revision. */
  kv: KeyValue;
  /** The value before this change, when the store knows it. */
  prevKv?: KeyValue;
}

/** Options of `Store.watch`. */
export interface WatchOptions {
  /**
   * First revision to deliver. Events from this revision on are replayed.
   * @default the next revision (only future changes)
   */
  startRevision?: number;
  /**
   * Called when the watch cannot continue: the start revision was
   * compacted away (`StoreCompactedError`), the server cancelled the watch,
   * or its stream broke again and again at one revision without delivering
   * anything. The watch is closed by then; events after the last delivered
   * revision may be missing, so the owner re-reads what it follows and
   * watches again (as `WatchHub` does).
   */
  onError?: (error: Error) => void;
}

/** A running watch. */
export interface Watch {
  /** Stop delivering events. Safe to call twice. */
  close(): Promise<void>;
}

/** A granted lease. */
export interface Lease {
  /** The lease id as decimal text. */
  readonly id: string;
  /** The granted TTL in seconds. */
  readonly ttl: number;
  /**
   * Resolves (never rejects) with the reason once the lease is known to be
   * lost: it expired, was revoked elsewhere, or keep-alives failed for
   * longer than the TTL. Not resolved by our own `revoke()`.
   */
  readonly lost: Promise<Error>;
  /**
   * Whether the lease is certainly still held now: etcd cannot have expired
   * it yet. An `EtcdLease` counts its life from when its last confirmed
   * keep-alive (or its grant) was *sent*, and says no a fence margin
   * (`leaseFenceMarginMs`) before that life ends; `lost` resolves then too.
   * The host checks it synchronously before anything that must not happen
   * twice (a scheduled firing, docs/time.md "Catch-up").
   */
  held(): boolean;
  /** Refresh the lease once. Rejects if it is gone. */
  keepAliveOnce(): Promise<void>;
  /** Revoke the lease (deleting its keys) and stop keep-alives. Safe to call twice. */
  revoke(): Promise<void>;
}

/**
 * How long before a lease could expire in etcd its holder treats it as lost:
 * a tenth of the ttl, at least 1 s, but at most a quarter of the ttl (ms).
 * It covers the holder's timer lag and the time it takes to kill a script
 * (docs/time.md, "The lease fence").
 */
export function leaseFenceMarginMs(ttl: number): number {
  return Math.min(Math.max(1000, ttl * 100), ttl * 250);
}

/** Options of `Store.grantLease`. */
export interface LeaseOptions {
  /**
   * Seconds between automatic keep-alives; 0 disables them.
   * @default ttl / 3
   */
  keepAliveEvery?: number;
}

/** Thrown when the backing service cannot be reached in time. */
export class StoreUnavailableError extends Error {
  /** Always `StoreUnavailableError`. */
  override name = "StoreUnavailableError";
  /** Make the error; `options.cause` is the underlying error. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
  }
}

/** Thrown by a watch whose start revision has been compacted. */
export class StoreCompactedError extends Error {
  /** Always `StoreCompactedError`. */
  override name = "StoreCompactedError";
  /** Make the error; `options.cause` is the underlying error. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
  }
}

/**
 * Thrown by `Store.range` when the range holds more keys or bytes than the
 * caller's `RangeOptions` allow.
 */
export class RangeTooLargeError extends Error {
  /** Always "RangeTooLargeError". */
  override name = "RangeTooLargeError";
  /** The prefix that was read. */
  readonly prefix: string;
  /** Which bound was exceeded. */
  readonly limit: "keys" | "bytes";
  /** The bound that was exceeded. */
  readonly bound: number;
  /** The read of `prefix` exceeded `bound` on `limit`. */
  constructor(prefix: string, limit: "keys" | "bytes", bound: number, options?: ErrorOptions) {
    super(`Cannot read "${prefix}": it holds more than ${bound} ${limit}`, options);
    this.prefix = prefix;
    this.limit = limit;
    this.bound = bound;
  }
}

/**
 * Check `RangeOptions` and return its bounds (Infinity where none).
 * @throws {RangeError} when a bound is not a whole number ≥ 0
 */
export function rangeBounds(options: RangeOptions): { maxKeys: number; maxBytes: number } {
  const check = (name: string, value: number | undefined): number => {
    if (value === undefined) return Infinity;
    if (!Number.isSafeInteger(value) || value < 0) {
      throw new RangeError(`Invalid ${name} ${value}: expected a whole number ≥ 0`);
    }
    return value;
  };
  return {
    maxKeys: check("maxKeys", options.maxKeys),
    maxBytes: check("maxBytes", options.maxBytes),
  };
}

/** The key-value store moat-scripts keeps everything in. */
export interface Store {
  /** Read one key; `undefined` when absent. */
  get(key: string): Promise<KeyValue | undefined>;
  /**
   * Read every key starting with `prefix`, sorted by key, all at one
   * revision. A range of any size can be read (a backend reads it in
   * pages); `options` bound it, rejecting with `RangeTooLargeError`.
   */
  range(prefix: string, options?: RangeOptions): Promise<RangeResult>;
  /** Write one key; returns the new revision. */
  put(key: string, value: string, options?: { lease?: string }): Promise<number>;
  /** Delete one key, or every key under a prefix; returns how many were deleted. */
  delete(key: string, options?: { prefix?: boolean }): Promise<number>;
  /** Atomic compare-and-set: all compares hold ⇒ `success` ops, else `failure` ops. */
  txn(compares: Compare[], success: TxnOp[], failure?: TxnOp[]): Promise<TxnResult>;
  /**
   * Watch every key starting with `prefix`. Events arrive in revision
   * order, grouped by revision, none lost and none twice, also across
   * reconnects of the underlying client.
   */
  watch(
    prefix: string,
    onEvents: (events: WatchEvent[]) => void,
    options?: WatchOptions,
  ): Promise<Watch>;
  /** Grant a lease of `ttl` seconds (whole seconds, ≥ 1). */
  grantLease(ttl: number, options?: LeaseOptions): Promise<Lease>;
  /** Release every resource (watches, leases' keep-alives, connections). Safe to call twice. */
  close(): Promise<void>;
}
