/**
 * `EtcdStore`: the `Store` on a real etcd 3 cluster, via npm:etcd3.
 *
 * This is the only file that knows etcd3. It uses the library's gRPC
 * clients and connection handling, but keeps its own deadlines, watch
 * streams and lease keep-alives, so that every promise settles in bounded
 * time and watches resume exactly where they stopped.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import {
  Etcd3,
  EtcdAuthenticationFailedError,
  EtcdLeaseInvalidError,
  EtcdPermissionDeniedError,
  EtcdRoleExistsError,
  GRPCDeadlineExceededError,
  GRPCUnavailableError,
  type ICompare,
  type IDuplexStream,
  type IEvent,
  type IKeyValue,
  type IOptions,
  type IRequestOp,
  type IResponseOp,
  type IWatchRequest,
  type IWatchResponse,
} from "etcd3";
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
  StoreUnavailableError,
  type TxnOp,
  type TxnResponse,
  type TxnResult,
  type Watch,
  type WatchEvent,
  type WatchOptions,
} from "./store.ts";
import { allowIpServername } from "../tls_ip_servername.ts";
import tls from "node:tls";

/** Options of `EtcdStore`. */
export interface EtcdStoreOptions {
  /** Client URLs of the cluster members, e.g. `["http://127.0.0.1:2379"]`. */
  endpoints: string[];
  /**
   * Deadline of every single operation in milliseconds (of every page of a
   * range read); an operation that cannot complete in time rejects with
   * `StoreUnavailableError`.
   * @default 5000
   */
  timeoutMs?: number;
  /**
   * The largest gRPC message the client sends or accepts. Lower it only to
   * test what happens when etcd sends more than a client takes.
   * @default 2 ** 31 - 1 (gRPC's maximum)
   */
  maxMessageBytes?: number;
  /**
   * TLS for `https://` endpoints, as etcdctl's `--cacert`, `--cert` and
   * `--key`: PEM texts (not file names). Without `ca` the system's roots
   * are trusted; `cert` and `key` go together (a client certificate, for
   * etcd's `--client-cert-auth`).
   * @default none (plain TLS with the system's roots for https://)
   */
  tls?: EtcdTlsOptions;
  /**
   * User and password for etcd's authentication. Without it, an etcd with
   * authentication enabled takes the user from the client certificate's
   * common name (CN). The client gets a token with them and gets a new one
   * when etcd says the token expired (`--auth-token-ttl`).
   * @default none
   */
  auth?: EtcdAuthOptions;
}

/** TLS material of `EtcdStoreOptions.tls`, in PEM. */
export interface EtcdTlsOptions {
  /** The CA certificate(s) that signed the server's certificate. @default the system's roots */
  ca?: Uint8Array;
  /** The client certificate (chain). @default none */
  cert?: Uint8Array;
  /** The client certificate's private key. @default none */
  key?: Uint8Array;
}

/** User and password of `EtcdStoreOptions.auth`. */
export interface EtcdAuthOptions {
  user: string;
  password: string;
}

/**
 * etcd could be reached but refused this client for a reason the client
 * knows: the TLS handshake failed, or etcd refused the user. Unlike a plain
 * `StoreUnavailableError`, waiting will not help: the configuration must
 * change. The message says which.
 */
export class EtcdAccessError extends StoreUnavailableError {
  override name = "EtcdAccessError";
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
  }
}

/** etcd refused an operation: the user's roles do not allow it. */
export class EtcdPermissionError extends Error {
  override name = "EtcdPermissionError";
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
  }
}

/** One permission of an etcd role (etcd's auth API). */
export interface EtcdPermission {
  /** `read`, `write` or `readwrite`. */
  type: "read" | "write" | "readwrite";
  /** The key, or the start of the keys when `prefix`. */
  key: string;
  /** Whether every key starting with `key` is meant. */
  prefix: boolean;
}

/** An etcd role and every permission it should have. */
export interface EtcdRole {
  name: string;
  permissions: EtcdPermission[];
}

type Timer = ReturnType<typeof setTimeout>;
type Policy = NonNullable<NonNullable<IOptions["faultHandling"]>["global"]>;

/**
 * A fault-handling policy that just runs the call, like cockatiel's `noop`
 * (cockatiel is not in our import map): etcd3 only ever calls `execute`.
 */
const passThrough = {
  // async: etcd3 chains .catch() on the result even when `fn` throws.
  execute: async <T>(fn: (context: { signal: AbortSignal }) => T | Promise<T>): Promise<T> =>
    await fn({ signal: new AbortController().signal }),
} as unknown as Policy;
type CallOptions = { deadline: number };

