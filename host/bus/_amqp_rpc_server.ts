/**
 * The server side of RPC on an `AmqpBus`: a request delivered to a `serve`
 * registration's queue is checked (reply address, deadline, size, content
 * type, body), handed to the handler with an abort signal, and answered
 * exactly once on the `reply` exchange: with the result, the handler's
 * error (in the reply header `error`, qbroker's `m_err` shape), or a
 * timeout after `handlerTimeoutMs`. The reply has the content type of the
 * request (JSON or qbroker's `application/json+obj`). Requests of both
 * qbroker generations are answered: `type` `rpc` (trio) and `request`
 * (asyncio, whose call without arguments sends `""`: it arrives as `null`).
 * The request is acknowledged after its answer; one that cannot be used is
 * dead-lettered.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import {
  boundedError,
  BusError,
  checkSize,
  encodeBody,
  type RemoteErrorInfo,
  remoteErrorOf,
} from "./bus.ts";
import {
  bodyKind,
  DEADLINE_HEADER,
  dropMessage,
  errorClass,
  errorHeader,
  errorText,
  JSON_OBJ_TYPE,
  JSON_TYPE,
  NULL_BODY,
  readBody,
} from "./_amqp_wire.ts";
import type { Channel, Job, Message, Reg } from "./_amqp_state.ts";
import type { AmqpSettings } from "./_amqp_options.ts";
import type { AmqpConnection } from "./_amqp_connection.ts";

/** Handles the requests delivered to `serve` registrations. */
export class RpcServer {
  #s: Readonly<AmqpSettings>;
  #connection: AmqpConnection;

  constructor(settings: Readonly<AmqpSettings>, connection: AmqpConnection) {
    this.#s = settings;
    this.#connection = connection;
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
    contentType: string,
    body: Uint8Array,
    error?: RemoteErrorInfo,
  ): void {
    const ch = this.#connection.ch;
    if (!ch) return;
    const send = (b: Uint8Array, err?: RemoteErrorInfo) => {
      const e = err ? boundedError(err) : undefined;
      ch.publish(this.#s.ex.reply, replyTo, Buffer.from(b.buffer, b.byteOffset, b.length), {
        correlationId,
        contentType,
        type: "reply",
        // qbroker's shape: its raise_if_error cannot read an error without the m_err tag.
        ...(e ? { headers: { error: errorHeader(e) } } : {}),
      });
    };
    try {
      if (!error && body.length > this.#s.maxBytes) {
        throw new RangeError(
          `the reply from "${name}" is ${body.length} bytes, over the limit of ${this.#s.maxBytes} bytes`,
        );
      }
      send(body, error);
    } catch (e) {
      const why = errorText(e);
      this.#s.log("warn", `cannot send the reply from "${name}": ${why}`);
      try {
        send(NULL_BODY, {
          s: "error",
          m: `the reply from "${name}" could not be sent: ${why}`,
          c: e instanceof RangeError ? "RangeError" : "BusError",
        });
      } catch (e2) {
        this.#s.log("warn", `cannot send an error reply from "${name}" either: ${errorText(e2)}`);
      }
    }
  }

  /** A request for the registration `reg`, delivered on its channel `ch`. */
  onRequest(reg: Reg, ch: Channel, msg: Message): void {
    const name = reg.key;
    const { replyTo, messageId } = msg.properties;
    if (typeof replyTo !== "string" || replyTo === "") {
      dropMessage(this.#s.log, ch, msg, "a request without reply_to");
      return;
    }
    if (typeof messageId !== "string" || messageId === "") {
      dropMessage(this.#s.log, ch, msg, "a request without message_id");
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
      this.#s.log("debug", `dropped a request to "${name}" whose caller's deadline passed`);
      try {
        ch.ack(msg);
      } catch {
        // The channel closed meanwhile.
      }
      return;
    }
    // Answer in the request's content type: qbroker's asyncio generation
    // reads the reply with the codec it sent; plain JSON is valid json+obj.
    const contentType = bodyKind(msg.properties.contentType) === "json" ? JSON_TYPE : JSON_OBJ_TYPE;
    let args: unknown;
    try {
      args = readBody(msg, `the request to "${name}"`, this.#s.maxBytes);
    } catch (e) {
      const why = errorText(e);
      this.#reply(name, replyTo, messageId, contentType, NULL_BODY, {
        s: "error",
        m: why,
        c: errorClass(e),
      });
      dropMessage(this.#s.log, ch, msg, why);
      return;
    }
    // qbroker's asyncio generation sends a call without arguments as "".
    if (args === "" && msg.properties.type === "request") args = null;
    this.#handle(reg, ch, msg, args, replyTo, messageId, contentType);
  }

  /** Run the handler on a request that passed the checks, and answer it once. */
  #handle(
    reg: Reg,
    ch: Channel,
    msg: Message,
    args: unknown,
    replyTo: string,
    messageId: string,
    contentType: string,
  ): void {
    const name = reg.key;
    const timeoutMs = this.#s.handlerTimeoutMs;
    const controller = new AbortController();
    let done = false;
    const settle = (body: Uint8Array, error?: RemoteErrorInfo) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      reg.jobs.delete(job);
      // After a reconnect the request went back to the queue: another server answers it.
      if (reg.channel !== ch) return;
      this.#reply(name, replyTo, messageId, contentType, body, error);
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
      this.#s.log("warn", `the handler of "${name}" did not finish within ${timeoutMs} ms`);
      job.finish({
        s: "error",
        m: `the handler of "${name}" did not finish within ${timeoutMs} ms`,
        c: "TimeoutError",
      });
    }, timeoutMs);
    reg.jobs.add(job);
    Promise.resolve()
      .then(() => reg.rpc!(args, { name, signal: controller.signal }))
      .then((result) => {
        const body = encodeBody(result, `the result of "${name}"`);
        checkSize(body.length, this.#s.maxBytes, `the reply from "${name}"`);
        settle(body);
      })
      .catch((e: unknown) => settle(NULL_BODY, remoteErrorOf(e)));
  }
}
