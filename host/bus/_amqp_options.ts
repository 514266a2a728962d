/**
 * The options of `AmqpBus` (public, re-exported by `amqp_bus.ts`), and the
 * settings they resolve to: every option checked once, in the constructor,
 * with its default filled in, and the arguments that bound every queue the
 * bus declares.
 *
 * @module
 */

import { Buffer } from "node:buffer";
// @ts-types="@types/amqplib"
import amqp from "amqplib";
import type { LogLevel } from "../log.ts";
import {
  checkChannels,
  checkPositive,
  DEFAULT_HANDLER_TIMEOUT_MS,
  DEFAULT_MAX_IN_FLIGHT,
  DEFAULT_MAX_MESSAGE_BYTES,
} from "./bus.ts";
import { allowIpServername } from "../tls_ip_servername.ts";
import { OWN_CHANNELS, redactUrl } from "./_amqp_wire.ts";

/**
 * An RPC queue nobody consumes from for this long is deleted (`x-expires`),
 * with the requests in it: a server that is away longer than this lets its
 * callers time out anyway.
 */
const RPC_QUEUE_EXPIRES_MS = 10_000;

/** The default `queueTtlMs`, `queueLength` and `queueBytes` (`/config/run` defaults too). */
const DEFAULT_QUEUE_TTL_MS = 60_000;
const DEFAULT_QUEUE_LENGTH = 10_000;
const DEFAULT_QUEUE_BYTES = 16 * 1024 * 1024;

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
  /**
   * How RPC queues are declared: `qbroker` with exactly qbroker's arguments
   * (a message TTL of 10 s and dead-lettering, no length bounds), so that
   * MoaT's Python peers can serve the same names and declare the queue
   * before or after us; `bounded` with `queueTtlMs`, `queueLength`,
   * `queueBytes` and `x-expires` as well (a qbroker server then fails to
   * declare a queue we made). `auto`: `qbroker` while those three options
   * keep their defaults, `bounded` when any was set to another value (an
   * install that tuned its bounds in `/config/run` keeps them).
   * @default "auto"
   */
  rpcQueues?: "auto" | "qbroker" | "bounded";
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

/** `AmqpBusOptions` checked, with every default filled in. */
export interface AmqpSettings {
  url: string;
  /** The URL without its password, for messages. */
  shownUrl: string;
  ex: AmqpExchanges;
  maxBytes: number;
  handlerTimeoutMs: number;
  maxInFlight: number;
  alertPrefetch: number;
  connectTimeoutMs: number;
  reconnectMinMs: number;
  reconnectMaxMs: number;
  connectionName: string;
  queueTtlMs: number;
  queueLength: number;
  queueBytes: number;
  maxChannels: number;
  /** How RPC queues are declared (`auto` resolved). */
  rpcQueues: "qbroker" | "bounded";
  log: (level: LogLevel, message: string) => void;
  /** Socket options for amqplib: TLS material and credentials (never shown). */
  socketOptions: Record<string, unknown>;
}