/** Pause before trying again after a failed lease keep-alive. */
const KEEPALIVE_RETRY_MS = 250;

/** The first and the longest pause before re-opening a broken watch stream. */
const WATCH_RETRY_MIN_MS = 50;
const WATCH_RETRY_MAX_MS = 1_000;

/**
 * A watch whose stream etcd accepted but which broke this many times in a
 * row at one revision, delivering nothing, gives up and reports it: etcd
 * would only send the same failing response again.
 */
const WATCH_MAX_BREAKS = 5;

/**
 * How often in a row a watch stream refused with "permission denied" is
 * opened again after a fresh token: more means the permission is missing.
 */
const WATCH_AUTH_RETRIES = 3;

/**
 * gRPC's largest message (INT32_MAX), as etcd's own Go client sets it: any
 * response etcd can send fits, whatever its `--max-request-bytes`, and a
 * watch response carrying a value and its previous value too.
 */
const GRPC_MAX_MESSAGE_BYTES = 2 ** 31 - 1;

/** The most keys one page of a range read asks for. */
const RANGE_PAGE_KEYS = 500;
/**
 * About how many bytes a page should hold: after a page of big values the
 * next page asks for fewer keys, so that memory per page stays bounded.
 */
const RANGE_PAGE_BYTES = 16 * 1024 * 1024;
/** How often a paged read starts over when its pinned revision is compacted under it. */
const RANGE_ATTEMPTS = 3;

const COMPARE_TARGET = {
  value: "Value",
  version: "Version",
  createRevision: "Create",
  modRevision: "Mod",
} as const;
const COMPARE_RESULT = { "==": "Equal", "!=": "NotEqual", "<": "Less", ">": "Greater" } as const;

function bytes(text: string): Buffer {
  return Buffer.from(text, "utf8");
}

/** The end of the key range holding every key that starts with `prefix`. */
function prefixEnd(prefix: string): Buffer {
  const end = Buffer.from(bytes(prefix));
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i]! < 0xff) {
      end[i] = end[i]! + 1;
      return end.subarray(0, i + 1);
    }
  }
  // Only 0xff bytes (or empty): "\0" as range end means "to the end".
  return Buffer.from([0]);
}

/** Whether etcd refused a read because its revision was compacted. */
function isCompacted(error: unknown): boolean {
  for (let e: unknown = error; e instanceof Error; e = e.cause) {
    if (/required revision has been compacted/.test(e.message)) return true;
  }
  return false;
}

function prefixRange(prefix: string): { key: Buffer; range_end: Buffer } {
  return { key: prefix === "" ? Buffer.from([0]) : bytes(prefix), range_end: prefixEnd(prefix) };
}

function toKeyValue(kv: IKeyValue): KeyValue {
  return {
    key: kv.key.toString("utf8"),
    value: kv.value.toString("utf8"),
    createRevision: Number(kv.create_revision),
    modRevision: Number(kv.mod_revision),
    version: Number(kv.version),
    lease: String(kv.lease ?? "0"),
  };
}

function leaseField(lease: string | undefined): { lease?: string } {
  if (lease === undefined || lease === "0") return {};
  if (!/^[1-9][0-9]*$/.test(lease)) {
    throw new TypeError(`Invalid lease id "${lease}": expected decimal digits`);
  }
  return { lease };
}

function toCompare(c: Compare): ICompare {
  const compare: ICompare = {
    key: bytes(c.key),
    target: COMPARE_TARGET[c.target],
    result: COMPARE_RESULT[c.op],
  };
  switch (c.target) {
    case "value":
      compare.value = bytes(c.value);
      break;
    case "version":
      compare.version = c.value;
      break;
    case "createRevision":
      compare.create_revision = c.value;
      break;
    case "modRevision":
      compare.mod_revision = c.value;
      break;
  }
  return compare;
}

function toRequestOp(op: TxnOp): IRequestOp {
  switch (op.type) {
    case "put":
      return {
        request_put: { key: bytes(op.key), value: bytes(op.value), ...leaseField(op.lease) },
      };
    case "delete":
      return {
        request_delete_range: op.prefix ? prefixRange(op.key) : { key: bytes(op.key) },
      };
    case "get":
      return { request_range: op.prefix ? prefixRange(op.key) : { key: bytes(op.key) } };
  }
}

function fromResponseOp(op: IResponseOp, type: TxnOp["type"]): TxnResponse {
  switch (type) {
    case "put":
      return { type: "put" };
    case "delete":
      return { type: "delete", deleted: Number(op.response_delete_range?.deleted ?? 0) };
    case "get":
      return { type: "get", kvs: (op.response_range?.kvs ?? []).map(toKeyValue) };
  }
}

