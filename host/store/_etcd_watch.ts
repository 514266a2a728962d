/**
 * One watch of an EtcdStore: a gRPC watch stream that is opened again
 * after every break at the revision it had reached, so that events arrive in
 * order, none lost and none twice.
 *
 * @module
 */

import type { Etcd3, IDuplexStream, IEvent, IWatchRequest, IWatchResponse } from "etcd3";
import {
  StoreCompactedError,
  type StoreUnavailableError,
  type Watch,
  type WatchEvent,
} from "./store.ts";
import { isUnreachable } from "./_etcd_failures.ts";
import { prefixRange, toKeyValue } from "./_etcd_wire.ts";
import type { EtcdStore } from "./etcd_store.ts";

type Timer = ReturnType<typeof setTimeout>;

/** The first and the longest pause before re-opening a broken watch stream. */
export const WATCH_RETRY_MIN_MS = 50;
export const WATCH_RETRY_MAX_MS = 1_000;

/**
 * A watch whose stream etcd accepted but which broke this many times in a
 * row at one revision, delivering nothing, gives up and reports it: etcd
 * would only send the same failing response again.
 */
export const WATCH_MAX_BREAKS = 5;

/**
 * How often in a row a watch stream refused with "permission denied" is
 * opened again after a fresh token: more means the permission is missing.
 */
export const WATCH_AUTH_RETRIES = 3;

/** The parts of a gRPC duplex stream (a Node stream) that etcd3's types omit. */
export interface GrpcStream {
  removeAllListeners(event?: string): void;
  on(event: "error", listener: () => void): void;
  end(): void;
  cancel(): void;
}

/** Detach our listeners from a stream and cancel it, quietly. */
export function discardStream(stream: IDuplexStream<unknown, unknown>): void {
  const s = stream as unknown as GrpcStream;
  s.removeAllListeners();
  // Keep one error listener: a cancelled stream still reports CANCELLED.
  s.on("error", () => {});
  // end() first: etcd3 treats an error on a still-writable stream as a host
  // failure and would reset every other stream on that connection.
  s.end();
  s.cancel();
}

export class EtcdWatch implements Watch {
  readonly #store: EtcdStore;
  readonly #client: Etcd3;
  readonly #prefix: string;
  readonly #onEvents: (events: WatchEvent[]) => void;
  readonly #onError: ((error: Error) => void) | undefined;
  /** The next revision to deliver: resuming starts here, older events are dropped. */
  #next: number;
  #stream: IDuplexStream<IWatchRequest, IWatchResponse> | undefined;
  #retryTimer: Timer | undefined;
  #retryMs = WATCH_RETRY_MIN_MS;
  #created: PromiseWithResolvers<void> | undefined;
  #confirmed = false;
  /** Whether etcd confirmed the current stream. */
  #streamConfirmed = false;
  /** The events of a revision etcd split over several responses (`fragment`). */
  #fragments: IEvent[] = [];
  /** Breaks in a row of confirmed streams at #breakAt, with nothing delivered. */
  #breaks = 0;
  #breakAt = 0;
  /** Streams in a row that etcd refused with "permission denied" (a stale token?). */
  #authRetries = 0;
  #closed = false;

  constructor(
    store: EtcdStore,
    client: Etcd3,
    prefix: string,
    next: number,
    onEvents: (events: WatchEvent[]) => void,
    onError: ((error: Error) => void) | undefined,
  ) {
    this.#store = store;
    this.#client = client;
    this.#prefix = prefix;
    this.#next = next;
    this.#onEvents = onEvents;
    this.#onError = onError;
  }

