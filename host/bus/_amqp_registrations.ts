/**
 * The registrations of an `AmqpBus`: `serve` (RPC servers) and `onAlert`
 * (alert subscriptions), alone or in groups. A registration declares and
 * binds its queue on its slot's channel and consumes from it:
 *
 * - servers of one name share the queue `<rpc>_<name>` (auto-delete,
 *   dead-lettered to `dead`, declared by `_amqp_declare.ts`);
 * - each alert subscription has its own exclusive queue `<alert>_<id>.<n>`
 *   bound with its pattern.
 *
 * While the bus reconnects a registration is only recorded and comes alive
 * with the connection; every registration is set up again after a
 * reconnect, and after the broker cancels its consumer. Deliveries go to
 * the `Delivery` the bus gives (the RPC server, the alerts).
 *
 * @module
 */

import {
  type AlertHandler,
  type BusGroup,
  BusUnavailableError,
  checkChannels,
  checkPattern,
  checkPositive,
  checkRpcName,
  DEFAULT_GROUP_CHANNELS,
  type GroupOptions,
  type Registration,
  type RpcHandler,
  type ServeOptions,
} from "./bus.ts";
import { errorText } from "./_amqp_wire.ts";
import type { Channel, GroupState, Message, Reg } from "./_amqp_state.ts";
import { type AmqpSettings, queueBounds, rpcQueueOptions } from "./_amqp_options.ts";
import type { AmqpConnection } from "./_amqp_connection.ts";
import { ChannelSlots, locked } from "./_amqp_slots.ts";
import { QueueDeclarer } from "./_amqp_declare.ts";

/** Where the messages delivered to registrations go. */
export interface Delivery {
  /** A request for the `serve` registration `reg`, on its channel `ch`. */
  request(reg: Reg, ch: Channel, msg: Message): void;
  /** An alert for the subscription `reg`, on its channel `ch`. */
  alert(reg: Reg, ch: Channel, msg: Message): void;
}

/** The registrations of one bus, attached to its current connection. */
export class Registrations {
  #s: Readonly<AmqpSettings>;
  #connection: AmqpConnection;
  #deliver: Delivery;
  #slots: ChannelSlots;
  #declarer: QueueDeclarer;
  #regs = new Set<Reg>();
  #count = 0;

  constructor(settings: Readonly<AmqpSettings>, connection: AmqpConnection, deliver: Delivery) {
    this.#s = settings;
    this.#connection = connection;
    this.#deliver = deliver;
    this.#slots = new ChannelSlots(settings, connection);
    this.#declarer = new QueueDeclarer(settings);
  }