/** Pauses between attempts of a call that could not be sent. */
const RETRY_STEP_MS = 50;
const RETRY_MAX_MS = 250;

/**
 * Whether the call failed before it reached etcd (no connection), so that
 * sending it again cannot apply it twice. gRPC says so only in its message.
 */
function wasNotSent(error: unknown): boolean {
  return error instanceof GRPCUnavailableError &&
    error.message.includes("No connection established");
}

/**
 * Errors that mean "etcd could not be reached (in time)", not "etcd said no".
 * A connection torn down under a call (etcd stopping) reaches grpc-js as an
 * INTERNAL error about the stream or socket: that is unreachable too.
 */
function isUnreachable(error: unknown): boolean {
  if (error instanceof GRPCUnavailableError || error instanceof GRPCDeadlineExceededError) {
    return true;
  }
  const message = error instanceof Error ? error.message : "";
  return /RST_STREAM|socket has been ended|ECONNRESET|ECONNREFUSED|EPIPE|Connection dropped/
    .test(message);
}

/** The innermost gRPC "Last error: …" of an unreachable error, or its message. */
function lastErrorText(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error ?? "");
  const m = /Last error: (?:[A-Za-z]*Error(?: \[[A-Z_]+\])?: )?(.*?)(?:\. Resolution note:.*)?$/s
    .exec(message);
  return (m ? m[1]! : message).replace(/ \(\d{4}-\d\d-\d\dT[^)]*\)$/, "").trim();
}

/**
 * Why a TLS connection failed, when the error says it did; `undefined` for
 * anything else (etcd down, a timeout). With TLS in use, a connection that
 * etcd closes during the handshake is the server refusing the client's
 * certificate (or the lack of one).
 */
function tlsFailure(error: unknown, usingTls: boolean): string | undefined {
  const text = lastErrorText(error);
  if (
    /BadCertificate|bad certificate|CertificateRequired|certificate required|UnknownCA|unknown ca/i
      .test(text)
  ) {
    return `${text} (etcd refused the client certificate, or its lack: ` +
      "--etcd-cert and --etcd-key must be given and signed by a CA etcd trusts)";
  }
  if (
    /certificate|self[- ]signed|altname|unable to verify|issuer|handshake|wrong version number|ssl|tls|UnknownIssuer|NotValidForName|BadCertificate|InvalidCertificate/i
      .test(text)
  ) {
    return text;
  }
  if (usingTls && /EPIPE|ECONNRESET|socket hang up|disconnected before secure/i.test(text)) {
    return `${text} (etcd closed the connection during the handshake: ` +
      "it may want a client certificate, --etcd-cert and --etcd-key, signed by a CA it trusts)";
  }
  return undefined;
}

/** How long a TLS probe may take, and how long it listens after the handshake. */
const PROBE_MS = 2_000;
const PROBE_LISTEN_MS = 500;

/**
 * Connect to `endpoint` with TLS as the gRPC client would, to learn why it
 * fails when gRPC does not say (its token exchange opens channels of its
 * own, whose errors are lost). Resolves with the reason, or `undefined`
 * when the handshake succeeds and the server keeps the connection open.
 * A server refusing the client's certificate (or its lack) may only close
 * the connection after the handshake, hence the short listen.
 */
function probeTls(
  endpoint: string,
  material: EtcdTlsOptions | undefined,
): Promise<string | undefined> {
  const url = new URL(endpoint);
  return new Promise((resolve) => {
    let done = false;
    let socket: tls.TLSSocket | undefined;
    const finish = (reason: string | undefined) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket?.destroy();
      resolve(reason);
    };
    const timer = setTimeout(() => finish(undefined), PROBE_MS);
    try {
      socket = tls.connect({
        host: url.hostname.replace(/^\[|\]$/g, ""),
        port: Number(url.port || 2379),
        servername: url.hostname.replace(/^\[|\]$/g, ""),
        ALPNProtocols: ["h2"],
        ...(material?.ca ? { ca: Buffer.from(material.ca) } : {}),
        ...(material?.cert ? { cert: Buffer.from(material.cert) } : {}),
        ...(material?.key ? { key: Buffer.from(material.key) } : {}),
      }, () => {
        setTimeout(() => finish(undefined), PROBE_LISTEN_MS);
        socket?.once("close", () =>
          finish(
            "etcd closed the connection after the handshake (it may want a client certificate, " +
              "--etcd-cert and --etcd-key, signed by a CA it trusts)",
          ));
      });
      socket.on("error", (e: Error) => {
        const text = tlsFailure(e, true);
        finish(text ?? (/ECONNREFUSED/.test(e.message) ? undefined : e.message));
      });
    } catch (e) {
      finish((e as Error).message);
    }
  });
}

