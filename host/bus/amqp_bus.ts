/**
 * `AmqpBus`: the `Bus` on RabbitMQ (npm:amqplib), compatible on the wire
 * with MoaT's broker conventions (qbroker). `docs/amqp.md` is the protocol;
 * in short:
 *
 * - exchanges `alert` (topic), `rpc` (topic), `reply` (direct), `dead`
 *   (topic), all durable, names configurable;
 * - a request goes to `rpc` with routing key = the RPC name, `reply_to` =
 *   the caller's id, a `message_id`, content type `application/json`; the
 *   reply goes to `reply` with routing key = `reply_to`, `correlation_id` =
 *   the request's `message_id`; a failure travels in the reply header
 *   `error` as `{s, m, c}`;
 * - servers of one name share the queue `<rpc>_<name>` (auto-delete,
 *   dead-lettered to `dead`); each connection has one exclusive reply queue
 *   `<reply>_<id>`; each alert subscription its own exclusive queue
 *   `<alert>_<id>.<n>` bound with its pattern.
 *
 * Faults: a lost connection fails calls in flight at once, new calls fail
 * fast, and the bus reconnects with backoff (0.1 s doubling to 5 s) for as
 * long as it is open, re-establishing every registration. Bad messages from
 * the broker are logged and rejected (dead-lettered), never thrown.
 *
 * @module
 */

import { Buffer } from "node:buffer";
// @ts-types="@types/amqplib"
import amqp from "amqplib";
import type { LogLevel } from "../log.ts";
import {
  type AlertHandler,
  boundedError,
  type Bus,
  BusError,
  type BusGroup,
  BusLimitError,
  type BusState,
  BusUnavailableError,
  type CallOptions,
  checkChannels,
  checkPattern,
  checkPositive,
  checkRpcName,
  checkSize,
  checkTopic,
  DEFAULT_CALL_TIMEOUT_MS,
  DEFAULT_GROUP_CHANNELS,
  DEFAULT_HANDLER_TIMEOUT_MS,
  DEFAULT_MAX_IN_FLIGHT,
  DEFAULT_MAX_MESSAGE_BYTES,
  encodeBody,
  type GroupOptions,
  type Registration,
  type RemoteErrorInfo,
  remoteErrorOf,
  type RpcHandler,
  RpcRemoteError,
  RpcTimeoutError,
  type ServeOptions,
} from "./bus.ts";
import { allowIpServername } from "../tls_ip_servername.ts";
import {
  ACK_BATCH,
  bodyKind,
  DEADLINE_HEADER,
  decodeAs,
  errorText,
  failureOf,
  isPreconditionFailed,
  JSON_TYPE,
  NULL_BODY,
  OWN_CHANNELS,
  redactUrl,
  tlsFailure,
} from "./_amqp_wire.ts";
import type { Channel, GroupState, Job, Message, PendingCall, Reg, Slot } from "./_amqp_state.ts";

export { redactUrl } from "./_amqp_wire.ts";

/**
 * An RPC queue nobody consumes from for this long is deleted (`x-expires`),
 * with the requests in it: a server that is away longer than this lets its
 * callers time out anyway.
 */
const RPC_QUEUE_EXPIRES_MS = 10_000;

/** The names of the four exchanges. */
export interface AmqpExchanges {
  /** Topic exchange for alerts. @default "alert" */
  alert: string;
  /** Topic exchange for RPC requests. @default "rpc" */
  rpc: string;
  /** Direct exchange for RPC replies. @default "reply" */
  reply: string;
  /** Topic exchange that rejected requests are dead-lettered to. @default "dead" */
  dead: string;
}

/** The default exchange names (MoaT's). */
export const DEFAULT_EXCHANGES: Readonly<AmqpExchanges> = Object.freeze({
  alert: "alert",
  rpc: "rpc",
  reply: "reply",
  dead: "dead",
});

/** The default broker URL. */
export const DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672";

/** Options of `AmqpBus`. */
export interface AmqpBusOptions {
  /** The broker. @default "amqp://guest:guest@127.0.0.1:5672" */
  url?: string;
  /** Exchange names, each defaulting to MoaT's (`alert`, `rpc`, `reply`, `dead`). */
  exchanges?: Partial<AmqpExchanges>;
  /** The largest message body sent or accepted, in bytes. @default 1048576 */
  maxMessageBytes?: number;
  /**
   * How long a server lets one handler run; then the caller gets an error
   * reply of class "TimeoutError" and the slot is free again.
   * @default 60000
   */
  handlerTimeoutMs?: number;
  /** Requests one `serve` registration handles at once (its prefetch). @default 16 */
  maxInFlight?: number;
  /** Alerts one subscription has delivered but not yet handled (its prefetch). @default 256 */
  alertPrefetch?: number;
  /** How long `connect()` (and each reconnect attempt) may take. @default 5000 */
  connectTimeoutMs?: number;
  /** First delay before reconnecting; it doubles per failed attempt. @default 100 */
  reconnectMinMs?: number;
  /** Longest delay between reconnect attempts. @default 5000 */
  reconnectMaxMs?: number;
  /** Shown by `rabbitmqctl list_connections client_properties`. @default "moat-scripts" */
  connectionName?: string;
  /**
   * Milliseconds a message may wait in a queue the bus declares
   * (`x-message-ttl`; `/config/run/queue_ttl`). Every declarer of a shared
   * RPC queue must use the same value, else the queue is used as the first
   * declarer made it.
   * @default 60000
   */
  queueTtlMs?: number;
  /**
   * Messages that may wait in a queue the bus declares (`x-max-length`,
   * with `x-overflow: drop-head`; `/config/run/queue_length`).
   * @default 10000
   */
  queueLength?: number;
  /**
   * Bytes of message bodies that may wait in a queue the bus declares
   * (`x-max-length-bytes`, drop-head too; `/config/run/queue_bytes`).
   * @default 16777216
   */
  queueBytes?: number;
  /**
   * The most channels the bus opens on its one connection, far below the
   * broker's `channel_max` (2047 by default): a registration that would
   * need one more is refused with `BusLimitError`, so that no amount of
   * registrations can break the connection every script shares.
   * @default 1024
   */
  maxChannels?: number;
  /** Where the bus reports dropped messages and connection changes. @default nothing */
  log?: (level: LogLevel, message: string) => void;
  /**
   * TLS for an `amqps://` URL: PEM texts (not file names) of the CA that
   * signed the broker's certificate and of a client certificate and its
   * key (for brokers that verify peers). Without `ca` the system's roots
   * are trusted.
   * @default none
   */
  tls?: AmqpTlsOptions;
  /**
   * The password, used instead of the URL's (so that it need not be in a
   * URL at all); the user is the URL's.
   * @default the URL's password
   */
  password?: string;
}

