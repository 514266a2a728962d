/**
 * The caller side of RPC on an `AmqpBus`: a request goes to the `rpc`
 * exchange with routing key = the RPC name, `reply_to` = the connection's
 * id and a fresh `message_id`; its reply comes back on the connection's
 * reply queue with `correlation_id` = that `message_id`, and settles the
 * pending call of that id. A call ends exactly once: by its reply, its
 * timeout, or the loss of the connection.
 *
 * @module
 */

import { Buffer } from "node:buffer";
// @ts-types="@types/amqplib"
import type amqp from "amqplib";
import {
  BusUnavailableError,
  type CallOptions,
  prepareCall,
  RpcNoServerError,
  RpcRemoteError,
  RpcTimeoutError,
} from "./bus.ts";
import {
  DEADLINE_HEADER,
  errorClass,
  errorText,
  failureOf,
  JSON_TYPE,
  readBody,
} from "./_amqp_wire.ts";
import type { Message, PendingCall } from "./_amqp_state.ts";
import type { AmqpSettings } from "./_amqp_options.ts";
import type { AmqpConnection } from "./_amqp_connection.ts";

/**
 * A request that expired this long before its caller's deadline or more
 * expired by its queue's TTL (the broker and the host clocks may differ a
 * little): the call fails with `no_server` then, else its timeout says so.
 */
const EXPIRY_MARGIN_MS = 1_000;

/** Calls in flight, by message id. */
export class RpcClient {
  #s: Readonly<AmqpSettings>;
  #connection: AmqpConnection;
  #pending = new Map<string, PendingCall>();

  constructor(settings: Readonly<AmqpSettings>, connection: AmqpConnection) {
    this.#s = settings;
    this.#connection = connection;
  }

  /** See `Bus.call`. */
  call(name: string, args: unknown, options: CallOptions = {}): Promise<unknown> {
    let body: Uint8Array;
    let timeoutMs: number;
    try {
      ({ body, timeoutMs } = prepareCall(name, args, options, this.#s.maxBytes));
    } catch (e) {
      return Promise.reject(e);
    }
    const ch = this.#connection.ch;
    if (this.#connection.state !== "connected" || ch === undefined) {
      return Promise.reject(this.#connection.notConnected(`call "${name}"`));
    }
    const messageId = crypto.randomUUID();
    const { promise, resolve, reject } = Promise.withResolvers<unknown>();
    const timer = setTimeout(() => {
      if (this.#pending.delete(messageId)) reject(new RpcTimeoutError(name, timeoutMs));
    }, timeoutMs);
    const deadline = Math.ceil(Date.now() + timeoutMs);
    this.#pending.set(messageId, { name, resolve, reject, timer, deadline });
    try {
      ch.publish(this.#s.ex.rpc, name, Buffer.from(body.buffer, body.byteOffset, body.length), {
        replyTo: this.#connection.id,
        messageId,
        contentType: JSON_TYPE,
        type: "rpc",
        // Nobody waits for an answer after the timeout: the broker drops the
        // request then, and a server that gets it late drops it too.
        expiration: String(Math.ceil(timeoutMs)),
        headers: { [DEADLINE_HEADER]: deadline },
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

  /**
   * A message on the reply queue of `conn`: settle the call it answers. A
   * request of ours that comes back (the reply queue is bound to the `dead`
   * exchange: unroutable and expired requests end up there) fails its call
   * at once with `RpcNoServerError`, instead of letting it wait its timeout.
   */
  onReply(conn: amqp.ChannelModel, msg: Message | null): void {
    if (msg === null) {
      // The broker cancelled our reply consumer (queue deleted): start afresh.
      this.#s.log("warn", "the reply queue was deleted; reconnecting");
      conn.close().catch(() => {});
      return;
    }
    const { correlationId: corr, messageId, replyTo } = msg.properties;
    if (corr === undefined && typeof messageId === "string") {
      this.#deadRequest(msg, messageId, replyTo);
      return;
    }
    const call = typeof corr === "string" ? this.#pending.get(corr) : undefined;
    if (!call) {
      this.#s.log("debug", `ignored a reply with unknown correlation id ${JSON.stringify(corr)}`);
      return;
    }
    this.#pending.delete(corr as string);
    clearTimeout(call.timer);
    const what = `the reply from "${call.name}"`;
    const failure = failureOf(
      (msg.properties.headers as Record<string, unknown> | undefined)?.error,
    );
    if (failure) {
      // A qbroker peer's dead-letter handler answers a request nobody took so.
      call.reject(
        failure.c === "DeadLettered"
          ? new RpcNoServerError(call.name, `nobody serves "${call.name}" (${failure.m})`)
          : new RpcRemoteError(call.name, failure),
      );
      return;
    }
    try {
      call.resolve(readBody(msg, what, this.#s.maxBytes));
    } catch (e) {
      // The reason reaches the caller: the reply came, but cannot be used.
      const why = errorText(e);
      this.#s.log("warn", why);
      call.reject(
        new RpcRemoteError(call.name, { s: "error", m: why, c: errorClass(e) }, {
          cause: e,
        }),
      );
    }
  }

  /** A request that came back through the `dead` exchange: fail its call, if it is ours. */
  #deadRequest(msg: Message, messageId: string, replyTo: unknown): void {
    const call = replyTo === this.#connection.id ? this.#pending.get(messageId) : undefined;
    // Everyone's dead requests reach every bus: only our own calls count.
    if (!call) return;
    const death = (msg.properties.headers as Record<string, unknown> | undefined)?.["x-death"];
    const first = Array.isArray(death) ? death[0] as Record<string, unknown> : undefined;
    const reason = first === undefined ? undefined : String(first.reason);
    let why: string;
    if (reason === undefined) why = `nobody serves "${call.name}"`;
    else if (reason === "expired" && Date.now() < call.deadline - EXPIRY_MARGIN_MS) {
      // The queue's TTL, not the request's own expiration (the caller's timeout).
      why = `no server of "${call.name}" took the request before it expired in its queue`;
    } else {
      // Its own expiration: the call's timer says so. Rejected: the server
      // answered with an error first. Dropped from a full queue: the caller
      // times out, as with any lost request.
      return;
    }
    this.#pending.delete(messageId);
    clearTimeout(call.timer);
    call.reject(new RpcNoServerError(call.name, why));
  }

  /** Fail every call in flight with `error(name)`. */
  failPending(error: (name: string) => Error): void {
    const calls = [...this.#pending.values()];
    this.#pending.clear();
    for (const call of calls) {
      clearTimeout(call.timer);
      call.reject(error(call.name));
    }
  }
}
