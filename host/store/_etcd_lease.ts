/**
 * One lease of an EtcdStore: granted with a TTL, kept alive on a timer,
 * and reported lost when etcd no longer has it.
 *
 * @module
 */

import type { Lease } from "./store.ts";
import type { EtcdStore } from "./etcd_store.ts";

type Timer = ReturnType<typeof setTimeout>;

/** Pause before trying again after a failed lease keep-alive. */
export const KEEPALIVE_RETRY_MS = 250;

export class EtcdLease implements Lease {
  readonly id: string;
  readonly ttl: number;
  readonly lost: Promise<Error>;
  readonly #store: EtcdStore;
  readonly #resolveLost: (reason: Error) => void;
  readonly #everyMs: number;
  #keepAliveTimer: Timer | undefined;
  /** Fires when no keep-alive succeeded for a whole TTL. */
  #watchdog: Timer | undefined;
  #done = false;
  /** Lost by our own watchdog: etcd may still hold it (and its keys) until it expires there. */
  #timedOut = false;
  #revoking: Promise<void> | undefined;

  constructor(store: EtcdStore, id: string, ttl: number, everyMs: number) {
    this.#store = store;
    this.id = id;
    this.ttl = ttl;
    this.#everyMs = everyMs;
    const { promise, resolve } = Promise.withResolvers<Error>();
    this.lost = promise;
    this.#resolveLost = resolve;
    this.#armWatchdog();
    this.#scheduleKeepAlive();
  }

  #armWatchdog(): void {
    clearTimeout(this.#watchdog);
    this.#watchdog = setTimeout(() => {
      this.#timedOut = true;
      this.#lose(new Error(`Lease ${this.id} lost: no keep-alive succeeded for ${this.ttl} s`));
    }, this.ttl * 1000);
  }

  #scheduleKeepAlive(afterMs = this.#everyMs): void {
    if (this.#everyMs <= 0 || this.#done) return;
    this.#keepAliveTimer = setTimeout(() => {
      this.#keepAliveTimer = undefined;
      this.keepAliveOnce().then(
        () => this.#scheduleKeepAlive(),
        // A failed keep-alive (a member died, an election) is tried again
        // soon: waiting the full interval (ttl / refresh, often ttl / 2)
        // would let the watchdog lose a lease that one retry could keep.
        () => this.#scheduleKeepAlive(Math.min(this.#everyMs, KEEPALIVE_RETRY_MS)),
      );
    }, afterMs);
  }

  #stop(): void {
    this.#done = true;
    clearTimeout(this.#keepAliveTimer);
    clearTimeout(this.#watchdog);
    this.#keepAliveTimer = undefined;
    this.#watchdog = undefined;
  }

  #lose(reason: Error): void {
    if (this.#done) return;
    this.#stop();
    this.#store._forget(this);
    this.#resolveLost(reason);
  }

  async keepAliveOnce(): Promise<void> {
    if (this.#done) throw new Error(`Cannot keep lease ${this.id} alive: it is gone`);
    const ttl = await this.#store._keepAlive(this.id);
    if (this.#done) throw new Error(`Cannot keep lease ${this.id} alive: it is gone`);
    if (ttl <= 0) {
      const error = new Error(`Lease ${this.id} lost: etcd no longer knows it`);
      this.#lose(error);
      throw error;
    }
    this.#armWatchdog();
  }

  /** Stop keep-alives without revoking (the store is closing). */
  abandon(): void {
    this.#lose(new Error(`Lease ${this.id} is no longer kept alive: store closed`));
  }

  revoke(): Promise<void> {
    if (this.#revoking) return this.#revoking;
    // A lease our watchdog gave up on may still live in etcd (after an
    // outage etcd even renews every lease): revoke it anyway, so that its
    // `running` key goes now and not a whole ttl after etcd is back.
    const needed = !this.#done || this.#timedOut;
    this.#stop();
    this.#store._forget(this);
    this.#revoking = needed ? this.#store._revoke(this.id) : Promise.resolve();
    return this.#revoking;
  }
}
