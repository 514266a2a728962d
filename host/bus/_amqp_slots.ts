/**
 * The channels of an `AmqpBus`'s registrations, as slots: an ungrouped
 * registration has a slot of its own, a group at most `channels` slots that
 * its registrations take turns on. A slot's channel is opened (again) on the
 * current connection when a member is attached, and closed when its last
 * member leaves. No registration may make the bus open more than
 * `maxChannels` channels, so that none can break the connection every
 * script shares.
 *
 * @module
 */

// @ts-types="@types/amqplib"
import type amqp from "amqplib";
import { BusLimitError } from "./bus.ts";
import { OWN_CHANNELS } from "./_amqp_wire.ts";
import type { Channel, GroupState, Reg, Slot } from "./_amqp_state.ts";
import type { AmqpSettings } from "./_amqp_options.ts";
import { type AmqpConnection, closeOwnChannel } from "./_amqp_connection.ts";

/** The slots in existence, and their channels. */
export class ChannelSlots {
  #s: Readonly<AmqpSettings>;
  #connection: AmqpConnection;
  /** Slots in existence (each is, or will be, one channel). */
  #count = 0;

  constructor(settings: Readonly<AmqpSettings>, connection: AmqpConnection) {
    this.#s = settings;
    this.#connection = connection;
  }

  /**
   * The slot of a new registration: a channel of its own, or one of its
   * group's. Refused with `BusLimitError` when it needs a new channel and
   * the bus has opened `maxChannels` already (a group that has one shares it).
   */
  assign(g: GroupState | undefined, what: string): Slot {
    const max = this.#s.maxChannels;
    const full = this.#count + OWN_CHANNELS >= max;
    if (g && (g.slots.length >= g.max || (full && g.slots.length > 0))) {
      return g.slots[g.next++ % g.slots.length]!;
    }
    if (full) {
      throw new BusLimitError(
        `cannot ${what}: the bus has ${max} AMQP channels open, its limit ` +
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
    this.#count++;
    g?.slots.push(slot);
    return slot;
  }

  /** A registration left its slot: an empty slot closes its channel and is gone. */
  leave(reg: Reg): void {
    const slot = reg.slot;
    if (!slot.members.delete(reg) || slot.members.size > 0) return;
    this.#count--;
    if (reg.group) {
      const i = reg.group.slots.indexOf(slot);
      if (i >= 0) reg.group.slots.splice(i, 1);
    }
    const ch = slot.channel;
    slot.channel = undefined;
    slot.opening = undefined;
    if (ch) void closeOwnChannel(ch);
  }

  /** The slot's channel on the current connection, opened if need be. */
  channel(conn: amqp.ChannelModel, slot: Slot): Promise<Channel> {
    if (slot.channel) return Promise.resolve(slot.channel);
    slot.opening ??= (async () => {
      try {
        const ch = await conn.createChannel();
        ch.on("error", () => {});
        if (this.#connection.conn !== conn || slot.members.size === 0) {
          await closeOwnChannel(ch);
          throw this.#connection.notConnected("open a channel");
        }
        this.#connection.watchChannel(
          conn,
          ch,
          slot.shared ? "a shared channel" : "a registration's channel",
        );
        slot.channel = ch;
        return ch;
      } finally {
        slot.opening = undefined;
      }
    })();
    return slot.opening;
  }
}

/** Run `fn` with the slot's lock held (one consumer set-up at a time per channel). */
export function locked<T>(slot: Slot, fn: () => Promise<T>): Promise<T> {
  const run = slot.lock.then(fn);
  slot.lock = run.then(() => {}, () => {});
  return run;
}