  /** See `AmqpBus.group`. */
  group(options: GroupOptions = {}): BusGroup {
    const g: GroupState = {
      max: checkChannels(options.channels ?? DEFAULT_GROUP_CHANNELS),
      slots: [],
      next: 0,
      regs: new Set(),
      closed: false,
    };
    return {
      serve: (name, handler, o) => this.serve(g, name, handler, o),
      onAlert: (pattern, handler) => this.onAlert(g, pattern, handler),
      get size() {
        return g.regs.size;
      },
      close: async () => {
        g.closed = true;
        await Promise.all([...g.regs].map((reg) => this.#unregister(reg)));
      },
    };
  }

  /** See `Bus.serve`; in the group `g`, if any. */
  serve(
    g: GroupState | undefined,
    name: string,
    handler: RpcHandler,
    options: ServeOptions = {},
  ): Promise<Registration> {
    try {
      checkRpcName(name);
      const prefetch = checkPositive(options.maxInFlight ?? this.#s.maxInFlight, "maxInFlight");
      return this.#register({ kind: "rpc", key: name, rpc: handler, prefetch }, g);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** See `Bus.onAlert`; in the group `g`, if any. */
  onAlert(
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
        prefetch: this.#s.alertPrefetch,
      }, g);
    } catch (e) {
      return Promise.reject(e);
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
    const state = () => this.#connection.state;
    if (state() === "new" || state() === "connecting" || state() === "closed") {
      throw this.#connection.notConnected(what);
    }
    if (g?.closed) throw new BusUnavailableError(`cannot ${what}: the group is closed`);
    const reg: Reg = {
      ...spec,
      n: ++this.#count,
      channel: undefined,
      consumerTag: undefined,
      jobs: new Set(),
      closed: false,
      backlog: [],
      pumping: false,
      slot: this.#slots.assign(g, what),
      group: g,
    };
    reg.slot.members.add(reg);
    if (state() === "connected") {
      try {
        await this.#attach(reg);
      } catch (e) {
        // Lost the connection meanwhile: the reconnect sets the registration up.
        if (state() !== "disconnected") {
          this.#slots.leave(reg);
          throw e;
        }
      }
    }
    if (g?.closed || state() === "closed") {
      // The group or the bus closed while we set it up.
      await this.#unregister(reg);
      throw new BusUnavailableError(`cannot ${what}: the ${g?.closed ? "group" : "bus"} is closed`);
    }
    this.#regs.add(reg);
    g?.regs.add(reg);
    return { close: () => this.#unregister(reg) };
  }

  /** Declare, bind and consume a registration's queue on its slot's channel. */
  async #attach(reg: Reg): Promise<void> {
    const conn = this.#connection.conn;
    if (!conn) throw this.#connection.notConnected(`restore "${reg.key}"`);
    const ex = this.#s.ex;
    let queue: string;
    let foreign = false;
    if (reg.kind === "rpc") {
      if (reg.closed) return;
      queue = `${ex.rpc}_${reg.key}`;
      foreign = await this.#declarer.declareRpcQueue(conn, queue);
      if (reg.closed && !foreign) {
        // Closed while the broker declared its queue: nobody may ever consume
        // from it, and auto-delete only removes queues that had a consumer.
        await this.#declarer.dropUnusedQueue(conn, queue);
        return;
      }
    } else {
      queue = `${ex.alert}_${this.#connection.id}.${reg.n}`;
    }
    const ch = await this.#slots.channel(conn, reg.slot);
    await locked(reg.slot, async () => {
      if (reg.closed) return;
      if (reg.kind === "rpc") {
        // Declared again on this channel: the same arguments, so it cannot
        // fail, and it brings back a queue its last server deleted meanwhile.
        if (!foreign) await ch.assertQueue(queue, rpcQueueOptions(this.#s));
        await ch.bindQueue(queue, ex.rpc, reg.key);
      } else {
        await ch.assertQueue(queue, {
          durable: false,
          autoDelete: true,
          exclusive: true,
          ...queueBounds(this.#s),
        });
        await ch.bindQueue(queue, ex.alert, reg.key);
      }
      await ch.prefetch(reg.prefetch);
      const { consumerTag } = await ch.consume(queue, (msg) => {
        if (msg === null) this.#consumerCancelled(reg, ch);
        else if (reg.kind === "rpc") this.#deliver.request(reg, ch, msg);
        else this.#deliver.alert(reg, ch, msg);
      }, { noAck: false });
      reg.channel = ch;
      reg.consumerTag = consumerTag;
    });
  }

  /** Forget a registration's channel after the connection went (its messages return to the queue). */
  #detach(reg: Reg): void {
    reg.channel = undefined;
    reg.consumerTag = undefined;
    reg.backlog.length = 0;
    for (const job of [...reg.jobs]) job.cancel();
  }

  /** The broker cancelled a consumer (its queue was deleted): set the registration up again. */
  #consumerCancelled(reg: Reg, ch: Channel): void {
    if (reg.closed || reg.channel !== ch) return;
    this.#s.log("warn", `the broker cancelled ${reg.kind} "${reg.key}"; setting it up again`);
    // The channel stays: other registrations may share it.
    this.#detach(reg);
    this.#attach(reg).catch((e) => {
      this.#s.log("error", `cannot restore ${reg.kind} "${reg.key}": ${errorText(e)}`);
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
    await locked(reg.slot, async () => {
      const tag = reg.consumerTag;
      if (!reg.channel || !tag) return;
      try {
        await reg.channel.cancel(tag);
      } catch (e) {
        this.#s.log("debug", `cancelling the consumer of "${reg.key}" failed: ${errorText(e)}`);
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
    this.#slots.leave(reg);
  }

  /** The connection is gone: every channel opened on it with it. */
  detachAll(): void {
    this.#declarer.forget();
    for (const reg of this.#regs) {
      this.#detach(reg);
      reg.slot.channel = undefined;
      reg.slot.opening = undefined;
    }
  }

  /** Reconnected: set every registration up again (a failure is logged, the rest go on). */
  async restoreAll(): Promise<void> {
    for (const reg of this.#regs) {
      try {
        await this.#attach(reg);
      } catch (e) {
        this.#s.log("error", `cannot restore ${reg.kind} "${reg.key}": ${errorText(e)}`);
      }
    }
  }

  /** End every registration and close the declaring channel (closing the bus). */
  async close(): Promise<void> {
    await Promise.all([...this.#regs].map((reg) => this.#unregister(reg)));
    await this.#declarer.close();
  }
}
