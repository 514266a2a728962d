/**
 * One store watch serving many subscribers: the host watches its whole root
 * prefix once and hands each event to the subscribers whose prefix matches,
 * so the number of etcd watch streams does not grow with the number of
 * tasks or monitors.
 *
 * @module
 */

import type { Store, Watch, WatchEvent } from "./store.ts";

/** A subscription of the hub. */
export interface Subscription {
  /** Stop delivering. Safe to call twice. */
  close(): void;
}

type Listener = (events: WatchEvent[]) => void;

/** Fans one prefix watch out to subscribers by key prefix. */
export class WatchHub {
  #store: Store;
  #prefix: string;
  #watch: Watch | undefined;
  #subs = new Map<number, { prefix: string; fn: Listener }>();
  #next = 1;
  #revision = 0;
  #onError: (e: Error) => void;

  /**
   * @param prefix every key any subscriber may ask for starts with this
   */
  constructor(store: Store, prefix: string, options: { onError?: (e: Error) => void } = {}) {
    this.#store = store;
    this.#prefix = prefix;
    this.#onError = options.onError ?? (() => {});
  }

  /** The revision of the last event delivered (0 before any). */
  get revision(): number {
    return this.#revision;
  }

  /** Start watching from `startRevision` (default: now). */
  async start(startRevision?: number): Promise<void> {
    if (this.#watch) return;
    this.#watch = await this.#store.watch(this.#prefix, (events) => this.#deliver(events), {
      ...(startRevision !== undefined ? { startRevision } : {}),
      onError: (e) => this.#onError(e),
    });
  }

  #deliver(events: WatchEvent[]): void {
    const last = events[events.length - 1];
    if (last) this.#revision = Math.max(this.#revision, last.kv.modRevision);
    for (const { prefix, fn } of [...this.#subs.values()]) {
      const mine = events.filter((e) => e.kv.key.startsWith(prefix));
      if (mine.length === 0) continue;
      try {
        fn(mine);
      } catch (e) {
        this.#onError(e instanceof Error ? e : new Error(String(e)));
      }
    }
  }

  /** Deliver every later event below `prefix` to `fn`, in revision order. */
  subscribe(prefix: string, fn: Listener): Subscription {
    if (!prefix.startsWith(this.#prefix)) {
      throw new RangeError(`"${prefix}" is outside the watched prefix "${this.#prefix}"`);
    }
    const id = this.#next++;
    this.#subs.set(id, { prefix, fn });
    return { close: () => void this.#subs.delete(id) };
  }

  /** How many subscriptions are open. */
  get size(): number {
    return this.#subs.size;
  }

  /** Stop the underlying watch. Safe to call twice. */
  async close(): Promise<void> {
    const w = this.#watch;
    this.#watch = undefined;
    this.#subs.clear();
    await w?.close();
  }
}