/** The text etcd (gRPC) sent, without gRPC's status prefix. */
function etcdText(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return message.replace(/^\d+ [A-Z_]+: /, "").replace(/^etcdserver: /, "");
}

/**
 * A single-address target per endpoint, or one gRPC target holding every
 * address when all endpoints are plain-HTTP IPv4 literals. With one target,
 * gRPC itself fails over between members (pick_first), so a call waiting
 * for a ready connection is not stuck on one dead member.
 */
function grpcHosts(endpoints: string[]): string[] {
  const ipv4 = /^http:\/\/(\d{1,3}(?:\.\d{1,3}){3}:\d+)\/?$/;
  const addresses = endpoints.map((e) => ipv4.exec(e)?.[1]);
  if (endpoints.length > 1 && addresses.every((a) => a !== undefined)) {
    return [`ipv4:${addresses.join(",")}`];
  }
  return endpoints;
}

/** The parts of a gRPC duplex stream (a Node stream) that etcd3's types omit. */
interface GrpcStream {
  removeAllListeners(event?: string): void;
  on(event: "error", listener: () => void): void;
  end(): void;
  cancel(): void;
}

/** Detach our listeners from a stream and cancel it, quietly. */
function discardStream(stream: IDuplexStream<unknown, unknown>): void {
  const s = stream as unknown as GrpcStream;
  s.removeAllListeners();
  // Keep one error listener: a cancelled stream still reports CANCELLED.
  s.on("error", () => {});
  // end() first: etcd3 treats an error on a still-writable stream as a host
  // failure and would reset every other stream on that connection.
  s.end();
  s.cancel();
}

class EtcdWatch implements Watch {
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

class EtcdLease implements Lease {
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

/**
 * The `Store` on an etcd 3 cluster. Every operation has a deadline
 * (`timeoutMs`): when etcd cannot be reached in time it rejects with a
 * one-line `StoreUnavailableError` naming the endpoints. Watches re-open
 * their stream after a disconnect and resume at the next undelivered
 * revision, so no event is lost or repeated; a watch whose stream keeps
 * breaking at one revision reports it through `onError`. Prefix reads go
 * in pages at one revision, and messages may be as large as gRPC allows,
 * so no folder is too big to read or watch.
 *
 * @example
 * ```ts ignore
 * const store = new EtcdStore({ endpoints: ["http://127.0.0.1:2379"] });
 * try {
 *   await store.put("/moat/config/timezone", "Europe/Berlin");
 * } finally {
 *   await store.close();
 * }
 * ```
 */
export class EtcdStore implements Store {
  readonly #client: Etcd3;
  readonly #endpoints: string[];
  readonly #timeoutMs: number;
  readonly #watches = new Set<EtcdWatch>();
  readonly #leases = new Set<EtcdLease>();
  /** Whether the endpoints are https:// (for telling handshake failures apart). */
  readonly #tls: boolean;
  /** The user given for authentication, if any (for messages). */
  readonly #user: string | undefined;
  /** The TLS material, for a probe when gRPC hides why a connection failed. */
  readonly #tlsMaterial: EtcdTlsOptions | undefined;
  /** The running or last TLS probe and when it started. */
  #probe: { at: number; reason: string | undefined; done: boolean } | undefined;
  #closed = false;

