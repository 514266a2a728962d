/**
 * Declaring and deleting the RPC queues of an `AmqpBus` on a channel of
 * their own, one at a time. RPC queues are shared with other peers, which
 * may have declared them with other arguments (an install with other
 * queue bounds, a qbroker peer beside a bounded install): the
 * broker's refusal (406) closes the channel it came on, and that must be
 * this one, not one that registrations share.
 *
 * @module
 */

// @ts-types="@types/amqplib"
import type amqp from "amqplib";
import { isPreconditionFailed } from "./_amqp_wire.ts";
import type { Channel } from "./_amqp_state.ts";
import { type AmqpSettings, rpcQueueOptions } from "./_amqp_options.ts";

/** The declaring channel and the RPC queues found to be someone else's. */
export class QueueDeclarer {
  #s: Readonly<AmqpSettings>;
  /** The channel queues of other declarers are probed on (a 406 closes it, not a shared one). */
  #ch: Channel | undefined;
  #lock: Promise<void> = Promise.resolve();
  /** RPC queues found with other arguments (logged once each). */
  #foreign = new Set<string>();

  constructor(settings: Readonly<AmqpSettings>) {
    this.#s = settings;
  }

  /**
   * Declare an RPC queue on the declaring channel. Returns whether the
   * queue is someone else's (use it as it is).
   */
  declareRpcQueue(conn: amqp.ChannelModel, queue: string): Promise<boolean> {
    const run = this.#lock.then(async () => {
      const ch = await this.#channel(conn);
      try {
        await ch.assertQueue(queue, rpcQueueOptions(this.#s));
        return false;
      } catch (e) {
        if (!isPreconditionFailed(e)) throw e;
        this.#ch = undefined;
        // Another peer declared it with other arguments (qbroker adds a TTL): share it as it is.
        if (!this.#foreign.has(queue)) {
          this.#foreign.add(queue);
          this.#s.log("warn", `queue "${queue}" exists with other arguments; using it as it is`);
        }
        return true;
      }
    });
    this.#lock = run.then(() => {}, () => {});
    return run;
  }

  /**
   * Delete an RPC queue if nobody consumes from it and it holds nothing (a
   * refusal closes the declaring channel, not a shared one).
   */
  dropUnusedQueue(conn: amqp.ChannelModel, queue: string): Promise<void> {
    const run = this.#lock.then(async () => {
      const ch = await this.#channel(conn);
      try {
        await ch.deleteQueue(queue, { ifUnused: true, ifEmpty: true });
      } catch {
        // In use or not empty (the broker closed the declaring channel): it stays.
        this.#ch = undefined;
      }
    }).catch(() => {});
    this.#lock = run;
    return run;
  }

  /** The channel queues are declared and deleted on (opened when needed). */
  async #channel(conn: amqp.ChannelModel): Promise<Channel> {
    if (this.#ch) return this.#ch;
    const ch = await conn.createChannel();
    ch.on("error", () => {});
    ch.on("close", () => {
      if (this.#ch === ch) this.#ch = undefined;
    });
    this.#ch = ch;
    return ch;
  }

  /** The connection is gone, and the channel with it. */
  forget(): void {
    this.#ch = undefined;
  }

  /** Close the declaring channel (closing the bus). */
  async close(): Promise<void> {
    const ch = this.#ch;
    this.#ch = undefined;
    await ch?.close().catch(() => {});
  }
}