/** Check `options` and fill in the defaults; throws `RangeError` naming a bad one. */
export function settingsOf(options: AmqpBusOptions): Readonly<AmqpSettings> {
  const url = options.url ?? DEFAULT_AMQP_URL;
  const shownUrl = redactUrl(url);
  if (!/^amqps?:\/\/[^\s]+$/i.test(url)) {
    throw new RangeError(
      `AMQP URL "${shownUrl}" is not valid (expected amqp://USER:PASSWORD@HOST:PORT/VHOST)`,
    );
  }
  const ex = { ...DEFAULT_EXCHANGES, ...options.exchanges };
  for (const [k, v] of Object.entries(ex)) {
    if (typeof v !== "string" || !/^[A-Za-z0-9_.:-]{1,200}$/.test(v)) {
      throw new RangeError(`exchange name for "${k}" is not valid: ${JSON.stringify(v)}`);
    }
  }
  const maxBytes = checkPositive(
    options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES,
    "maxMessageBytes",
  );
  const handlerTimeoutMs = checkPositive(
    options.handlerTimeoutMs ?? DEFAULT_HANDLER_TIMEOUT_MS,
    "handlerTimeoutMs",
  );
  const maxInFlight = checkPositive(options.maxInFlight ?? DEFAULT_MAX_IN_FLIGHT, "maxInFlight");
  const alertPrefetch = checkPositive(options.alertPrefetch ?? 256, "alertPrefetch");
  const connectTimeoutMs = checkPositive(options.connectTimeoutMs ?? 5_000, "connectTimeoutMs");
  const reconnectMinMs = checkPositive(options.reconnectMinMs ?? 100, "reconnectMinMs");
  const reconnectMaxMs = checkPositive(options.reconnectMaxMs ?? 5_000, "reconnectMaxMs");
  const connectionName = options.connectionName ?? "moat-scripts";
  const queueTtlMs = Math.ceil(
    checkPositive(options.queueTtlMs ?? DEFAULT_QUEUE_TTL_MS, "queueTtlMs"),
  );
  const queueLength = Math.ceil(
    checkPositive(options.queueLength ?? DEFAULT_QUEUE_LENGTH, "queueLength"),
  );
  const queueBytes = Math.ceil(
    checkPositive(options.queueBytes ?? DEFAULT_QUEUE_BYTES, "queueBytes"),
  );
  const maxChannels = checkChannels(options.maxChannels ?? 1024);
  const mode = options.rpcQueues ?? "auto";
  if (mode !== "auto" && mode !== "qbroker" && mode !== "bounded") {
    throw new RangeError(
      `rpcQueues must be "auto", "qbroker" or "bounded", not ${JSON.stringify(mode)}`,
    );
  }
  const rpcQueues = mode !== "auto" ? mode : queueTtlMs === DEFAULT_QUEUE_TTL_MS &&
      queueLength === DEFAULT_QUEUE_LENGTH && queueBytes === DEFAULT_QUEUE_BYTES
    ? "qbroker"
    : "bounded";
  if (maxChannels <= OWN_CHANNELS) {
    throw new RangeError(`maxChannels must be more than ${OWN_CHANNELS}, not ${maxChannels}`);
  }
  const log = options.log ?? (() => {});
  const secure = /^amqps:/i.test(url);
  const tls = options.tls;
  if (tls && !secure) {
    throw new RangeError(`TLS options need an amqps:// URL, not "${shownUrl}"`);
  }
  if (tls && (tls.cert === undefined) !== (tls.key === undefined)) {
    throw new RangeError(
      "A client certificate needs its key and a key its certificate: give both or neither",
    );
  }
  const socketOptions: Record<string, unknown> = {};
  if (secure) {
    // amqps://10.0.0.1 must work under Deno too (see tls_ip_servername.ts).
    allowIpServername();
    if (tls?.ca) socketOptions.ca = Buffer.from(tls.ca);
    if (tls?.cert) socketOptions.cert = Buffer.from(tls.cert);
    if (tls?.key) socketOptions.key = Buffer.from(tls.key);
  }
  if (options.password !== undefined) {
    // The user stays the URL's; the password never enters a URL.
    const user = /^amqps?:\/\/([^:@/]*)(?::[^@/]*)?@/i.exec(url)?.[1] ?? "guest";
    socketOptions.credentials = amqp.credentials.plain(
      decodeURIComponent(user),
      options.password,
    );
  }
  return {
    url,
    shownUrl,
    ex,
    maxBytes,
    handlerTimeoutMs,
    maxInFlight,
    alertPrefetch,
    connectTimeoutMs,
    reconnectMinMs,
    reconnectMaxMs,
    connectionName,
    queueTtlMs,
    queueLength,
    queueBytes,
    maxChannels,
    rpcQueues,
    log,
    socketOptions,
  };
}

/** The arguments that bound every queue the bus declares. */
export function queueBounds(
  s: Readonly<AmqpSettings>,
): { messageTtl: number; maxLength: number; arguments: Record<string, unknown> } {
  // drop-head: when a queue is full the oldest message goes, the one whose
  // caller most likely gave up already (and for alerts, the stalest news).
  return {
    messageTtl: s.queueTtlMs,
    maxLength: s.queueLength,
    arguments: { "x-overflow": "drop-head", "x-max-length-bytes": s.queueBytes },
  };
}

/** qbroker's message TTL of an RPC queue (its `ttl.rpc` default, 10 s). */
export const QBROKER_RPC_TTL_MS = 10_000;

/**
 * How an RPC queue `<rpc>_<name>` is declared (by every server of the name
 * alike). RabbitMQ refuses (406) to declare an existing queue with other
 * arguments, and qbroker's servers have no fallback for that: in
 * `qbroker` mode the queue gets exactly qbroker's arguments (auto-delete,
 * `x-dead-letter-exchange: <dead>`, `x-message-ttl: 10000`), so either side
 * may declare it first; in `bounded` mode the install's queue bounds
 * (`queueBounds`) and `x-expires` too, and a qbroker server can only use a
 * queue of the name while none of ours exists.
 */
export function rpcQueueOptions(s: Readonly<AmqpSettings>): amqp.Options.AssertQueue {
  const base = { durable: false, autoDelete: true, exclusive: false };
  if (s.rpcQueues === "qbroker") {
    return {
      ...base,
      arguments: { "x-dead-letter-exchange": s.ex.dead, "x-message-ttl": QBROKER_RPC_TTL_MS },
    };
  }
  const bounds = queueBounds(s);
  return {
    ...base,
    deadLetterExchange: s.ex.dead,
    ...bounds,
    // auto-delete only removes a queue that once had a consumer: one
    // declared by a registration that failed or closed before consuming
    // would stay for ever. Unused for RPC_QUEUE_EXPIRES_MS, it goes.
    arguments: { ...bounds.arguments, "x-expires": RPC_QUEUE_EXPIRES_MS },
  };
}
