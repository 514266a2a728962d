/**
 * One store watch serving many subscribers: the host watches its whole root
 * prefix once and hands each event to the subscribers whose prefix matches,
 * so the number of etcd watch streams does not grow with the number of
 * tasks or monitors.
 *
 * The hub recovers by itself when its watch fails (its start revision was
 * compacted, etcd cancelled it, or it broke again and again at one
 * revision): it reports the failure, re-opens the watch after a fresh read
 * of the store's revision, and tells every subscriber that asked to be told
 * (`onResync`), so that each re-reads what it follows.
 *
 * @module
 */

import type { Store, Watch, WatchEvent } from "./store.ts";

/** A subscription of the hub. */
export interface Subscription {
  /**
   * Also deliver the events below `prefix` (within the hub's prefix; a
   * RangeError otherwise). An event below several of the subscription's
   * prefixes is delivered once.
   */
  add(prefix: string): void;
  /** Stop delivering. Safe to call twice. */
  close(): void;
}

/**
 * The changes a re-opened watch did not deliver: those after revision
 * `since` up to and including `revision`. Events after `revision` follow.
 */
export interface ResyncGap {
  /** Every change up to this revision was delivered. */
  since: number;
  /** The revision the watch was re-opened after (read fresh from the store). */
  revision: number;
}

/** Options of `WatchHub.subscribe`. */
export interface SubscribeOptions {
  /**
   * Called when the hub's watch failed and was re-opened: changes in the
   * gap may have been missed, so the subscriber re-reads what it follows.
   * Called before any event after the gap is delivered; without it, a
   * subscriber just goes on with the events after the gap.
   */
  onResync?: (gap: ResyncGap) => void;
}

/** Options of a `WatchHub`. */
export interface WatchHubOptions {
  /**
   * Told of every error: a subscriber that threw, each failure of the
   * watch (a `WatchFailedError`) and each failed attempt to re-open it.
   * @default ignore
   */
  onError?: (error: Error) => void;
  /**
   * Told once the watch runs again after a failure, after the subscribers'
   * `onResync`.
   * @default ignore
   */
  onRecovered?: (gap: ResyncGap) => void;
}

/**
 * Reported through `WatchHubOptions.onError` when the hub's watch failed;
 * the hub is re-opening it from a fresh read. The store's error is `cause`.
 */
export class WatchFailedError extends Error {
  /** Always "WatchFailedError". */
  override name = "WatchFailedError";
  /** The prefix the hub watches. */
  readonly prefix: string;
  /** The first revision that may not have been delivered. */
  readonly revision: number;
  /** The failure of the watch on `prefix` at `revision`, caused by the store's `cause`. */
  constructor(prefix: string, revision: number, cause: Error) {
    super(
      `watch on ${prefix} failed at revision ${revision}: ${cause.message}; ` +
        "re-opening it from a fresh read",
      { cause },
    );
    this.prefix = prefix;
    this.revision = revision;
  }
}

/** A subscriber's callback: the events of one revision below its prefix. */
export type Listener = (events: WatchEvent[]) => void;

interface Subscriber {
  id: number;
  fn: Listener;
  onResync: ((gap: ResyncGap) => void) | undefined;
}

/** One prefix of one subscriber, filed under the prefix's directory. */
interface Entry {
  prefix: string;
  sub: Subscriber;
}

/**
 * The directory part of a prefix: up to and including its last "/" ("" if
 * none). A key below the prefix starts with it, so it is one of the key's
 * own directories: delivery looks only there, not at every subscriber.
 */
function dirOf(prefix: string): string {
  return prefix.slice(0, prefix.lastIndexOf("/") + 1);
}

/** The first and the longest pause between attempts to re-open a failed watch. */
const RECOVER_MIN_MS = 100;
const RECOVER_MAX_MS = 5_000;

/** Fans one prefix watch out to subscribers by key prefix. */
export class WatchHub {
  readonly #store: Store;
  readonly #prefix: string;
  readonly #onError: (e: Error) => void;
  readonly #onRecovered: (gap: ResyncGap) => void;
  #watch: Watch | undefined;
  #subs = new Map<number, Subscriber>();
  /** Every subscriber's prefixes, by their directory (`dirOf`). */
  #index = new Map<string, Entry[]>();
  #nextId = 1;
  #revision = 0;
  /** Every change up to this revision was delivered (or predates the start). */
  #since = 0;
  /** Bumped whenever a watch is opened or given up: older watches' callbacks are ignored. */
  #generation = 0;
  #started = false;
  #recovering = false;
  /** Events of the re-opened watch that arrive before the subscribers' onResync ran. */
  #held: WatchEvent[][] | undefined;
  #retry: { timer: ReturnType<typeof setTimeout>; resolve: () => void } | undefined;
  #closed = false;