/** TLS material of `AmqpBusOptions.tls`, in PEM. */
export interface AmqpTlsOptions {
  /** The CA certificate(s) that signed the broker's certificate. @default the system's roots */
  ca?: Uint8Array;
  /** The client certificate (chain). @default none */
  cert?: Uint8Array;
  /** The client certificate's private key. @default none */
  key?: Uint8Array;
}

/** The `Bus` on RabbitMQ. Call `connect()` before anything else. */
export class AmqpBus implements Bus {
  #url: string;
  #shownUrl: string;
  #ex: AmqpExchanges;
  #maxBytes: number;
  #handlerTimeoutMs: number;
  #maxInFlight: number;
  #alertPrefetch: number;
  #connectTimeoutMs: number;
  #reconnectMinMs: number;
  #reconnectMaxMs: number;
  #connectionName: string;
  #queueTtlMs: number;
  #queueLength: number;
  #queueBytes: number;
  #maxChannels: number;
  #log: (level: LogLevel, message: string) => void;
  /** Socket options for amqplib: TLS material and credentials (never shown). */
  #socketOptions: Record<string, unknown>;
  /** Slots in existence (each is, or will be, one channel). */
  #slotCount = 0;
  /** The channel queues of other declarers are probed on (a 406 closes it, not a shared one). */
  #declareCh: Channel | undefined;
  #declareLock: Promise<void> = Promise.resolve();
  /** RPC queues found with other arguments (logged once each). */
  #foreign = new Set<string>();

  #conn: amqp.ChannelModel | undefined;
  #ch: Channel | undefined;
  /** The reply routing key (the caller id) of the current connection. */
  #id = "";
  #state: "new" | "connecting" | "connected" | "disconnected" | "closed" = "new";
  #pending = new Map<string, PendingCall>();
  #regs = new Set<Reg>();
  #regCount = 0;
  #listeners = new Set<(state: BusState) => void>();
  #reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  #reconnectDelay: number;
  #drainWaiters = new Set<() => void>();
  #closing: Promise<void> | undefined;
  #connecting: Promise<void> | undefined;

  /** A client of the broker at `options.url`; connects on first use, and again after a loss. */
  constructor(options: AmqpBusOptions = {}) {
    this.#url = options.url ?? DEFAULT_AMQP_URL;
    this.#shownUrl = redactUrl(this.#url);
    if (!/^amqps?:\/\/[^\s]+$/i.test(this.#url)) {
      throw new RangeError(
        `AMQP URL "${this.#shownUrl}" is not valid (expected amqp://USER:PASSWORD@HOST:PORT/VHOST)`,
      );
    }
    this.#ex = { ...DEFAULT_EXCHANGES, ...options.exchanges };
    for (const [k, v] of Object.entries(this.#ex)) {
      if (typeof v !== "string" || !/^[A-Za-z0-9_.:-]{1,200}$/.test(v)) {
        throw new RangeError(`exchange name for "${k}" is not valid: ${JSON.stringify(v)}`);
      }
    }
    this.#maxBytes = checkPositive(
      options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES,
      "maxMessageBytes",
    );
    this.#handlerTimeoutMs = checkPositive(
      options.handlerTimeoutMs ?? DEFAULT_HANDLER_TIMEOUT_MS,
      "handlerTimeoutMs",
    );
    this.#maxInFlight = checkPositive(options.maxInFlight ?? DEFAULT_MAX_IN_FLIGHT, "maxInFlight");
    this.#alertPrefetch = checkPositive(options.alertPrefetch ?? 256, "alertPrefetch");
    this.#connectTimeoutMs = checkPositive(options.connectTimeoutMs ?? 5_000, "connectTimeoutMs");
    this.#reconnectMinMs = checkPositive(options.reconnectMinMs ?? 100, "reconnectMinMs");
    this.#reconnectMaxMs = checkPositive(options.reconnectMaxMs ?? 5_000, "reconnectMaxMs");
    this.#reconnectDelay = this.#reconnectMinMs;
    this.#connectionName = options.connectionName ?? "moat-scripts";
    this.#queueTtlMs = Math.ceil(checkPositive(options.queueTtlMs ?? 60_000, "queueTtlMs"));
    this.#queueLength = Math.ceil(checkPositive(options.queueLength ?? 10_000, "queueLength"));
    this.#queueBytes = Math.ceil(
      checkPositive(options.queueBytes ?? 16 * 1024 * 1024, "queueBytes"),
    );
    this.#maxChannels = checkChannels(options.maxChannels ?? 1024);
    if (this.#maxChannels <= OWN_CHANNELS) {
      throw new RangeError(
        `maxChannels must be more than ${OWN_CHANNELS}, not ${this.#maxChannels}`,
      );
    }
    this.#log = options.log ?? (() => {});
    const secure = /^amqps:/i.test(this.#url);
    const tls = options.tls;
    if (tls && !secure) {
      throw new RangeError(`TLS options need an amqps:// URL, not "${this.#shownUrl}"`);
    }
    if (tls && (tls.cert === undefined) !== (tls.key === undefined)) {
      throw new RangeError(
        "A client certificate needs its key and a key its certificate: give both or neither",
      );
    }
    this.#socketOptions = {};
    if (secure) {
      // amqps://10.0.0.1 must work under Deno too (see the module).
      allowIpServername();
      if (tls?.ca) this.#socketOptions.ca = Buffer.from(tls.ca);
      if (tls?.cert) this.#socketOptions.cert = Buffer.from(tls.cert);
      if (tls?.key) this.#socketOptions.key = Buffer.from(tls.key);
    }
    if (options.password !== undefined) {
      // The user stays the URL's; the password never enters a URL.
      const user = /^amqps?:\/\/([^:@/]*)(?::[^@/]*)?@/i.exec(this.#url)?.[1] ?? "guest";
      this.#socketOptions.credentials = amqp.credentials.plain(
        decodeURIComponent(user),
        options.password,
      );
    }
  }

