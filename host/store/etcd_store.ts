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
  GRPCUnavailableError,
  type IOptions,
  type IResponseOp,
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
  StoreUnavailableError,
  type TxnOp,
  type TxnResult,
  type Watch,
  type WatchEvent,
  type WatchOptions,
} from "./store.ts";
import { allowIpServername } from "../tls_ip_servername.ts";
import {
  EtcdAccessError,
  EtcdPermissionError,
  etcdText,
  grpcHosts,
  isUnreachable,
  probeTls,
  RETRY_MAX_MS,
  RETRY_STEP_MS,
  tlsFailure,
  wasNotSent,
} from "./_etcd_failures.ts";
import {
  bytes,
  fromResponseOp,
  isCompacted,
  leaseField,
  prefixRange,
  toCompare,
  toKeyValue,
  toRequestOp,
} from "./_etcd_wire.ts";
import { discardStream, EtcdWatch } from "./_etcd_watch.ts";
import { EtcdLease, moment } from "./_etcd_lease.ts";

export { EtcdAccessError, EtcdPermissionError } from "./_etcd_failures.ts";

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
  /** The etcd user name. */
  user: string;
  /** The user's password. */
  password: string;
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
  /** The role's name. */
  name: string;
  /** Every permission the role grants. */
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

  /** A client of the etcd cluster at `options.endpoints`; connects on first use. */
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
    // The lease's life counts from before the request left (see _etcd_lease.ts).
    const sent = moment();
    const res = await this.#call(
      "grant a lease",
      (options) => this.#client.leaseClient.leaseGrant({ TTL: ttl }, options),
    );
    if (res.error) throw new Error(`Cannot grant a lease: etcd said "${res.error}"`);
    const lease = new EtcdLease(this, String(res.ID), Number(res.TTL), every * 1000, sent);
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