  constructor(options: EtcdStoreOptions) {
    if (options.endpoints.length === 0) {
      throw new TypeError("EtcdStore needs at least one endpoint");
    }
    for (const endpoint of options.endpoints) {
      if (!/^https?:\/\/[^/]+\/?$/.test(endpoint)) {
        throw new TypeError(`Invalid etcd endpoint "${endpoint}": expected http(s)://host:port`);
      }
    }
    const timeoutMs = options.timeoutMs ?? 5_000;
    if (!(timeoutMs > 0) || !Number.isFinite(timeoutMs)) {
      throw new RangeError(`Invalid timeoutMs ${timeoutMs}: expected a positive number`);
    }
    const maxMessage = options.maxMessageBytes ?? GRPC_MAX_MESSAGE_BYTES;
    if (!Number.isInteger(maxMessage) || maxMessage < 1 || maxMessage > GRPC_MAX_MESSAGE_BYTES) {
      throw new RangeError(
        `Invalid maxMessageBytes ${maxMessage}: expected a whole number from 1 to 2 ** 31 - 1`,
      );
    }
    this.#endpoints = [...options.endpoints];
    this.#timeoutMs = timeoutMs;
    const secure = this.#endpoints.some((e) => e.startsWith("https://"));
    if (options.tls && !this.#endpoints.every((e) => e.startsWith("https://"))) {
      throw new TypeError(
        `TLS options need https:// endpoints, not "${
          this.#endpoints.find((e) => !e.startsWith("https://"))
        }"`,
      );
    }
    if (secure && !this.#endpoints.every((e) => e.startsWith("https://"))) {
      throw new TypeError(
        `Endpoints ${this.#endpoints.join(", ")} mix http:// and https://: use one scheme`,
      );
    }
    const tls = options.tls;
    if (tls && (tls.cert === undefined) !== (tls.key === undefined)) {
      throw new TypeError(
        "A client certificate needs its key and a key its certificate: give both or neither",
      );
    }
    if (options.auth && options.auth.user === "") {
      throw new TypeError("The etcd user name must not be empty");
    }
    // https://10.0.0.1:2379 must work under Deno too (see the module).
    if (secure) allowIpServername();
    this.#tls = secure;
    this.#user = options.auth?.user;
    this.#tlsMaterial = tls;
    const timeout = () => ({ deadline: Date.now() + timeoutMs });
    this.#client = new Etcd3({
      hosts: grpcHosts(this.#endpoints),
      ...(tls
        ? {
          credentials: {
            rootCertificate: Buffer.from(tls.ca ?? new Uint8Array()),
            ...(tls.key ? { privateKey: Buffer.from(tls.key) } : {}),
            ...(tls.cert ? { certChain: Buffer.from(tls.cert) } : {}),
          },
        }
        : {}),
      // etcd3 gets a token with these before the first call, and a new one
      // when etcd says the token is invalid (expired after --auth-token-ttl,
      // or etcd restarted); the exchange has the same deadline as any call.
      ...(options.auth
        ? {
          auth: {
            username: options.auth.user,
            password: options.auth.password,
            callOptions: timeout,
          },
        }
        : {}),
      // Unary calls get their deadline per call (see #call); streams (watches,
      // keep-alives) are supervised here.
      // No library retries or circuit breakers: a retried write could apply
      // twice, and an open breaker would fail calls after etcd is back.
      faultHandling: { host: () => passThrough, global: passThrough },
      grpcOptions: {
        // Reconnect quickly after an etcd restart.
        "grpc.initial_reconnect_backoff_ms": 100,
        "grpc.max_reconnect_backoff_ms": 1_000,
        // Notice a silently dead connection (etcd allows pings every 5 s).
        "grpc.keepalive_time_ms": 10_000,
        "grpc.keepalive_timeout_ms": 5_000,
        // gRPC's default receive limit (4 MiB) is smaller than what etcd may
        // send: a folder of a few big values, or a watch response holding a
        // value and its previous value. Pages and watch fragments keep most
        // messages small; the limit must not break the rest.
        "grpc.max_receive_message_length": maxMessage,
        "grpc.max_send_message_length": maxMessage,
      },
    });
  }

  #unavailable(cause?: unknown): StoreUnavailableError {
    const where = this.#endpoints.join(", ");
    const options = cause === undefined ? undefined : { cause };
    // The real reason, when gRPC told us: a TLS failure is no outage.
    const tls = (cause === undefined ? undefined : tlsFailure(cause, this.#tls)) ??
      (this.#probe?.done ? this.#probe.reason : undefined);
    if (tls !== undefined) {
      return new EtcdAccessError(`TLS handshake with etcd at ${where} failed: ${tls}`, options);
    }
    return new StoreUnavailableError(`etcd at ${where} is not reachable`, options);
  }

  /**
   * Start a TLS probe (at most one per 30 s) when a call found no
   * connection and gRPC does not say why, so that the error at the deadline
   * can name the reason.
   */
  #maybeProbe(error: unknown): void {
    if (!this.#tls || !wasNotSent(error) || tlsFailure(error, true) !== undefined) return;
    if (this.#probe && Date.now() - this.#probe.at < 30_000) return;
    const probe: { at: number; reason: string | undefined; done: boolean } = {
      at: Date.now(),
      reason: undefined,
      done: false,
    };
    this.#probe = probe;
    void probeTls(this.#endpoints[0]!, this.#tlsMaterial).then((reason) => {
      probe.reason = reason;
      probe.done = true;
    });
  }

  /** Who etcd sees, for messages. */
  #who(): string {
    return this.#user !== undefined
      ? `user "${this.#user}"`
      : this.#tls
      ? "the client certificate's user"
      : "an anonymous client";
  }

  /** The error for a call etcd refused for reasons of authentication or permission. */
  #refused(what: string, error: unknown): Error | undefined {
    if (error instanceof EtcdAuthenticationFailedError) {
      return new EtcdAccessError(
        `etcd refused user "${this.#user ?? ""}": authentication failed ` +
          "(wrong user name or password)",
        { cause: error },
      );
    }
    const text = etcdText(error);
    if (/^authentication is not enabled/.test(text) && this.#user !== undefined) {
      return new EtcdAccessError(
        `etcd refused user "${this.#user}": etcd at ${
          this.#endpoints.join(", ")
        } does not have authentication enabled`,
        { cause: error },
      );
    }
    if (/^user name is empty/.test(text)) {
      return new EtcdAccessError(
        `etcd refused to ${what}: it has authentication enabled and no user was given ` +
          "(--etcd-user, or a client certificate whose common name is an etcd user)",
        { cause: error },
      );
    }
    if (error instanceof EtcdPermissionDeniedError || /^permission denied/.test(text)) {
      return new EtcdPermissionError(
        `etcd refused to ${what}: permission denied for ${this.#who()}`,
        { cause: error },
      );
    }
    return undefined;
  }