  /**
   * A hub watching `prefix` of `store`; nothing is watched before `start()`.
   * @param prefix every key any subscriber may ask for starts with this
   */
  constructor(store: Store, prefix: string, options: WatchHubOptions = {}) {
    this.#store = store;
    this.#prefix = prefix;
    this.#onError = options.onError ?? (() => {});
    this.#onRecovered = options.onRecovered ?? (() => {});
  }

  /** The revision of the last event delivered (0 before any). */
  get revision(): number {
    return this.#revision;
  }

  /**
   * Start watching from `startRevision` (default: after the store's
   * current revision). A start revision that was compacted away is
   * recovered from like any other failure.
   */
  async start(startRevision?: number): Promise<void> {
    if (this.#started || this.#closed) return;
    this.#started = true;
    try {
      const from = startRevision ?? 1 + await this.#currentRevision();
      this.#since = Math.max(this.#since, from - 1);
      await this.#open(from);
    } catch (error) {
      this.#started = false;
      throw error;
    }
  }

  /** A fresh read of the store's revision: an empty transaction writes nothing. */
  async #currentRevision(): Promise<number> {
    return (await this.#store.txn([], [])).revision;
  }

  /** Open a watch from `from`; it becomes the hub's watch unless it failed meanwhile. */
  async #open(from: number): Promise<void> {
    const generation = ++this.#generation;
    const watch = await this.#store.watch(this.#prefix, (events) => {
      if (generation !== this.#generation) return;
      if (this.#held) this.#held.push(events);
      else this.#deliver(events);
    }, {
      startRevision: from,
      onError: (e) => this.#onWatchError(generation, e),
    });
    if (generation !== this.#generation || this.#closed) {
      await watch.close();
      return;
    }
    this.#watch = watch;
  }

