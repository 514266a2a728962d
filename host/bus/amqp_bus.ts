/**
 * `AmqpBus`: the `Bus` on RabbitMQ (npm:amqplib), compatible on the wire
 * with MoaT's broker conventions (qbroker). `docs/amqp.md` is the protocol;
 * in short:
 *
 * - exchanges `alert` (topic), `rpc` (topic, alternate exchange `dead`),
 *   `reply` (direct), `dead` (topic), all durable, names configurable;
 * - a request goes to `rpc` with routing key = the RPC name, `reply_to` =
 *   the caller's id, a `message_id`, content type `application/json`; the
 *   reply goes to `reply` with routing key = `reply_to`, `correlation_id` =
 *   the request's `message_id`, in the request's content type; a failure
 *   travels in the reply header `error` in qbroker's `m_err` shape;
 * - `application/json+obj` (qbroker's tagged JSON) is read on requests,
 *   replies and alerts; requests of type `rpc` and `request` are answered;
 * - servers of one name share the queue `<rpc>_<name>` (auto-delete,
 *   dead-lettered to `dead`, qbroker's arguments unless the install bounds
 *   its queues); each connection has one exclusive reply queue
 *   `<reply>_<id>`, bound to `dead` too, so that a request nobody serves
 *   fails its call at once (`RpcNoServerError`); each alert subscription its
 *   own exclusive queue `<alert>_<id>.<n>` bound with its pattern.
 *
 * Faults: a lost connection fails calls in flight at once, new calls fail
 * fast, and the bus reconnects with backoff (0.1 s doubling to 5 s) for as
 * long as it is open, re-establishing every registration. Bad messages from
 * the broker are logged and rejected (dead-lettered), never thrown.
 *
 * `AmqpBus` wires together parts private to this folder, one concept each:
 *
 * | file                      | concept                                                 |
 * | ------------------------- | ------------------------------------------------------- |
 * | `_amqp_options.ts`        | the options, their defaults and checks; queue bounds    |
 * | `_amqp_connection.ts`     | the connection, its main channel, the reconnect states  |
 * | `_amqp_rpc_client.ts`     | RPC, the caller side: calls in flight and their replies |
 * | `_amqp_registrations.ts`  | `serve`, `onAlert`, groups: queues, consumers, restore  |
 * | `_amqp_slots.ts`          | the channels registrations share, and the channel limit |
 * | `_amqp_declare.ts`        | RPC queues declared on a channel of their own           |
 * | `_amqp_rpc_server.ts`     | RPC, the server side: checking and answering requests   |
 * | `_amqp_alerts.ts`         | sending alerts, and running subscriptions' handlers     |
 * | `_amqp_wire.ts`           | content types, headers, reply errors, dropped messages  |
 * | `_amqp_json_obj.ts`       | qbroker's `application/json+obj` tags, decoded          |
 * | `_amqp_state.ts`          | the records: pending call, job, registration, slot      |
 *
 * The parts hold no reference to `AmqpBus`: the connection reports its
 * comings and goings through hooks, and registrations hand deliveries on
 * through a `Delivery`, so that imports flow one way.
 *
 * @module
 */

import type {
  AlertHandler,
  Bus,
  BusGroup,
  BusState,
  CallOptions,
  GroupOptions,
  Registration,
  RpcHandler,
  ServeOptions,
} from "./bus.ts";
import { BusUnavailableError } from "./bus.ts";
import {
  type AmqpBusOptions,
  type AmqpExchanges,
  type AmqpSettings,
  settingsOf,
} from "./_amqp_options.ts";
import { AmqpConnection } from "./_amqp_connection.ts";
import { RpcClient } from "./_amqp_rpc_client.ts";
import { RpcServer } from "./_amqp_rpc_server.ts";
import { Alerts } from "./_amqp_alerts.ts";
import { Registrations } from "./_amqp_registrations.ts";

export {
  type AmqpBusOptions,
  type AmqpExchanges,
  type AmqpTlsOptions,
  DEFAULT_AMQP_URL,
  DEFAULT_EXCHANGES,
} from "./_amqp_options.ts";
export { redactUrl } from "./_amqp_wire.ts";

/** The `Bus` on RabbitMQ. Call `connect()` before anything else. */
export class AmqpBus implements Bus {
  #s: Readonly<AmqpSettings>;
  #connection: AmqpConnection;
  #client: RpcClient;
  #registrations: Registrations;
  #alerts: Alerts;
  #closing: Promise<void> | undefined;

  /** A client of the broker at `options.url`; connects on first use, and again after a loss. */
  constructor(options: AmqpBusOptions = {}) {
    this.#s = settingsOf(options);
    this.#connection = new AmqpConnection(this.#s, {
      onReply: (conn, msg) => this.#client.onReply(conn, msg),
      detachAll: () => this.#registrations.detachAll(),
      failCalls: (error) => this.#client.failPending(error),
      restoreAll: () => this.#registrations.restoreAll(),
    });
    this.#client = new RpcClient(this.#s, this.#connection);
    const server = new RpcServer(this.#s, this.#connection);
    this.#alerts = new Alerts(this.#s, this.#connection);
    this.#registrations = new Registrations(this.#s, this.#connection, {
      request: (reg, ch, msg) => server.onRequest(reg, ch, msg),
      alert: (reg, ch, msg) => this.#alerts.onMessage(reg, ch, msg),
    });
  }

  /** Connect `new AmqpBus(options)` and return it. */
  static async open(options: AmqpBusOptions = {}): Promise<AmqpBus> {
    const bus = new AmqpBus(options);
    await bus.connect();
    return bus;
  }

  /** The exchange names in use. */
  get exchanges(): Readonly<AmqpExchanges> {
    return { ...this.#s.ex };
  }

  /** The `reply_to` id of the current connection ("" while not connected). */
  get id(): string {
    return this.#connection.state === "connected" ? this.#connection.id : "";
  }

  get connected(): boolean {
    return this.#connection.state === "connected";
  }

  onState(listener: (state: BusState) => void): () => void {
    return this.#connection.onState(listener);
  }

  /**
   * Connect for the first time. Rejects with `BusUnavailableError` within
   * `connectTimeoutMs` when the broker cannot be reached; after success the
   * bus keeps reconnecting by itself until `close()`.
   */
  connect(): Promise<void> {
    return this.#connection.connect();
  }

  call(name: string, args: unknown, options: CallOptions = {}): Promise<unknown> {
    return this.#client.call(name, args, options);
  }

  serve(name: string, handler: RpcHandler, options: ServeOptions = {}): Promise<Registration> {
    return this.#registrations.serve(undefined, name, handler, options);
  }

  onAlert(pattern: string, handler: AlertHandler): Promise<Registration> {
    return this.#registrations.onAlert(undefined, pattern, handler);
  }

  /**
   * A group of registrations sharing at most `channels` channels: the first
   * `channels` registrations open one each, later ones take turns on them
   * (round-robin). Each consumer keeps its own prefetch.
   */
  group(options: GroupOptions = {}): BusGroup {
    return this.#registrations.group(options);
  }

  alert(topic: string, data: unknown): Promise<void> {
    return this.#alerts.send(topic, data);
  }

  /** Fail calls in flight, end every registration and disconnect. Safe twice. */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    const wasOpen = this.#connection.markClosed();
    this.#client.failPending((name) =>
      new BusUnavailableError(`call to "${name}" failed: the bus was closed`)
    );
    await this.#registrations.close();
    await this.#connection.close(wasOpen);
  }
}