  /**
   * Run one etcd call with the deadline, translating its errors. `run` gets
   * the gRPC call options carrying the same deadline.
   */
  async #call<T>(what: string, run: (options: CallOptions) => Promise<T>): Promise<T> {
    if (this.#closed) throw new Error(`Cannot ${what}: the EtcdStore is closed`);
    const deadline = Date.now() + this.#timeoutMs;
    const state: { lastError?: unknown } = {};
    let timer: Timer | undefined;
    try {
      return await Promise.race([
        this.#attempt(what, run, deadline, state),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(this.#unavailable(state.lastError)), this.#timeoutMs);
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
  }

  async #attempt<T>(
    what: string,
    run: (options: CallOptions) => Promise<T>,
    deadline: number,
    state: { lastError?: unknown },
  ): Promise<T> {
    // Bounded by the deadline: each round waits before it and ends before it.
    for (let attempt = 1;; attempt++) {
      try {
        return await run({ deadline });
      } catch (error) {
        state.lastError = error;
        this.#maybeProbe(error);
        const pause = Math.min(RETRY_STEP_MS * attempt, RETRY_MAX_MS);
        if (wasNotSent(error) && !this.#closed && Date.now() + pause < deadline) {
          await new Promise((resolve) => setTimeout(resolve, pause));
          continue;
        }
        if (isUnreachable(error)) throw this.#unavailable(error);
        const refused = this.#refused(what, error);
        if (refused) throw refused;
        const message = error instanceof Error ? error.message : String(error);
        throw new Error(`Cannot ${what}: etcd said "${message}"`, { cause: error });
      }
    }
  }

  get(key: string): Promise<KeyValue | undefined> {
    return this.#call(`get "${key}"`, async (options) => {
      const res = await this.#client.kv.range({ key: bytes(key) }, options);
      const kv = res.kvs[0];
      return kv ? toKeyValue(kv) : undefined;
    });
  }

  /**
   * Read a prefix in pages of at most 500 keys (fewer when values are big),
   * each page continuing after the last key of the one before and pinned to
   * the first page's revision, so that the result is one consistent
   * snapshot whatever the folder's size. Each page has its own deadline.
   */
  async range(prefix: string, options: RangeOptions = {}): Promise<RangeResult> {
    const bounds = rangeBounds(options);
    for (let attempt = 1;; attempt++) {
      const result = await this.#rangePages(prefix, bounds, attempt === RANGE_ATTEMPTS);
      if (result) return result;
      // The pinned revision was compacted between two pages: start over.
    }
  }

