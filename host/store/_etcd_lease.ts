/**
 * One lease of an EtcdStore: granted with a TTL, kept alive on a timer,
 * and reported lost when etcd no longer has it — or could have expired it.
 *
 * The fence: etcd restarts a lease's TTL when it *receives* a keep-alive,
 * which is after we sent it and before its answer reaches us. So the
 * lease's life is counted from the moment the request was sent (the grant,
 * or the last keep-alive that etcd confirmed): it cannot expire in etcd
 * before `sent + ttl`. The lease says it is no longer `held()`, and resolves
 * `lost`, a margin (`leaseFenceMarginMs`) before that moment. Both the
 * monotonic clock and the wall clock count: a suspended machine (where the
 * monotonic clock stands still) and a wall clock set back each can only
 * make the lease end sooner, never later.
 *
 * @module
 */

import { type Lease, leaseFenceMarginMs } from "./store.ts";
import type { EtcdStore } from "./etcd_store.ts";

/** A moment on both clocks: `performance.now()` and `Date.now()`, ms. */
export interface Moment {
  mono: number;
  wall: number;
}

/** Now, on both clocks. */
export function moment(): Moment {
  return { mono: performance.now(), wall: Date.now() };
}

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
  /** Checks (at least every second) whether the fence closed: the lease is then lost. */
  #watchdog: Timer | undefined;
  #done = false;
  /** Lost by our own watchdog: etcd may still hold it (and its keys) until it expires there. */
  #timedOut = false;
  #revoking: Promise<void> | undefined;
  /** The earliest moment etcd may expire the lease: the last confirmed send plus the TTL. */
  #until: Moment;
  readonly #marginMs: number;

  /**
   * A lease etcd granted with `ttl` for a request sent at `sent`, kept
   * alive every `everyMs` (at most every `(ttl - margin) / 2`, so that one
   * failed keep-alive can be retried before the fence closes).
   */
  constructor(store: EtcdStore, id: string, ttl: number, everyMs: number, sent: Moment) {
    this.#store = store;
    this.id = id;
    this.ttl = ttl;
    this.#marginMs = leaseFenceMarginMs(ttl);
    this.#everyMs = everyMs <= 0 ? everyMs : Math.min(everyMs, (ttl * 1000 - this.#marginMs) / 2);
    this.#until = { mono: sent.mono + ttl * 1000, wall: sent.wall + ttl * 1000 };
    const { promise, resolve } = Promise.withResolvers<Error>();
    this.lost = promise;
    this.#resolveLost = resolve;
    this.#armWatchdog();
    this.#scheduleKeepAlive();
  }

  /** Milliseconds the fence stays open, on the more pessimistic clock. */
  #leftMs(): number {
    const now = moment();
    return Math.min(this.#until.mono - now.mono, this.#until.wall - now.wall) - this.#marginMs;
  }

  held(): boolean {
    if (this.#done) return false;
    if (this.#leftMs() > 0) return true;
    this.#expire();
    return false;
  }

  #expire(): void {
    this.#timedOut = true;
    const s = (this.ttl * 1000 - this.#marginMs) / 1000;
    this.#lose(
      new Error(
        `Lease ${this.id} lost: no keep-alive succeeded for ${s} s (counted from when it ` +
          `was sent; etcd could expire the lease ${this.#marginMs} ms later)`,
      ),
    );
  }

  #armWatchdog(): void {
    clearTimeout(this.#watchdog);
    const check = () => {
      const left = this.#leftMs();
      // At least every second: a suspend (the monotonic clock stood still)
      // shows only on the wall clock, and timers may fire a little early.
      if (left > 0) this.#watchdog = setTimeout(check, Math.min(left, 1000));
      else this.#expire();
    };
    this.#watchdog = setTimeout(check, Math.max(0, Math.min(this.#leftMs(), 1000)));
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
    // etcd restarts the TTL when it receives the request: count from now.
    const sent = moment();
    const ttl = await this.#store._keepAlive(this.id);
    if (this.#done) throw new Error(`Cannot keep lease ${this.id} alive: it is gone`);
    if (ttl <= 0) {
      const error = new Error(`Lease ${this.id} lost: etcd no longer knows it`);
      this.#lose(error);
      throw error;
    }
    const life = Math.min(ttl, this.ttl) * 1000;
    this.#until = {
      mono: Math.max(this.#until.mono, sent.mono + life),
      wall: Math.max(this.#until.wall, sent.wall + life),
    };
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