  /** Connect `new AmqpBus(options)` and return it. */
  static async open(options: AmqpBusOptions = {}): Promise<AmqpBus> {
    const bus = new AmqpBus(options);
    await bus.connect();
    return bus;
  }

  /** The exchange names in use. */
  get exchanges(): Readonly<AmqpExchanges> {
    return { ...this.#ex };
  }

  /** The `reply_to` id of the current connection ("" while not connected). */
  get id(): string {
    return this.#state === "connected" ? this.#id : "";
  }

  get connected(): boolean {
    return this.#state === "connected";
  }

  onState(listener: (state: BusState) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  #emit(state: BusState): void {
    for (const l of [...this.#listeners]) {
      try {
        l(state);
      } catch (e) {
        this.#log("warn", `bus state listener failed: ${errorText(e)}`);
      }
    }
  }

  /**
   * Connect for the first time. Rejects with `BusUnavailableError` within
   * `connectTimeoutMs` when the broker cannot be reached; after success the
   * bus keeps reconnecting by itself until `close()`.
   */
  connect(): Promise<void> {
    if (this.#state === "closed") {
      return Promise.reject(new BusUnavailableError("the bus is closed"));
    }
    this.#connecting ??= this.#firstConnect().catch((e) => {
      this.#connecting = undefined;
      throw e;
    });
    return this.#connecting;
  }

