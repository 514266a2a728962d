/**
 * A `Store` whose lease keep-alives can be stalled, as a host that stalls or
 * loses etcd for a while: the leases it grants are kept alive by this
 * wrapper (on the given clock) instead of by the wrapped store, and
 * `stall()` stops every keep-alive until `resume()`. A stalled lease
 * expires after its TTL and reports itself lost, exactly as with etcd.
 * Everything else passes through.
 *
 * @example
 * ```ts
 * import { MemoryStore } from "../store/memory_store.ts";
 * import { VirtualClock } from "../time/virtual_clock.ts";
 * import { StallingStore } from "./stalling_store.ts";
 *
 * const clock = new VirtualClock(0);
 * const store = new StallingStore(new MemoryStore({ clock }), clock);
 * const lease = await store.grantLease(10);
 * store.stall();
 * await clock.advance(11_000);
 * await lease.lost; // expired: nobody kept it alive
 * await store.close();
 * ```
 *
 * @module
 */

import type { Clock } from "../time/clock.ts";
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

/** A store whose keep-alives can be stalled; see the module doc. */
export class StallingStore implements Store {
  #inner: Store;
  #clock: Clock;
  #stalled = false;
  #keepAlives = 0;
  #closing = new AbortController();

  /** Wrap `inner`; keep-alives are timed by `clock` (the inner store's clock). */
  constructor(inner: Store, clock: Clock) {
    this.#inner = inner;
    this.#clock = clock;
  }

  /** Stop every keep-alive from now on. */
  stall(): void {
    this.#stalled = true;
  }

  /** Keep leases alive again (those not yet expired). */
  resume(): void {
    this.#stalled = false;
  }

  /** Keep-alives sent so far. */
  get keepAlives(): number {
    return this.#keepAlives;
  }

  /** See `Store.grantLease`; keep-alives every `keepAliveEvery` s (default ttl / 3) unless stalled. */
  async grantLease(ttl: number, options: LeaseOptions = {}): Promise<Lease> {
    const lease = await this.#inner.grantLease(ttl, { keepAliveEvery: 0 });
    const every = (options.keepAliveEvery ?? ttl / 3) * 1000;
    if (every > 0) {
      const stop = this.#closing.signal;
      let gone = false;
      void lease.lost.then(() => gone = true);
      const tick = (): void => {
        this.#clock.sleepUntil(this.#clock.now() + every, stop).then(async () => {
          if (gone) return;
          if (!this.#stalled) {
            this.#keepAlives++;
            await lease.keepAliveOnce().catch(() => gone = true);
          }
          if (!gone) tick();
        }, () => {/* closed */});
      };
      tick();
      const revoke = lease.revoke.bind(lease);
      return {
        id: lease.id,
        ttl: lease.ttl,
        lost: lease.lost,
        held: () => lease.held(),
        keepAliveOnce: () => lease.keepAliveOnce(),
        revoke: () => {
          gone = true;
          return revoke();
        },
      };
    }
    return lease;
  }

  /** See `Store.get`. */
  get(key: string): Promise<KeyValue | undefined> {
    return this.#inner.get(key);
  }

  /** See `Store.range`. */
  range(prefix: string, options?: RangeOptions): Promise<RangeResult> {
    return this.#inner.range(prefix, options);
  }

  /** See `Store.put`. */
  put(key: string, value: string, options?: { lease?: string }): Promise<number> {
    return this.#inner.put(key, value, options);
  }

  /** See `Store.delete`. */
  delete(key: string, options?: { prefix?: boolean }): Promise<number> {
    return this.#inner.delete(key, options);
  }

  /** See `Store.txn`. */
  txn(compares: Compare[], success: TxnOp[], failure?: TxnOp[]): Promise<TxnResult> {
    return this.#inner.txn(compares, success, failure);
  }

  /** See `Store.watch`. */
  watch(
    prefix: string,
    onEvents: (events: WatchEvent[]) => void,
    options?: WatchOptions,
  ): Promise<Watch> {
    return this.#inner.watch(prefix, onEvents, options);
  }

  /** Stop the keep-alives and close the wrapped store. Safe to call twice. */
  close(): Promise<void> {
    this.#closing.abort();
    return this.#inner.close();
  }
}