  #onWatchError(generation: number, error: Error): void {
    if (this.#closed || generation !== this.#generation) return;
    // Ignore whatever the failed watch may still deliver.
    this.#generation++;
    const failed = this.#watch;
    this.#watch = undefined;
    void failed?.close();
    this.#report(new WatchFailedError(this.#prefix, this.#since + 1, error));
    if (!this.#recovering) void this.#recover();
  }

  /**
   * Re-open the watch after a fresh read of the store's revision, then tell
   * the subscribers about the gap. Tries again with backoff while the store
   * cannot be reached; ends when the hub is closed.
   */
  async #recover(): Promise<void> {
    this.#recovering = true;
    let pause = RECOVER_MIN_MS;
    let reported = false;
    try {
      while (!this.#closed) {
        try {
          const revision = await this.#currentRevision();
          if (this.#closed) return;
          const since = this.#since;
          this.#held = [];
          await this.#open(revision + 1);
          if (this.#closed) return;
          if (this.#watch === undefined) {
            // The new watch failed at once (and was reported): try again.
            this.#held = undefined;
          } else {
            this.#since = Math.max(this.#since, revision);
            this.#resync({ since, revision });
            return;
          }
        } catch (error) {
          this.#held = undefined;
          if (this.#closed) return;
          // Once per recovery: a long outage would otherwise log every few seconds.
          if (!reported) {
            reported = true;
            const message = error instanceof Error ? error.message : String(error);
            this.#report(
              new Error(`Cannot re-open the watch on ${this.#prefix} yet: ${message}`, {
                cause: error,
              }),
            );
          }
        }
        await this.#sleep(pause);
        pause = Math.min(pause * 2, RECOVER_MAX_MS);
      }
    } finally {
      this.#recovering = false;
    }
  }

  /** Tell the subscribers about the gap, then deliver what the new watch held back. */
  #resync(gap: ResyncGap): void {
    for (const sub of [...this.#subs.values()]) {
      if (!sub.onResync) continue;
      try {
        sub.onResync(gap);
      } catch (e) {
        this.#report(e);
      }
    }
    const held = this.#held ?? [];
    this.#held = undefined;
    for (const events of held) this.#deliver(events);
    try {
      this.#onRecovered(gap);
    } catch (e) {
      this.#report(e);
    }
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#retry = undefined;
        resolve();
      }, ms);
      this.#retry = { timer, resolve };
    });
  }

  #report(e: unknown): void {
    try {
      this.#onError(e instanceof Error ? e : new Error(String(e)));
    } catch {
      // The error sink itself failed: nothing left to tell.
    }
  }

  #deliver(events: WatchEvent[]): void {
    const last = events[events.length - 1];
    if (last) {
      this.#revision = Math.max(this.#revision, last.kv.modRevision);
      this.#since = Math.max(this.#since, last.kv.modRevision);
    }
    // Each event is matched against the subscribers filed under its key's
    // directories only: the cost grows with the depth of the key and the
    // subscribers it concerns, not with every subscriber of the host.
    const hits = new Map<Subscriber, WatchEvent[]>();
    const file = (e: WatchEvent, dir: string) => {
      const entries = this.#index.get(dir);
      if (entries === undefined) return;
      for (const { prefix, sub } of entries) {
        if (!e.kv.key.startsWith(prefix)) continue;
        let mine = hits.get(sub);
        if (mine === undefined) hits.set(sub, mine = []);
        // Once, however many of the subscriber's prefixes it is below.
        if (mine[mine.length - 1] !== e) mine.push(e);
      }
    };
    for (const e of events) {
      const key = e.kv.key;
      file(e, "");
      for (let i = key.indexOf("/"); i >= 0; i = key.indexOf("/", i + 1)) {
        file(e, key.slice(0, i + 1));
      }
    }
    // In the order of subscription, as the subscribers' events are in revision order.
    const subs = [...hits.keys()].sort((a, b) => a.id - b.id);
    for (const sub of subs) {
      if (this.#subs.get(sub.id) !== sub) continue; // closed by an earlier one
      try {
        sub.fn(hits.get(sub)!);
      } catch (e) {
        this.#report(e);
      }
    }
  }

  /**
   * Deliver every later event below `prefix` (or below any of several,
   * and more with `Subscription.add`) to `fn`, in revision order, none
   * twice; one call per watch response, with the events of it that are
   * the subscriber's. After a failure of the watch, `options.onResync` is called
   * before the events after the gap (see `SubscribeOptions`).
   */
  subscribe(
    prefix: string | readonly string[],
    fn: Listener,
    options: SubscribeOptions = {},
  ): Subscription {
    const prefixes = typeof prefix === "string" ? [prefix] : prefix;
    for (const p of prefixes) this.#checkPrefix(p);
    const id = this.#nextId++;
    const sub: Subscriber = { id, fn, onResync: options.onResync };
    this.#subs.set(id, sub);
    const mine: Entry[] = [];
    const add = (p: string) => {
      this.#checkPrefix(p);
      if (this.#subs.get(id) !== sub || mine.some((m) => m.prefix === p)) return;
      const entry = { prefix: p, sub };
      mine.push(entry);
      const dir = dirOf(p);
      const entries = this.#index.get(dir);
      if (entries === undefined) this.#index.set(dir, [entry]);
      else entries.push(entry);
    };
    for (const p of prefixes) add(p);
    return {
      add,
      close: () => {
        if (this.#subs.get(id) !== sub) return;
        this.#subs.delete(id);
        for (const entry of mine.splice(0)) {
          const dir = dirOf(entry.prefix);
          const rest = this.#index.get(dir)?.filter((x) => x !== entry) ?? [];
          if (rest.length === 0) this.#index.delete(dir);
          else this.#index.set(dir, rest);
        }
      },
    };
  }

  #checkPrefix(prefix: string): void {
    if (!prefix.startsWith(this.#prefix)) {
      throw new RangeError(`"${prefix}" is outside the watched prefix "${this.#prefix}"`);
    }
  }

  /** How many subscriptions are open. */
  get size(): number {
    return this.#subs.size;
  }

  /** Stop the underlying watch (and any recovery). Safe to call twice. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#generation++;
    if (this.#retry) {
      clearTimeout(this.#retry.timer);
      this.#retry.resolve();
      this.#retry = undefined;
    }
    const w = this.#watch;
    this.#watch = undefined;
    this.#held = undefined;
    this.#subs.clear();
    this.#index.clear();
    await w?.close();
  }
}