  async #firstConnect(): Promise<void> {
    this.#state = "connecting";
    try {
      await this.#open();
    } catch (e) {
      if ((this.#state as string) !== "closed") this.#state = "new";
      throw e;
    }
    if ((this.#state as string) === "closed") {
      // close() ran while we connected.
      const conn = this.#conn;
      this.#conn = undefined;
      this.#ch = undefined;
      await conn?.close().catch(() => {});
      throw new BusUnavailableError("the bus was closed while connecting");
    }
    this.#state = "connected";
    this.#emit("connected");
  }

  /** Open a connection, the exchanges, the reply queue; set `#conn`, `#ch`, `#id`. */
  async #open(): Promise<void> {
    const fail = (why: string, cause?: unknown) =>
      new BusUnavailableError(
        `AMQP broker at ${this.#shownUrl} is not reachable: ${why}`,
        cause === undefined ? undefined : { cause },
      );
    let timer: ReturnType<typeof setTimeout> | undefined;
    let timedOut = false;
    const connecting = amqp.connect(this.#url, {
      ...this.#socketOptions,
      timeout: this.#connectTimeoutMs,
      // Small messages each way: Nagle's algorithm would hold a reply back for the
      // broker's delayed ACK of the request's ack (milliseconds per call).
      noDelay: true,
      clientProperties: { connection_name: this.#connectionName },
    });
    let conn: amqp.ChannelModel;
    try {
      conn = await Promise.race([
        connecting,
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => {
            timedOut = true;
            reject(fail(`no answer within ${this.#connectTimeoutMs} ms`));
          }, this.#connectTimeoutMs);
        }),
      ]);
    } catch (e) {
      if (timedOut) {
        // A late connection is closed again as soon as it arrives.
        connecting.then((c) => c.close().catch(() => {}), () => {});
        throw e;
      }
      const tls = /^amqps:/i.test(this.#url) ? tlsFailure(e) : undefined;
      if (tls !== undefined) {
        throw new BusUnavailableError(
          `TLS handshake with the AMQP broker at ${this.#shownUrl} failed: ${tls}`,
          { cause: e },
        );
      }
      throw fail(errorText(e), e);
    } finally {
      clearTimeout(timer);
    }
    conn.on("error", (e: unknown) => this.#log("warn", `AMQP connection error: ${errorText(e)}`));
    try {
      await this.#declareExchanges(conn);
      const ch = await conn.createChannel();
      this.#watchChannel(conn, ch, "the main channel");
      ch.on("drain", () => this.#wakeDrainWaiters());
      const id = crypto.randomUUID();
      const queue = `${this.#ex.reply}_${id}`;
      await ch.assertQueue(queue, {
        exclusive: true,
        autoDelete: true,
        durable: false,
        ...this.#bounds(),
      });
      await ch.bindQueue(queue, this.#ex.reply, id);
      await ch.consume(queue, (msg) => this.#onReply(conn, msg), { noAck: true });
      this.#conn = conn;
      this.#ch = ch;
      this.#id = id;
    } catch (e) {
      await conn.close().catch(() => {});
      throw fail(errorText(e), e);
    }
    conn.on("close", () => this.#lost(conn));
  }

  /** Declare the exchanges as qbroker does (durable); accept existing ones as they are. */
  async #declareExchanges(conn: amqp.ChannelModel): Promise<void> {
    const types: [string, string][] = [
      [this.#ex.alert, "topic"],
      [this.#ex.rpc, "topic"],
      [this.#ex.reply, "direct"],
      [this.#ex.dead, "topic"],
    ];
    let ch = await conn.createChannel();
    ch.on("error", () => {});
    for (const [name, type] of types) {
      try {
        await ch.assertExchange(name, type, { durable: true, autoDelete: false });
      } catch (e) {
        if (!isPreconditionFailed(e)) throw e;
        // It exists with other settings (e.g. "dead" as fanout): use it as it is.
        this.#log("warn", `exchange "${name}" exists with other settings: ${errorText(e)}`);
        ch = await conn.createChannel();
        ch.on("error", () => {});
        await ch.checkExchange(name);
      }
    }
    await ch.close().catch(() => {});
  }

  /** A channel that closes on its own (a channel error) takes the connection down with it. */
  #watchChannel(conn: amqp.ChannelModel, ch: Channel, what: string): void {
    ch.on("error", (e: unknown) => this.#log("warn", `AMQP error on ${what}: ${errorText(e)}`));
    ch.on("close", () => {
      if ((ch as { moatClosing?: boolean }).moatClosing || this.#conn !== conn) return;
      this.#log("warn", `${what} closed unexpectedly; reconnecting`);
      conn.close().catch(() => {});
    });
  }

  /** The connection `conn` is gone: fail calls, then reconnect. */
  #lost(conn: amqp.ChannelModel): void {
    if (this.#conn !== conn) return;
    this.#conn = undefined;
    this.#ch = undefined;
    this.#declareCh = undefined;
    this.#wakeDrainWaiters();
    for (const reg of this.#regs) {
      this.#detach(reg);
      reg.slot.channel = undefined;
      reg.slot.opening = undefined;
    }
    if (this.#state === "closed") return;
    this.#state = "disconnected";
    this.#log("warn", `lost the connection to the AMQP broker at ${this.#shownUrl}`);
    this.#failPending(
      (name) =>
        new BusUnavailableError(
          `call to "${name}" failed: lost the connection to the AMQP broker at ${this.#shownUrl}`,
        ),
    );
    this.#emit("disconnected");
    this.#scheduleReconnect();
  }

  /** Forget a registration's channel after the connection went (its messages return to the queue). */
  #detach(reg: Reg): void {
    reg.channel = undefined;
    reg.consumerTag = undefined;
    reg.backlog.length = 0;
    for (const job of [...reg.jobs]) job.cancel();
  }

  #scheduleReconnect(): void {
    if (this.#state === "closed" || this.#reconnectTimer !== undefined) return;
    const delay = this.#reconnectDelay;
    this.#reconnectDelay = Math.min(this.#reconnectDelay * 2, this.#reconnectMaxMs);
    this.#reconnectTimer = setTimeout(() => {
      this.#reconnectTimer = undefined;
      void this.#reconnect();
    }, delay);
  }

  async #reconnect(): Promise<void> {
    if (this.#state === "closed") return;
    try {
      await this.#open();
    } catch (e) {
      this.#log("info", `reconnect failed: ${errorText(e)}`);
      this.#scheduleReconnect();
      return;
    }
    // close() may have run while #open() waited.
    if ((this.#state as string) === "closed") {
      const conn = this.#conn;
      this.#conn = undefined;
      await conn?.close().catch(() => {});
      return;
    }
    for (const reg of this.#regs) {
      try {
        await this.#attach(reg);
      } catch (e) {
        this.#log("error", `cannot restore ${reg.kind} "${reg.key}": ${errorText(e)}`);
      }
    }
    if (this.#conn === undefined) return; // lost again meanwhile; #lost rescheduled
    this.#reconnectDelay = this.#reconnectMinMs;
    this.#state = "connected";
    this.#log("info", `reconnected to the AMQP broker at ${this.#shownUrl}`);
    this.#emit("connected");
  }

  #failPending(error: (name: string) => Error): void {
    const calls = [...this.#pending.values()];
    this.#pending.clear();
    for (const call of calls) {
      clearTimeout(call.timer);
      call.reject(error(call.name));
    }
  }

  #wakeDrainWaiters(): void {
    const waiters = [...this.#drainWaiters];
    this.#drainWaiters.clear();
    for (const w of waiters) w();
  }

  #notConnected(what: string): BusUnavailableError {
    return new BusUnavailableError(
      this.#state === "closed"
        ? `cannot ${what}: the bus is closed`
        : this.#state === "new" || this.#state === "connecting"
        ? `cannot ${what}: not connected to the AMQP broker (call connect() first)`
        : `cannot ${what}: not connected to the AMQP broker at ${this.#shownUrl} (reconnecting)`,
    );
  }

  // ---- RPC: the caller side ----

  call(name: string, args: unknown, options: CallOptions = {}): Promise<unknown> {
    let body: Uint8Array;
    let timeoutMs: number;
    try {
      checkRpcName(name);
      timeoutMs = checkPositive(options.timeoutMs ?? DEFAULT_CALL_TIMEOUT_MS, "timeoutMs");
      body = encodeBody(args, `the arguments of "${name}"`);
      checkSize(body.length, this.#maxBytes, `the request to "${name}"`);
    } catch (e) {
      return Promise.reject(e);
    }
    const ch = this.#ch;
    if (this.#state !== "connected" || ch === undefined) {
      return Promise.reject(this.#notConnected(`call "${name}"`));
    }
    const messageId = crypto.randomUUID();
    const { promise, resolve, reject } = Promise.withResolvers<unknown>();
    const timer = setTimeout(() => {
      if (this.#pending.delete(messageId)) reject(new RpcTimeoutError(name, timeoutMs));
    }, timeoutMs);
    this.#pending.set(messageId, { name, resolve, reject, timer });
    try {
      ch.publish(this.#ex.rpc, name, Buffer.from(body.buffer, body.byteOffset, body.length), {
        replyTo: this.#id,
        messageId,
        contentType: JSON_TYPE,
        type: "rpc",
        // Nobody waits for an answer after the timeout: the broker drops the
        // request then, and a server that gets it late drops it too.
        expiration: String(Math.ceil(timeoutMs)),
        headers: { [DEADLINE_HEADER]: Math.ceil(Date.now() + timeoutMs) },
      });
    } catch (e) {
      clearTimeout(timer);
      this.#pending.delete(messageId);
      return Promise.reject(
        new BusUnavailableError(`cannot call "${name}": ${errorText(e)}`, { cause: e }),
      );
    }
    return promise;
  }

  #onReply(conn: amqp.ChannelModel, msg: Message | null): void {
    if (msg === null) {
      // The broker cancelled our reply consumer (queue deleted): start afresh.
      this.#log("warn", "the reply queue was deleted; reconnecting");
      conn.close().catch(() => {});
      return;
    }
    const corr = msg.properties.correlationId;
    const call = typeof corr === "string" ? this.#pending.get(corr) : undefined;
    if (!call) {
      this.#log("debug", `ignored a reply with unknown correlation id ${JSON.stringify(corr)}`);
      return;
    }
    this.#pending.delete(corr as string);
    clearTimeout(call.timer);
    const what = `the reply from "${call.name}"`;
    try {
      const failure = failureOf(
        (msg.properties.headers as Record<string, unknown> | undefined)?.error,
      );
      if (failure) {
        call.reject(new RpcRemoteError(call.name, failure));
        return;
      }
      checkSize(msg.content.length, this.#maxBytes, what);
      const kind = bodyKind(msg.properties.contentType);
      if (!kind) {
        throw new TypeError(
          `${what} has the unsupported content type ${JSON.stringify(msg.properties.contentType)}`,
        );
      }
      call.resolve(decodeAs(kind, msg.content, what));
    } catch (e) {
      this.#log("warn", errorText(e));
      call.reject(new BusError(errorText(e), { cause: e }));
    }
  }

  // ---- registrations ----

  serve(name: string, handler: RpcHandler, options: ServeOptions = {}): Promise<Registration> {
    return this.#serveIn(undefined, name, handler, options);
  }

  onAlert(pattern: string, handler: AlertHandler): Promise<Registration> {
    return this.#onAlertIn(undefined, pattern, handler);
  }

  /**
   * A group of registrations sharing at most `channels` channels: the first
   * `channels` registrations open one each, later ones take turns on them
   * (round-robin). Each consumer keeps its own prefetch.
   */
  group(options: GroupOptions = {}): BusGroup {
    const g: GroupState = {
      max: checkChannels(options.channels ?? DEFAULT_GROUP_CHANNELS),
      slots: [],
      next: 0,
      regs: new Set(),
      closed: false,
    };
    return {
      serve: (name, handler, o) => this.#serveIn(g, name, handler, o),
      onAlert: (pattern, handler) => this.#onAlertIn(g, pattern, handler),
      get size() {
        return g.regs.size;
      },
      close: async () => {
        g.closed = true;
        await Promise.all([...g.regs].map((reg) => this.#unregister(reg)));
      },
    };
  }

  #serveIn(
    g: GroupState | undefined,
    name: string,
    handler: RpcHandler,
    options: ServeOptions = {},
  ): Promise<Registration> {
    try {
      checkRpcName(name);
      const prefetch = checkPositive(options.maxInFlight ?? this.#maxInFlight, "maxInFlight");
      return this.#register({ kind: "rpc", key: name, rpc: handler, prefetch }, g);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  #onAlertIn(
    g: GroupState | undefined,
    pattern: string,
    handler: AlertHandler,
  ): Promise<Registration> {
    try {
      checkPattern(pattern);
      return this.#register({
        kind: "alert",
        key: pattern,
        onAlert: handler,
        prefetch: this.#alertPrefetch,
      }, g);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** The arguments that bound every queue the bus declares. */
  #bounds(): { messageTtl: number; maxLength: number; arguments: Record<string, unknown> } {
    // drop-head: when a queue is full the oldest message goes, the one whose
    // caller most likely gave up already (and for alerts, the stalest news).
    return {
      messageTtl: this.#queueTtlMs,
      maxLength: this.#queueLength,
      arguments: { "x-overflow": "drop-head", "x-max-length-bytes": this.#queueBytes },
    };
  }

  /**
   * The slot of a new registration: a channel of its own, or one of its
   * group's. Refused with `BusLimitError` when it needs a new channel and
   * the bus has opened `maxChannels` already (a group that has one shares it).
   */
  #assignSlot(g: GroupState | undefined, what: string): Slot {
    const full = this.#slotCount + OWN_CHANNELS >= this.#maxChannels;
    if (g && (g.slots.length >= g.max || (full && g.slots.length > 0))) {
      return g.slots[g.next++ % g.slots.length]!;
    }
    if (full) {
      throw new BusLimitError(
        `cannot ${what}: the bus has ${this.#maxChannels} AMQP channels open, its limit ` +
          "(maxChannels); the registration was refused to keep the connection working",
      );
    }
    const slot: Slot = {
      channel: undefined,
      opening: undefined,
      members: new Set(),
      shared: g !== undefined,
      lock: Promise.resolve(),
    };
    this.#slotCount++;
    g?.slots.push(slot);
    return slot;
  }

  /** A registration left its slot: an empty slot closes its channel and is gone. */
  #leaveSlot(reg: Reg): void {
    const slot = reg.slot;
    if (!slot.members.delete(reg) || slot.members.size > 0) return;
    this.#slotCount--;
    if (reg.group) {
      const i = reg.group.slots.indexOf(slot);
      if (i >= 0) reg.group.slots.splice(i, 1);
    }
    const ch = slot.channel;
    slot.channel = undefined;
    slot.opening = undefined;
    if (ch) {
      (ch as { moatClosing?: boolean }).moatClosing = true;
      ch.close().catch(() => {});
    }
  }

  /**
   * Make a registration. While reconnecting it is only recorded, and comes
   * alive with the connection; before `connect()` and after `close()` it is refused.
   */
  async #register(
    spec: Pick<Reg, "kind" | "key" | "prefetch"> & Partial<Pick<Reg, "rpc" | "onAlert">>,
    g: GroupState | undefined,
  ): Promise<Registration> {
    const what = spec.kind === "rpc" ? `serve "${spec.key}"` : `listen to "${spec.key}"`;
    if (this.#state === "new" || this.#state === "connecting" || this.#state === "closed") {
      throw this.#notConnected(what);
    }
    if (g?.closed) throw new BusUnavailableError(`cannot ${what}: the group is closed`);
    const reg: Reg = {
      ...spec,
      n: ++this.#regCount,
      channel: undefined,
      consumerTag: undefined,
      jobs: new Set(),
      closed: false,
      backlog: [],
      pumping: false,
      slot: this.#assignSlot(g, what),
      group: g,
    };
    reg.slot.members.add(reg);
    if (this.#state === "connected") {
      try {
        await this.#attach(reg);
      } catch (e) {
        // Lost the connection meanwhile: the reconnect sets the registration up.
        if ((this.#state as string) !== "disconnected") {
          this.#leaveSlot(reg);
          throw e;
        }
      }
    }
    if (g?.closed || (this.#state as string) === "closed") {
      // The group or the bus closed while we set it up.
      await this.#unregister(reg);
      throw new BusUnavailableError(`cannot ${what}: the ${g?.closed ? "group" : "bus"} is closed`);
    }
    this.#regs.add(reg);
    g?.regs.add(reg);
    return { close: () => this.#unregister(reg) };
  }

  /** The slot's channel on the current connection, opened if need be. */
  #slotChannel(conn: amqp.ChannelModel, slot: Slot): Promise<Channel> {
    if (slot.channel) return Promise.resolve(slot.channel);
    slot.opening ??= (async () => {
      try {
        const ch = await conn.createChannel();
        ch.on("error", () => {});
        if (this.#conn !== conn || slot.members.size === 0) {
          (ch as { moatClosing?: boolean }).moatClosing = true;
          await ch.close().catch(() => {});
          throw this.#notConnected("open a channel");
        }
        this.#watchChannel(conn, ch, slot.shared ? "a shared channel" : "a registration's channel");
        slot.channel = ch;
        return ch;
      } finally {
        slot.opening = undefined;
      }
    })();
    return slot.opening;
  }

  /** Run `fn` with the slot's lock held (one consumer set-up at a time per channel). */
  #locked<T>(slot: Slot, fn: () => Promise<T>): Promise<T> {
    const run = slot.lock.then(fn);
    slot.lock = run.then(() => {}, () => {});
    return run;
  }

  /**
   * Declare an RPC queue on the declaring channel, so that a queue made by
   * another peer with other arguments (406) closes that channel and not a
   * shared one. Returns whether the queue is someone else's (use it as it is).
   */
  #declareRpcQueue(conn: amqp.ChannelModel, queue: string): Promise<boolean> {
    const run = this.#declareLock.then(async () => {
      const ch = await this.#declaringChannel(conn);
      try {
        await ch.assertQueue(queue, this.#rpcQueueOptions());
        return false;
      } catch (e) {
        if (!isPreconditionFailed(e)) throw e;
        this.#declareCh = undefined;
        // Another peer declared it with other arguments (qbroker adds a TTL): share it as it is.
        if (!this.#foreign.has(queue)) {
          this.#foreign.add(queue);
          this.#log("info", `queue "${queue}" exists with other arguments; using it as it is`);
        }
        return true;
      }
    });
    this.#declareLock = run.then(() => {}, () => {});
    return run;
  }

  /** The channel queues are declared and deleted on (opened when needed). */
  async #declaringChannel(conn: amqp.ChannelModel): Promise<Channel> {
    if (this.#declareCh) return this.#declareCh;
    const ch = await conn.createChannel();
    ch.on("error", () => {});
    ch.on("close", () => {
      if (this.#declareCh === ch) this.#declareCh = undefined;
    });
    this.#declareCh = ch;
    return ch;
  }

  /**
   * Delete an RPC queue if nobody consumes from it and it holds nothing (on
   * the declaring channel: a refusal closes that one, not a shared one).
   */
  #dropUnusedQueue(conn: amqp.ChannelModel, queue: string): Promise<void> {
    const run = this.#declareLock.then(async () => {
      const ch = await this.#declaringChannel(conn);
      try {
        await ch.deleteQueue(queue, { ifUnused: true, ifEmpty: true });
      } catch {
        // In use or not empty (the broker closed the declaring channel): it stays.
        this.#declareCh = undefined;
      }
    }).catch(() => {});
    this.#declareLock = run;
    return run;
  }

  #rpcQueueOptions(): amqp.Options.AssertQueue {
    const bounds = this.#bounds();
    return {
      durable: false,
      autoDelete: true,
      exclusive: false,
      deadLetterExchange: this.#ex.dead,
      ...bounds,
      // auto-delete only removes a queue that once had a consumer: one
      // declared by a registration that failed or closed before consuming
      // would stay for ever. Unused for RPC_QUEUE_EXPIRES_MS, it goes.
      arguments: { ...bounds.arguments, "x-expires": RPC_QUEUE_EXPIRES_MS },
    };
  }

  /** Declare, bind and consume a registration's queue on its slot's channel. */
  async #attach(reg: Reg): Promise<void> {
    const conn = this.#conn;
    if (!conn) throw this.#notConnected(`restore "${reg.key}"`);
    let queue: string;
    let foreign = false;
    if (reg.kind === "rpc") {
      if (reg.closed) return;
      queue = `${this.#ex.rpc}_${reg.key}`;
      foreign = await this.#declareRpcQueue(conn, queue);
      if (reg.closed && !foreign) {
        // Closed while the broker declared its queue: nobody may ever consume
        // from it, and auto-delete only removes queues that had a consumer.
        await this.#dropUnusedQueue(conn, queue);
        return;
      }
    } else {
      queue = `${this.#ex.alert}_${this.#id}.${reg.n}`;
    }
    const ch = await this.#slotChannel(conn, reg.slot);
    await this.#locked(reg.slot, async () => {
      if (reg.closed) return;
      if (reg.kind === "rpc") {
        // Declared again on this channel: the same arguments, so it cannot
        // fail, and it brings back a queue its last server deleted meanwhile.
        if (!foreign) await ch.assertQueue(queue, this.#rpcQueueOptions());
        await ch.bindQueue(queue, this.#ex.rpc, reg.key);
      } else {
        await ch.assertQueue(queue, {
          durable: false,
          autoDelete: true,
          exclusive: true,
          ...this.#bounds(),
        });
        await ch.bindQueue(queue, this.#ex.alert, reg.key);
      }
      await ch.prefetch(reg.prefetch);
      const { consumerTag } = await ch.consume(
        queue,
        (msg) =>
          reg.kind === "rpc" ? this.#onRequest(reg, ch, msg) : this.#onAlertMessage(reg, ch, msg),
        { noAck: false },
      );
      reg.channel = ch;
      reg.consumerTag = consumerTag;
    });
  }

  async #unregister(reg: Reg): Promise<void> {
    if (reg.closed) return;
    reg.closed = true;
    this.#regs.delete(reg);
    reg.group?.regs.delete(reg);
    // Under the slot's lock: a registration still being set up (#attach)
    // finishes first, so that its consumer is cancelled here and not left
    // behind on a closed registration (a second consumer of its queue).
    await this.#locked(reg.slot, async () => {
      const tag = reg.consumerTag;
      if (!reg.channel || !tag) return;
      try {
        await reg.channel.cancel(tag);
      } catch (e) {
        this.#log("debug", `cancelling the consumer of "${reg.key}" failed: ${errorText(e)}`);
      }
    }).catch(() => {});
    const ch = reg.channel;
    // Requests being handled are answered now, so that no caller waits for nothing.
    for (const job of [...reg.jobs]) {
      job.finish({ s: "error", m: `the server of "${reg.key}" stopped`, c: "BusError" });
    }
    reg.channel = undefined;
    reg.consumerTag = undefined;
    // Alerts not yet handled go back (their exclusive queue goes with the consumer).
    for (const msg of reg.backlog.splice(0)) {
      try {
        ch?.nack(msg, false, true);
      } catch {
        // The channel is gone: the broker has released the message already.
      }
    }
    this.#leaveSlot(reg);
  }

  // ---- RPC: the server side ----

  /** Reject a message we cannot use: it goes to the dead-letter exchange. */
  #drop(ch: Channel, msg: Message, why: string): void {
    this.#log("warn", `dropped a message for "${msg.fields.routingKey}": ${why}`);
    try {
      ch.nack(msg, false, false);
    } catch {
      // The channel is gone: the broker has released the message already.
    }
  }

  /**
   * Send a reply. Whatever the handler produced, the caller gets exactly one
   * answer: the error header is bounded (message ≤ 4 KiB, class and status
   * short identifiers) so it stays far below AMQP's frame limits, and a
   * reply that cannot be published is logged in one line and answered with
   * a small error reply instead, if even that can be sent.
   */
  #reply(
    name: string,
    replyTo: string,
    correlationId: string,
    body: Uint8Array,
    error?: RemoteErrorInfo,
  ): void {
    const ch = this.#ch;
    if (!ch) return;
    const send = (b: Uint8Array, err?: RemoteErrorInfo) => {
      const e = err ? boundedError(err) : undefined;
      ch.publish(this.#ex.reply, replyTo, Buffer.from(b.buffer, b.byteOffset, b.length), {
        correlationId,
        contentType: JSON_TYPE,
        type: "reply",
        ...(e ? { headers: { error: { s: e.s, m: e.m, c: e.c } } } : {}),
      });
    };
    try {
      if (!error && body.length > this.#maxBytes) {
        throw new RangeError(
          `the reply from "${name}" is ${body.length} bytes, over the limit of ${this.#maxBytes} bytes`,
        );
      }
      send(body, error);
    } catch (e) {
      const why = errorText(e);
      this.#log("warn", `cannot send the reply from "${name}": ${why}`);
      try {
        send(NULL_BODY, {
          s: "error",
          m: `the reply from "${name}" could not be sent: ${why}`,
          c: e instanceof RangeError ? "RangeError" : "BusError",
        });
      } catch (e2) {
        this.#log("warn", `cannot send an error reply from "${name}" either: ${errorText(e2)}`);
      }
    }
  }

  #onRequest(reg: Reg, ch: Channel, msg: Message | null): void {
    if (msg === null) {
      this.#consumerCancelled(reg, ch);
      return;
    }
    const name = reg.key;
    const { replyTo, messageId } = msg.properties;
    if (typeof replyTo !== "string" || replyTo === "") {
      this.#drop(ch, msg, "a request without reply_to");
      return;
    }
    if (typeof messageId !== "string" || messageId === "") {
      this.#drop(ch, msg, "a request without message_id");
      return;
    }
    if (reg.closed) {
      // Delivered after the consumer was cancelled: back to the queue for another server.
      try {
        ch.nack(msg, false, true);
      } catch {
        // The channel is gone: the broker has released the message already.
      }
      return;
    }
    const deadline = (msg.properties.headers as Record<string, unknown> | undefined)?.[
      DEADLINE_HEADER
    ];
    if (typeof deadline === "number" && Date.now() > deadline) {
      // The caller gave up already: nobody waits for this answer.
      this.#log("debug", `dropped a request to "${name}" whose caller's deadline passed`);
      try {
        ch.ack(msg);
      } catch {
        // The channel closed meanwhile.
      }
      return;
    }
    const refuse = (why: string, c: string) => {
      this.#reply(name, replyTo, messageId, NULL_BODY, { s: "error", m: why, c });
      this.#drop(ch, msg, why);
    };
    if (msg.content.length > this.#maxBytes) {
      refuse(
        `the request to "${name}" is ${msg.content.length} bytes, over the limit of ${this.#maxBytes} bytes`,
        "RangeError",
      );
      return;
    }
    const kind = bodyKind(msg.properties.contentType);
    if (!kind) {
      refuse(
        `the request to "${name}" has the unsupported content type ${
          JSON.stringify(msg.properties.contentType)
        }`,
        "TypeError",
      );
      return;
    }
    let args: unknown;
    try {
      args = decodeAs(kind, msg.content, `the request to "${name}"`);
    } catch (e) {
      refuse(errorText(e), "SyntaxError");
      return;
    }

    const controller = new AbortController();
    let done = false;
    const settle = (body: Uint8Array, error?: RemoteErrorInfo) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      reg.jobs.delete(job);
      // After a reconnect the request went back to the queue: another server answers it.
      if (reg.channel !== ch) return;
      this.#reply(name, replyTo, messageId, body, error);
      try {
        ch.ack(msg);
      } catch {
        // The channel closed meanwhile.
      }
    };
    const job: Job = {
      controller,
      finish: (error) => {
        controller.abort(new BusError(error.m));
        settle(NULL_BODY, error);
      },
      cancel: () => {
        done = true;
        clearTimeout(timer);
        reg.jobs.delete(job);
        controller.abort(new BusError("the connection to the AMQP broker was lost"));
      },
    };
    const timer = setTimeout(() => {
      this.#log(
        "warn",
        `the handler of "${name}" did not finish within ${this.#handlerTimeoutMs} ms`,
      );
      job.finish({
        s: "error",
        m: `the handler of "${name}" did not finish within ${this.#handlerTimeoutMs} ms`,
        c: "TimeoutError",
      });
    }, this.#handlerTimeoutMs);
    reg.jobs.add(job);
    Promise.resolve()
      .then(() => reg.rpc!(args, { name, signal: controller.signal }))
      .then((result) => {
        const body = encodeBody(result, `the result of "${name}"`);
        checkSize(body.length, this.#maxBytes, `the reply from "${name}"`);
        settle(body);
      })
      .catch((e: unknown) => settle(NULL_BODY, remoteErrorOf(e)));
  }

  /** The broker cancelled a consumer (its queue was deleted): set the registration up again. */
  #consumerCancelled(reg: Reg, ch: Channel): void {
    if (reg.closed || reg.channel !== ch) return;
    this.#log("warn", `the broker cancelled ${reg.kind} "${reg.key}"; setting it up again`);
    // The channel stays: other registrations may share it.
    this.#detach(reg);
    this.#attach(reg).catch((e) => {
      this.#log("error", `cannot restore ${reg.kind} "${reg.key}": ${errorText(e)}`);
    });
  }

  // ---- alerts ----

  async alert(topic: string, data: unknown): Promise<void> {
    checkTopic(topic);
    const body = encodeBody(data, `the data of alert "${topic}"`);
    checkSize(body.length, this.#maxBytes, `the alert "${topic}"`);
    const ch = this.#ch;
    if (this.#state !== "connected" || ch === undefined) {
      throw this.#notConnected(`send alert "${topic}"`);
    }
    let ok: boolean;
    try {
      ok = ch.publish(
        this.#ex.alert,
        topic,
        Buffer.from(body.buffer, body.byteOffset, body.length),
        { contentType: JSON_TYPE, type: "alert" },
      );
    } catch (e) {
      throw new BusUnavailableError(`cannot send alert "${topic}": ${errorText(e)}`, { cause: e });
    }
    // Back-pressure: wait until the socket takes more (or the connection is gone).
    if (!ok) await new Promise<void>((resolve) => this.#drainWaiters.add(resolve));
  }

  #onAlertMessage(reg: Reg, ch: Channel, msg: Message | null): void {
    if (msg === null) {
      this.#consumerCancelled(reg, ch);
      return;
    }
    if (reg.closed) {
      // Delivered after the consumer was cancelled; its queue goes with it.
      try {
        ch.nack(msg, false, false);
      } catch {
        // The channel is gone.
      }
      return;
    }
    reg.backlog.push(msg);
    if (!reg.pumping) {
      reg.pumping = true;
      void this.#pump(reg, ch);
    }
  }

  /** Hand a subscription's alerts to its handler one at a time, in order. */
  async #pump(reg: Reg, ch: Channel): Promise<void> {
    let unacked = 0;
    try {
      while (!reg.closed && reg.channel === ch && reg.backlog.length > 0) {
        const msg = reg.backlog.shift()!;
        const topic = msg.fields.routingKey;
        if (msg.content.length > this.#maxBytes) {
          this.#drop(
            ch,
            msg,
            `alert "${topic}" is ${msg.content.length} bytes, over the limit of ${this.#maxBytes} bytes`,
          );
          continue;
        }
        const kind = bodyKind(msg.properties.contentType);
        if (!kind) {
          this.#drop(
            ch,
            msg,
            `alert "${topic}" has the unsupported content type ${
              JSON.stringify(msg.properties.contentType)
            }`,
          );
          continue;
        }
        let data: unknown;
        try {
          data = decodeAs(kind, msg.content, `alert "${topic}"`);
        } catch (e) {
          this.#drop(ch, msg, errorText(e));
          continue;
        }
        await this.#runAlertHandler(reg, topic, data);
        if (reg.channel !== ch) break;
        // Acknowledge in batches (all up to this one): one frame per batch, not
        // per alert. Not on a shared channel: "all up to this one" would take
        // other consumers' messages along.
        if (reg.slot.shared) {
          try {
            ch.ack(msg);
          } catch {
            // The channel closed meanwhile.
          }
        } else if (++unacked >= ACK_BATCH || reg.backlog.length === 0) {
          unacked = 0;
          try {
            ch.ack(msg, true);
          } catch {
            // The channel closed meanwhile.
          }
        }
      }
    } finally {
      reg.pumping = false;
      if (!reg.closed && reg.channel !== ch) reg.backlog.length = 0;
    }
  }

  /** Run an alert handler; errors are logged, and a hung one is left behind after the timeout. */
  async #runAlertHandler(reg: Reg, topic: string, data: unknown): Promise<void> {
    const failed = (e: unknown) =>
      this.#log("warn", `the alert handler of "${reg.key}" failed on "${topic}": ${errorText(e)}`);
    let result: void | Promise<void>;
    try {
      result = reg.onAlert!(topic, data);
    } catch (e) {
      failed(e);
      return;
    }
    // A synchronous handler needs no timer.
    if (!(result instanceof Promise)) return;
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      await Promise.race([
        result,
        new Promise<void>((resolve) => {
          timer = setTimeout(() => {
            this.#log(
              "warn",
              `the alert handler of "${reg.key}" did not finish within ${this.#handlerTimeoutMs} ms`,
            );
            resolve();
          }, this.#handlerTimeoutMs);
        }),
      ]);
    } catch (e) {
      failed(e);
    } finally {
      clearTimeout(timer);
    }
  }

  // ---- closing ----

  /** Fail calls in flight, end every registration and disconnect. Safe twice. */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    const wasOpen = this.#state !== "new";
    this.#state = "closed";
    clearTimeout(this.#reconnectTimer);
    this.#reconnectTimer = undefined;
    this.#failPending((name) =>
      new BusUnavailableError(`call to "${name}" failed: the bus was closed`)
    );
    await Promise.all([...this.#regs].map((reg) => this.#unregister(reg)));
    const conn = this.#conn;
    const ch = this.#ch;
    this.#ch = undefined;
    const declareCh = this.#declareCh;
    this.#declareCh = undefined;
    await declareCh?.close().catch(() => {});
    this.#wakeDrainWaiters();
    if (ch) {
      // Closing the channel first flushes what was published on it to the broker.
      (ch as { moatClosing?: boolean }).moatClosing = true;
      await ch.close().catch(() => {});
    }
    if (conn) {
      try {
        await conn.close();
      } catch (e) {
        this.#log("debug", `closing the AMQP connection failed: ${errorText(e)}`);
      }
    }
    this.#conn = undefined;
    if (wasOpen) this.#emit("closed");
    this.#listeners.clear();
  }
}