  /**
   * One paged read; `undefined` when a later page's revision was compacted
   * meanwhile (unless `last`, when that rejects).
   */
  async #rangePages(
    prefix: string,
    bounds: { maxKeys: number; maxBytes: number },
    last: boolean,
  ): Promise<RangeResult | undefined> {
    const { key: start, range_end } = prefixRange(prefix);
    const kvs: KeyValue[] = [];
    let size = 0;
    let revision = 0;
    let key = start;
    let limit = RANGE_PAGE_KEYS;
    // Bounded: every page but the last returns at least one key, and the
    // range at a pinned revision is finite.
    for (;;) {
      // Never ask for more than one key past the bound: that one is enough
      // to know the bound is exceeded.
      const want = Math.max(1, Math.min(limit, bounds.maxKeys - kvs.length + 1));
      let res;
      try {
        res = await this.#call(`read "${prefix}"`, (call) =>
          this.#client.kv.range(
            { key, range_end, limit: want, ...(revision > 0 ? { revision } : {}) },
            call,
          ));
      } catch (error) {
        if (revision > 0 && !last && isCompacted(error)) return undefined;
        throw error;
      }
      if (revision === 0) {
        revision = Number(res.header.revision);
        // etcd counts the whole range with the first page.
        if (Number(res.count) > bounds.maxKeys) {
          throw new RangeTooLargeError(prefix, "keys", bounds.maxKeys);
        }
      }
      let pageSize = 0;
      for (const kv of res.kvs) {
        if (kvs.length >= bounds.maxKeys) {
          throw new RangeTooLargeError(prefix, "keys", bounds.maxKeys);
        }
        pageSize += kv.key.length + kv.value.length;
        if (size + pageSize > bounds.maxBytes) {
          throw new RangeTooLargeError(prefix, "bytes", bounds.maxBytes);
        }
        kvs.push(toKeyValue(kv));
      }
      size += pageSize;
      const lastKv = res.kvs[res.kvs.length - 1];
      if (!res.more || !lastKv) return { kvs, revision };
      // The smallest key after the last one read.
      key = Buffer.concat([lastKv.key, Buffer.from([0])]);
      const perKey = Math.max(1, pageSize / res.kvs.length);
      limit = Math.max(1, Math.min(RANGE_PAGE_KEYS, Math.floor(RANGE_PAGE_BYTES / perKey)));
    }
  }

  put(key: string, value: string, options: { lease?: string } = {}): Promise<number> {
    return this.#call(`put "${key}"`, async (call) => {
      const res = await this.#client.kv.put({
        key: bytes(key),
        value: bytes(value),
        ...leaseField(options.lease),
      }, call);
      return Number(res.header.revision);
    });
  }

  delete(key: string, options: { prefix?: boolean } = {}): Promise<number> {
    return this.#call(`delete "${key}"`, async (call) => {
      const res = await this.#client.kv.deleteRange(
        options.prefix ? prefixRange(key) : { key: bytes(key) },
        call,
      );
      return Number(res.deleted);
    });
  }

  txn(compares: Compare[], success: TxnOp[], failure: TxnOp[] = []): Promise<TxnResult> {
    const written = success.filter((op) => op.type !== "get").map((op) => `"${op.key}"`);
    const what = written.length === 0
      ? "run a transaction"
      : `run a transaction writing ${written.slice(0, 3).join(", ")}${
        written.length > 3 ? ` and ${written.length - 3} more` : ""
      }`;
    return this.#call(what, async (options) => {
      const res = await this.#client.kv.txn({
        compare: compares.map(toCompare),
        success: success.map(toRequestOp),
        failure: failure.map(toRequestOp),
      }, options);
      const ops = res.succeeded ? success : failure;
      return {
        succeeded: res.succeeded,
        revision: Number(res.header.revision),
        responses: ops.map((op, i) =>
          fromResponseOp(res.responses[i] ?? {} as IResponseOp, op.type)
        ),
      };
    });
  }

  async watch(
    prefix: string,
    onEvents: (events: WatchEvent[]) => void,
    options: WatchOptions = {},
  ): Promise<Watch> {
    let start = options.startRevision ?? 0;
    if (start <= 0) {
      // Pin "only future changes" to a revision now, so that a reconnect
      // before the first event resumes from there and not from "now" again.
      start = 1 + await this.#call(`watch "${prefix}"`, async (options) => {
        const res = await this.#client.kv.range(
          { key: bytes(prefix), count_only: true },
          options,
        );
        return Number(res.header.revision);
      });
    }
    if (this.#closed) throw new Error(`Cannot watch "${prefix}": the EtcdStore is closed`);
    const watch = new EtcdWatch(this, this.#client, prefix, start, onEvents, options.onError);
    this.#watches.add(watch);
    await watch.start(this.#timeoutMs, () => this.#unavailable());
    return watch;
  }

  async grantLease(ttl: number, options: LeaseOptions = {}): Promise<Lease> {
    if (!Number.isInteger(ttl) || ttl < 1) {
      throw new RangeError(`Invalid lease TTL ${ttl}: expected whole seconds ≥ 1`);
    }
    const every = options.keepAliveEvery ?? ttl / 3;
    if (!(every >= 0) || !Number.isFinite(every)) {
      throw new RangeError(`Invalid keepAliveEvery ${every}: expected seconds ≥ 0`);
    }
    const res = await this.#call(
      "grant a lease",
      (options) => this.#client.leaseClient.leaseGrant({ TTL: ttl }, options),
    );
    if (res.error) throw new Error(`Cannot grant a lease: etcd said "${res.error}"`);
    const lease = new EtcdLease(this, String(res.ID), Number(res.TTL), every * 1000);
    if (this.#closed) {
      lease.abandon();
    } else {
      this.#leases.add(lease);
    }
    return lease;
  }

  /**
   * Compact etcd's history up to `revision`: watches starting at or before
   * it fail with `StoreCompactedError`. (Used by tests and maintenance.)
   */
  compact(revision: number): Promise<void> {
    return this.#call(`compact to revision ${revision}`, async (options) => {
      await this.#client.kv.compact({ revision, physical: true }, options);
    });
  }

  /** @internal One keep-alive round trip; resolves with the TTL etcd reports (≤ 0: gone). */
  _keepAlive(id: string): Promise<number> {
    return this.#call(`keep lease ${id} alive`, async (options) => {
      const stream = await this.#client.leaseClient.leaseKeepAlive(options);
      try {
        return await new Promise<number>((resolve, reject) => {
          stream.on("data", (res) => resolve(Number(res.TTL)));
          stream.on("error", reject);
          stream.on("end", () => reject(new GRPCUnavailableError("keep-alive stream ended")));
          stream.write({ ID: id });
        });
      } finally {
        discardStream(stream);
      }
    });
  }

  /** @internal Revoke a lease; a lease etcd no longer knows counts as revoked. */
  _revoke(id: string): Promise<void> {
    if (this.#closed) return Promise.resolve();
    return this.#call(`revoke lease ${id}`, async (options) => {
      try {
        await this.#client.leaseClient.leaseRevoke({ ID: id }, options);
      } catch (error) {
        if (!(error instanceof EtcdLeaseInvalidError)) throw error;
      }
    });
  }

  /**
   * Create `role` in etcd's authentication (if it does not exist) and make
   * its permissions exactly `role.permissions`: missing ones are granted,
   * others revoked. Needs etcd's `root` role. Returns what it changed, one
   * line each (empty when the role was as it should be).
   */
  async applyRole(role: EtcdRole): Promise<string[]> {
    const changes: string[] = [];
    await this.#call(`add role "${role.name}"`, async (options) => {
      try {
        await this.#client.auth.roleAdd({ name: role.name }, options);
        changes.push(`added role ${role.name}`);
      } catch (error) {
        if (!(error instanceof EtcdRoleExistsError)) throw error;
      }
    });
    const have = await this.#call(
      `read role "${role.name}"`,
      (options) => this.#client.auth.roleGet({ role: role.name }, options),
    );
    const range = (p: EtcdPermission) =>
      p.prefix ? prefixRange(p.key) : { key: bytes(p.key), range_end: Buffer.alloc(0) };
    const id = (key: Buffer, end: Buffer | undefined) =>
      `${key.toString("hex")}:${(end ?? Buffer.alloc(0)).toString("hex")}`;
    const type = { read: "Read", write: "Write", readwrite: "Readwrite" } as const;
    const wanted = new Map(role.permissions.map((p) => {
      const r = range(p);
      return [id(r.key, r.range_end), { p, r }];
    }));
    for (const perm of have.perm ?? []) {
      const w = wanted.get(id(perm.key, perm.range_end));
      if (w && type[w.p.type] === perm.permType) {
        wanted.delete(id(perm.key, perm.range_end));
        continue;
      }
      if (w) continue; // granted again below, with the wanted type
      await this.#call(`revoke a permission of role "${role.name}"`, async (options) => {
        await this.#client.auth.roleRevokePermission(
          { role: role.name, key: perm.key, range_end: perm.range_end },
          options,
        );
      });
      changes.push(
        `revoked ${perm.permType.toLowerCase()} ${perm.key.toString("utf8")} from ${role.name}`,
      );
    }
    for (const { p, r } of wanted.values()) {
      await this.#call(`grant a permission to role "${role.name}"`, async (options) => {
        await this.#client.auth.roleGrantPermission({
          name: role.name,
          perm: { permType: type[p.type], key: r.key, range_end: r.range_end },
        }, options);
      });
      changes.push(
        `granted ${p.type} ${p.key}${p.prefix ? " (prefix)" : ""} to ${role.name}`,
      );
    }
    return changes;
  }

  /**
   * @internal A unary read of `prefix`: it renews an expired token, or
   * rejects (`EtcdPermissionError`) when the user may not read there.
   */
  async _checkRead(prefix: string): Promise<void> {
    await this.#call(
      `watch "${prefix}"`,
      (options) => this.#client.kv.range({ key: bytes(prefix), count_only: true }, options),
    );
  }

  /** @internal A watch or lease that needs no more cleanup at close. */
  _forget(item: EtcdWatch | EtcdLease): void {
    if (item instanceof EtcdWatch) this.#watches.delete(item);
    else this.#leases.delete(item);
  }

  close(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    this.#closed = true;
    for (const watch of [...this.#watches]) void watch.close();
    for (const lease of [...this.#leases]) lease.abandon();
    this.#client.close();
    return Promise.resolve();
  }
}
