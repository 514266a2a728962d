/**
 * The state AmqpBus keeps per call, registration, request and channel: a
 * pending call, a request being handled, a registration and the channel
 * slots registrations share (alone, or in a group).
 *
 * @module
 */

// @ts-types="@types/amqplib"
import type amqp from "amqplib";
import type { AlertHandler, RemoteErrorInfo, RpcHandler } from "./bus.ts";

export type Channel = amqp.Channel;
export type Message = amqp.ConsumeMessage;

export interface PendingCall {
  name: string;
  resolve(value: unknown): void;
  reject(e: Error): void;
  timer: ReturnType<typeof setTimeout>;
  /** When the caller gives up (Unix ms): the request's own expiration. */
  deadline: number;
}

export interface Job {
  controller: AbortController;
  /** Send the error reply (if still possible) and release the message. */
  finish(error: RemoteErrorInfo): void;
  /** Forget the request without a reply (its channel is gone). */
  cancel(): void;
}

/**
 * A channel that registrations share: one per ungrouped registration, at
 * most `channels` per group. It exists while it has members, and is opened
 * (again) on the current connection when a member is attached.
 */
export interface Slot {
  channel: Channel | undefined;
  opening: Promise<Channel> | undefined;
  /** Registrations assigned to this slot (attached or waiting for a connection). */
  members: Set<Reg>;
  /** Whether it belongs to a group (and may carry several consumers). */
  shared: boolean;
  /** Serialises the set-up of consumers, whose prefetch is set just before each. */
  lock: Promise<void>;
}

export interface GroupState {
  max: number;
  slots: Slot[];
  next: number;
  regs: Set<Reg>;
  closed: boolean;
}

export interface Reg {
  kind: "rpc" | "alert";
  /** The RPC name or the alert pattern. */
  key: string;
  rpc?: RpcHandler;
  onAlert?: AlertHandler;
  prefetch: number;
  /** Number of this registration, for its alert queue's name. */
  n: number;
  channel: Channel | undefined;
  consumerTag: string | undefined;
  jobs: Set<Job>;
  closed: boolean;
  /** Alerts delivered but not yet handled, in order. */
  backlog: Message[];
  pumping: boolean;
  slot: Slot;
  group: GroupState | undefined;
}