  /** Open the first stream; resolves once etcd confirmed the watch. */
  async start(timeoutMs: number, unavailable: () => StoreUnavailableError): Promise<void> {
    this.#created = Promise.withResolvers<void>();
    this.#connect();
    let timer: Timer | undefined;
    try {
      await Promise.race([
        this.#created.promise,
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(unavailable()), timeoutMs);
        }),
      ]);
    } catch (error) {
      await this.close();
      throw error;
    } finally {
      clearTimeout(timer);
      this.#created = undefined;
    }
  }

  #connect(): void {
    if (this.#closed) return;
    this.#client.watchClient.watch().then(
      (stream) => {
        if (this.#closed) {
          this.#dropStream(stream);
          return;
        }
        this.#stream = stream;
        this.#streamConfirmed = false;
        this.#fragments = [];
        stream.on("data", (res: IWatchResponse) => this.#onResponse(stream, res));
        stream.on("error", (error: unknown) => this.#onBroken(stream, error));
        stream.on("end", () => this.#onBroken(stream));
        stream.write({
          create_request: {
            ...prefixRange(this.#prefix),
            start_revision: this.#next,
            prev_kv: true,
            progress_notify: true,
            // A revision holding more than etcd's request limit (a prefix
            // delete of big values, with their previous values) comes in
            // several responses rather than one huge one.
            fragment: true,
          },
        });
      },
      () => this.#onBroken(undefined),
    );
  }

  #onResponse(stream: IDuplexStream<IWatchRequest, IWatchResponse>, res: IWatchResponse): void {
    if (this.#closed || stream !== this.#stream) return;
    if (
      res.canceled &&
      /permission denied|invalid auth token|Unauthenticated/.test(res.cancel_reason ?? "") &&
      this.#authRetries < WATCH_AUTH_RETRIES
    ) {
      // etcd checks a watch's permission with the token the stream was
      // opened with: after the token expired (or etcd restarted) that is
      // "permission denied" or "invalid auth token". One unary read gets a fresh token (or shows
      // that the permission is really missing); then open the stream again.
      this.#authRetries++;
      this.#dropStream(stream);
      this.#stream = undefined;
      this.#store._checkRead(this.#prefix).then(
        () => this.#connect(),
        (error: Error) => this.#fail(error, false),
      );
      return;
    }
    if (res.canceled) {
      const compacted = Number(res.compact_revision ?? 0);
      const error = compacted > 0
        ? new StoreCompactedError(
          `Cannot watch "${this.#prefix}" from revision ${this.#next}: ` +
            `etcd compacted its history up to revision ${compacted}`,
        )
        : new Error(
          `etcd cancelled the watch on "${this.#prefix}"` +
            (res.cancel_reason ? `: ${res.cancel_reason}` : ""),
        );
      this.#fail(error, compacted > 0);
      return;
    }
    if (res.created) {
      this.#authRetries = 0;
      this.#confirmed = true;
      this.#streamConfirmed = true;
      this.#retryMs = WATCH_RETRY_MIN_MS;
      this.#created?.resolve();
      return;
    }
    if (res.fragment) {
      // Part of a split response: the rest follows on this stream.
      this.#fragments.push(...res.events);
      return;
    }
    const received = this.#fragments.length > 0 ? [...this.#fragments, ...res.events] : res.events;
    this.#fragments = [];
    if (received.length === 0) {
      // A progress notification: nothing for us up to the header's revision.
      this.#next = Math.max(this.#next, Number(res.header.revision) + 1);
      return;
    }
    // One (reassembled) response can hold several revisions; a revision is
    // never split across them. Events we delivered before a reconnect are
    // dropped, so none arrives twice.
    let batch: WatchEvent[] = [];
    let batchRevision = 0;
    const flush = () => {
      if (batch.length === 0) return;
      const events = batch;
      batch = [];
      this.#next = batchRevision + 1;
      try {
        this.#onEvents(events);
      } catch (error) {
        // A throwing callback is the caller's bug: surface it, keep delivering.
        queueMicrotask(() => {
          throw error;
        });
      }
    };
    for (const event of received) {
      const kv = toKeyValue(event.kv);
      if (kv.modRevision < this.#next) continue;
      if (kv.modRevision !== batchRevision) flush();
      if (this.#closed) return;
      batchRevision = kv.modRevision;
      const type = event.type === "Delete" ? "delete" : "put";
      if (type === "delete") {
        kv.createRevision = 0;
        kv.version = 0;
        kv.value = "";
        kv.lease = "0";
      }
      const watchEvent: WatchEvent = { type, kv };
      if (event.prev_kv) watchEvent.prevKv = toKeyValue(event.prev_kv);
      batch.push(watchEvent);
    }
    flush();
  }

  /** End the watch with `error`: to `onError`, or to `start()` before it was confirmed. */
  #fail(error: Error, compacted: boolean): void {
    if (this.#closed) return;
    void this.close();
    if (this.#confirmed || compacted) {
      // Like MemoryStore: a compacted start revision is reported to onError
      // (watch() itself succeeds), whether etcd says so before or after
      // confirming the watch.
      this.#created?.resolve();
      this.#onError?.(error);
    } else {
      this.#created?.reject(error);
    }
  }

  #onBroken(
    stream: IDuplexStream<IWatchRequest, IWatchResponse> | undefined,
    error?: unknown,
  ): void {
    if (stream !== this.#stream) return;
    if (stream) this.#dropStream(stream);
    this.#stream = undefined;
    this.#fragments = [];
    if (this.#closed) return;
    // A stream etcd accepted that breaks before anything new was delivered,
    // or one that failed for a reason other than an unreachable etcd, may
    // fail on what etcd sends at this revision: after a few such breaks in
    // a row, stop and tell the owner, who can start over from a fresh read.
    if (this.#streamConfirmed || (error !== undefined && !isUnreachable(error))) {
      if (this.#breakAt === this.#next) {
        this.#breaks++;
      } else {
        this.#breakAt = this.#next;
        this.#breaks = 1;
      }
      if (this.#breaks >= WATCH_MAX_BREAKS) {
        const reason = error instanceof Error ? error.message : "the stream ended";
        const failure = new Error(
          `Cannot watch "${this.#prefix}" at revision ${this.#next}: the stream broke ` +
            `${this.#breaks} times in a row there (${reason})`,
          error === undefined ? undefined : { cause: error },
        );
        void this.close();
        this.#onError?.(failure);
        return;
      }
    }
    this.#streamConfirmed = false;
    // Re-open from #next: etcd replays what we missed, and #onResponse drops
    // anything already delivered.
    clearTimeout(this.#retryTimer);
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined;
      this.#connect();
    }, this.#retryMs);
    this.#retryMs = Math.min(this.#retryMs * 2, WATCH_RETRY_MAX_MS);
  }

  #dropStream(stream: IDuplexStream<IWatchRequest, IWatchResponse>): void {
    discardStream(stream);
  }

  close(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    this.#closed = true;
    clearTimeout(this.#retryTimer);
    this.#retryTimer = undefined;
    if (this.#stream) this.#dropStream(this.#stream);
    this.#stream = undefined;
    this.#store._forget(this);
    return Promise.resolve();
  }
}
