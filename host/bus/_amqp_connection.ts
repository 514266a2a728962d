/**
 * The connection of an `AmqpBus` and its reconnect state machine:
 *
 * ```
 * new ──connect()──▶ connecting ──▶ connected ◀──▶ disconnected (reconnecting)
 *                        │ fails: back to new          │
 *                        └───────── close() ──▶ closed ◀┘ (from any state)
 * ```
 *
 * One connection carries the main channel (publishing, and consuming the
 * reply queue `<reply>_<id>`, where `id` is fresh per connection) and the
 * channels of registrations. A lost connection (or a channel that closes on
 * its own, which takes the connection down with it) is reported to the
 * other parts through {@linkcode ConnectionHooks}; the bus then reconnects
 * with backoff (`reconnectMinMs` doubling to `reconnectMaxMs`) for as long
 * as it is open.
 *
 * @module
 */

// @ts-types="@types/amqplib"
import amqp from "amqplib";
import { type BusState, BusUnavailableError } from "./bus.ts";
import { errorText, isPreconditionFailed, tlsFailure } from "./_amqp_wire.ts";
import type { Channel, Message } from "./_amqp_state.ts";
import { type AmqpSettings, queueBounds } from "./_amqp_options.ts";

/** What the other parts of the bus do when the connection comes and goes. */
export interface ConnectionHooks {
  /** A message on the reply queue of `conn` (`null`: the broker cancelled its consumer). */
  onReply(conn: amqp.ChannelModel, msg: Message | null): void;
  /** The connection is gone: forget every channel opened on it. */
  detachAll(): void;
  /** The connection is gone while the bus is open: fail the calls in flight. */
  failCalls(error: (name: string) => Error): void;
  /** Reconnected: set every registration up again on the new connection. */
  restoreAll(): Promise<void>;
}

/** The state of a connection; `disconnected` means reconnecting. */
export type ConnectionState = "new" | "connecting" | "connected" | "disconnected" | "closed";

/** Mark a channel as closed by us, so that its closing is no loss of the connection. */
export function closeOwnChannel(ch: Channel): Promise<void> {
  (ch as { moatClosing?: boolean }).moatClosing = true;
  return ch.close().catch(() => {});
}

/** The connection to the broker, its main channel, and reconnecting after a loss. */
export class AmqpConnection {
  #s: Readonly<AmqpSettings>;
  #hooks: ConnectionHooks;
  #conn: amqp.ChannelModel | undefined;
  #ch: Channel | undefined;
  /** The reply routing key (the caller id) of the current connection. */
  #id = "";
  #state: ConnectionState = "new";
  #listeners = new Set<(state: BusState) => void>();
  #reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  #reconnectDelay: number;
  #drainWaiters = new Set<() => void>();
  #connecting: Promise<void> | undefined;
  /** Exchanges found with other settings (warned about once each). */
  #foreignExchanges = new Set<string>();

  constructor(settings: Readonly<AmqpSettings>, hooks: ConnectionHooks) {
    this.#s = settings;
    this.#hooks = hooks;
    this.#reconnectDelay = settings.reconnectMinMs;
  }

  get state(): ConnectionState {
    return this.#state;
  }

  /** The current connection (undefined while there is none). */
  get conn(): amqp.ChannelModel | undefined {
    return this.#conn;
  }

  /** The main channel of the current connection. */
  get ch(): Channel | undefined {
    return this.#ch;
  }

