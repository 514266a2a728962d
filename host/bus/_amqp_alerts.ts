/**
 * Alerts on an `AmqpBus`: sending one to the `alert` exchange (waiting for
 * the socket when it is full), and handing the alerts delivered to a
 * subscription's queue to its handler one at a time, in order, with
 * acknowledgements in batches. A handler's failure is logged; one that
 * hangs is left behind after `handlerTimeoutMs`; an alert that cannot be
 * used is dead-lettered.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { BusUnavailableError, checkSize, checkTopic, encodeBody } from "./bus.ts";
import { ACK_BATCH, dropMessage, errorText, JSON_TYPE, readBody } from "./_amqp_wire.ts";
import { withQbrokerTaskFields } from "./task_state.ts";
import type { Channel, Message, Reg } from "./_amqp_state.ts";
import type { AmqpSettings } from "./_amqp_options.ts";
import type { AmqpConnection } from "./_amqp_connection.ts";

/** Sends alerts, and runs the handlers of alert subscriptions. */
export class Alerts {
  #s: Readonly<AmqpSettings>;
  #connection: AmqpConnection;

  constructor(settings: Readonly<AmqpSettings>, connection: AmqpConnection) {
    this.#s = settings;
    this.#connection = connection;
  }

  /** See `Bus.alert`. */
  async send(topic: string, data: unknown): Promise<void> {
    checkTopic(topic);
    const body = encodeBody(withQbrokerTaskFields(topic, data), `the data of alert "${topic}"`);
    checkSize(body.length, this.#s.maxBytes, `the alert "${topic}"`);
    const ch = this.#connection.ch;
    if (this.#connection.state !== "connected" || ch === undefined) {
      throw this.#connection.notConnected(`send alert "${topic}"`);
    }
    let ok: boolean;
    try {
      ok = ch.publish(
        this.#s.ex.alert,
        topic,
        Buffer.from(body.buffer, body.byteOffset, body.length),
        { contentType: JSON_TYPE, type: "alert" },
      );
    } catch (e) {
      throw new BusUnavailableError(`cannot send alert "${topic}": ${errorText(e)}`, { cause: e });
    }
    // Back-pressure: wait until the socket takes more (or the connection is gone).
    if (!ok) await this.#connection.drained();
  }

  /** An alert for the subscription `reg`, delivered on its channel `ch`. */
  onMessage(reg: Reg, ch: Channel, msg: Message): void {
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
    const maxBytes = this.#s.maxBytes;
    let unacked = 0;
    try {
      while (!reg.closed && reg.channel === ch && reg.backlog.length > 0) {
        const msg = reg.backlog.shift()!;
        const topic = msg.fields.routingKey;
        let data: unknown;
        try {
          data = readBody(msg, `alert "${topic}"`, maxBytes);
        } catch (e) {
          dropMessage(this.#s.log, ch, msg, errorText(e));
          continue;
        }
        await this.#runHandler(reg, topic, data);
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
  async #runHandler(reg: Reg, topic: string, data: unknown): Promise<void> {
    const log = this.#s.log;
    const failed = (e: unknown) =>
      log("warn", `the alert handler of "${reg.key}" failed on "${topic}": ${errorText(e)}`);
    let result: void | Promise<void>;
    try {
      result = reg.onAlert!(topic, data);
    } catch (e) {
      failed(e);
      return;
    }
    // A synchronous handler needs no timer.
    if (!(result instanceof Promise)) return;
    const timeoutMs = this.#s.handlerTimeoutMs;
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      await Promise.race([
        result,
        new Promise<void>((resolve) => {
          timer = setTimeout(() => {
            log("warn", `the alert handler of "${reg.key}" did not finish within ${timeoutMs} ms`);
            resolve();
          }, timeoutMs);
        }),
      ]);
    } catch (e) {
      failed(e);
    } finally {
      clearTimeout(timer);
    }
  }
}