  /** The reply routing key of the current connection ("" before the first). */
  get id(): string {
    return this.#id;
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
        this.#s.log("warn", `bus state listener failed: ${errorText(e)}`);
      }
    }
  }

  /** Resolves when the main channel takes more again (or the connection is gone). */
  drained(): Promise<void> {
    return new Promise<void>((resolve) => this.#drainWaiters.add(resolve));
  }

  #wakeDrainWaiters(): void {
    const waiters = [...this.#drainWaiters];
    this.#drainWaiters.clear();
    for (const w of waiters) w();
  }

  /** The error for `what` while not connected, saying why. */
  notConnected(what: string): BusUnavailableError {
    return new BusUnavailableError(
      this.#state === "closed"
        ? `cannot ${what}: the bus is closed`
        : this.#state === "new" || this.#state === "connecting"
        ? `cannot ${what}: not connected to the AMQP broker (call connect() first)`
        : `cannot ${what}: not connected to the AMQP broker at ${this.#s.shownUrl} (reconnecting)`,
    );
  }

  /** See `AmqpBus.connect`. */
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
    const s = this.#s;
    const fail = (why: string, cause?: unknown) =>
      new BusUnavailableError(
        `AMQP broker at ${s.shownUrl} is not reachable: ${why}`,
        cause === undefined ? undefined : { cause },
      );
    let timer: ReturnType<typeof setTimeout> | undefined;
    let timedOut = false;
    const connecting = amqp.connect(s.url, {
      ...s.socketOptions,
      timeout: s.connectTimeoutMs,
      // Small messages each way: Nagle's algorithm would hold a reply back for the
      // broker's delayed ACK of the request's ack (milliseconds per call).
      noDelay: true,
      clientProperties: { connection_name: s.connectionName },
    });
    let conn: amqp.ChannelModel;
    try {
      conn = await Promise.race([
        connecting,
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => {
            timedOut = true;
            reject(fail(`no answer within ${s.connectTimeoutMs} ms`));
          }, s.connectTimeoutMs);
        }),
      ]);
    } catch (e) {
      if (timedOut) {
        // A late connection is closed again as soon as it arrives.
        connecting.then((c) => c.close().catch(() => {}), () => {});
        throw e;
      }
      const tls = /^amqps:/i.test(s.url) ? tlsFailure(e) : undefined;
      if (tls !== undefined) {
        throw new BusUnavailableError(
          `TLS handshake with the AMQP broker at ${s.shownUrl} failed: ${tls}`,
          { cause: e },
        );
      }
      throw fail(errorText(e), e);
    } finally {
      clearTimeout(timer);
    }
    conn.on("error", (e: unknown) => s.log("warn", `AMQP connection error: ${errorText(e)}`));
    try {
      await this.#declareExchanges(conn);
      const ch = await conn.createChannel();
      this.watchChannel(conn, ch, "the main channel");
      ch.on("drain", () => this.#wakeDrainWaiters());
      const id = crypto.randomUUID();
      const queue = `${s.ex.reply}_${id}`;
      await ch.assertQueue(queue, {
        exclusive: true,
        autoDelete: true,
        durable: false,
        ...queueBounds(s),
      });
      await ch.bindQueue(queue, s.ex.reply, id);
      // Requests nobody serves reach `dead` (the alternate exchange of
      // `rpc`, and the dead-letter exchange of RPC queues): a caller that
      // sees its own come back fails the call at once (no_server).
      await ch.bindQueue(queue, s.ex.dead, "#");
      await ch.consume(queue, (msg) => this.#hooks.onReply(conn, msg), { noAck: true });
      this.#conn = conn;
      this.#ch = ch;
      this.#id = id;
    } catch (e) {
      await conn.close().catch(() => {});
      throw fail(errorText(e), e);
    }
    conn.on("close", () => this.#lost(conn));
  }

  /**
   * Declare the exchanges as qbroker does (durable, not auto-delete; `rpc`
   * with the alternate exchange `dead`, where requests nobody serves go).
   * One that exists with other settings is used as it is, with a warning
   * once per exchange (qbroker's docs make `dead` a fanout; an `rpc` from
   * before the alternate exchange lacks it).
   */
  async #declareExchanges(conn: amqp.ChannelModel): Promise<void> {
    const ex = this.#s.ex;
    const types: [string, string, amqp.Options.AssertExchange][] = [
      [ex.alert, "topic", {}],
      [ex.dead, "topic", {}],
      [ex.rpc, "topic", { alternateExchange: ex.dead }],
      [ex.reply, "direct", {}],
    ];
    let ch = await conn.createChannel();
    ch.on("error", () => {});
    for (const [name, type, extra] of types) {
      try {
        await ch.assertExchange(name, type, { durable: true, autoDelete: false, ...extra });
      } catch (e) {
        if (!isPreconditionFailed(e)) throw e;
        if (!this.#foreignExchanges.has(name)) {
          this.#foreignExchanges.add(name);
          this.#s.log(
            "warn",
            `exchange "${name}" exists with other settings; using it as it is: ${errorText(e)}`,
          );
        }
        ch = await conn.createChannel();
        ch.on("error", () => {});
        await ch.checkExchange(name);
      }
    }
    await ch.close().catch(() => {});
  }

  /** A channel that closes on its own (a channel error) takes the connection down with it. */
  watchChannel(conn: amqp.ChannelModel, ch: Channel, what: string): void {
    ch.on("error", (e: unknown) => this.#s.log("warn", `AMQP error on ${what}: ${errorText(e)}`));
    ch.on("close", () => {
      if ((ch as { moatClosing?: boolean }).moatClosing || this.#conn !== conn) return;
      this.#s.log("warn", `${what} closed unexpectedly; reconnecting`);
      conn.close().catch(() => {});
    });
  }

  /** The connection `conn` is gone: fail calls, then reconnect. */
  #lost(conn: amqp.ChannelModel): void {
    if (this.#conn !== conn) return;
    this.#conn = undefined;
    this.#ch = undefined;
    this.#wakeDrainWaiters();
    this.#hooks.detachAll();
    if (this.#state === "closed") return;
    this.#state = "disconnected";
    this.#s.log("warn", `lost the connection to the AMQP broker at ${this.#s.shownUrl}`);
    this.#hooks.failCalls(
      (name) =>
        new BusUnavailableError(
          `call to "${name}" failed: lost the connection to the AMQP broker at ${this.#s.shownUrl}`,
        ),
    );
    this.#emit("disconnected");
    this.#scheduleReconnect();
  }

  #scheduleReconnect(): void {
    if (this.#state === "closed" || this.#reconnectTimer !== undefined) return;
    const delay = this.#reconnectDelay;
    this.#reconnectDelay = Math.min(this.#reconnectDelay * 2, this.#s.reconnectMaxMs);
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
      this.#s.log("info", `reconnect failed: ${errorText(e)}`);
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
    await this.#hooks.restoreAll();
    if (this.#conn === undefined) return; // lost again meanwhile; #lost rescheduled
    this.#reconnectDelay = this.#s.reconnectMinMs;
    this.#state = "connected";
    this.#s.log("info", `reconnected to the AMQP broker at ${this.#s.shownUrl}`);
    this.#emit("connected");
  }

  /**
   * The first step of closing: no more reconnects, nothing new accepted.
   * Returns whether the bus was ever opened.
   */
  markClosed(): boolean {
    const wasOpen = this.#state !== "new";
    this.#state = "closed";
    clearTimeout(this.#reconnectTimer);
    this.#reconnectTimer = undefined;
    return wasOpen;
  }

  /**
   * The last step of closing, after `markClosed()` and the registrations:
   * close the main channel and the connection; say "closed" if `wasOpen`.
   */
  async close(wasOpen: boolean): Promise<void> {
    const conn = this.#conn;
    const ch = this.#ch;
    this.#ch = undefined;
    this.#wakeDrainWaiters();
    // Closing the channel first flushes what was published on it to the broker.
    if (ch) await closeOwnChannel(ch);
    if (conn) {
      try {
        await conn.close();
      } catch (e) {
        this.#s.log("debug", `closing the AMQP connection failed: ${errorText(e)}`);
      }
    }
    this.#conn = undefined;
    if (wasOpen) this.#emit("closed");
    this.#listeners.clear();
  }
}
