/**
 * The local RabbitMQ for tests: unique exchange names per test, raw
 * amqplib access (to publish what a broken peer would), and `rabbitmqctl`
 * to look at queues and bindings and to close connections from the broker's
 * side. Tests never restart the broker: others share it.
 *
 * @module
 */

import { Buffer } from "node:buffer";
// @ts-types="@types/amqplib"
import amqp from "amqplib";
import type { AmqpExchanges } from "../../host/bus/amqp_bus.ts";

/** The broker every test uses. */
export const RABBIT_URL = "amqp://guest:guest@127.0.0.1:5672";

/** Exchange names of their own for one test: `t-<random>-alert` and so on. */
export function uniqueExchanges(): AmqpExchanges & { prefix: string } {
  const prefix = `t-${crypto.randomUUID().slice(0, 8)}`;
  return {
    prefix,
    alert: `${prefix}-alert`,
    rpc: `${prefix}-rpc`,
    reply: `${prefix}-reply`,
    dead: `${prefix}-dead`,
  };
}

/** Run `rabbitmqctl ARGS…` (quietly) and return its standard output. */
export async function rabbitmqctl(...args: string[]): Promise<string> {
  const out = await new Deno.Command("rabbitmqctl", { args: ["-q", ...args] }).output();
  const dec = new TextDecoder();
  if (!out.success) {
    throw new Error(`rabbitmqctl ${args.join(" ")} failed: ${dec.decode(out.stderr).trim()}`);
  }
  return dec.decode(out.stdout);
}

/** Queues whose name starts with `prefix`, as "name consumers" lines, sorted. */
export async function queuesWith(prefix: string): Promise<string[]> {
  const rows = JSON.parse(
    await rabbitmqctl("list_queues", "name", "consumers", "--formatter", "json"),
  ) as { name: string; consumers: number }[];
  return rows.filter((r) => r.name.startsWith(prefix)).map((r) => `${r.name} ${r.consumers}`)
    .sort();
}

/**
 * Bindings (but those of the default exchange) from or to a name starting
 * with `prefix`, as "source -> destination key" lines, sorted.
 */
export async function bindingsWith(prefix: string): Promise<string[]> {
  const rows = JSON.parse(
    await rabbitmqctl(
      "list_bindings",
      "source_name",
      "destination_name",
      "routing_key",
      "--formatter",
      "json",
    ),
  ) as { source_name: string; destination_name: string; routing_key: string }[];
  return rows
    // The default exchange ("") binds every queue by its name: leave those out.
    .filter((r) => r.source_name !== "")
    .filter((r) => r.source_name.startsWith(prefix) || r.destination_name.startsWith(prefix))
    .map((r) => `${r.source_name} -> ${r.destination_name} ${r.routing_key}`)
    .sort();
}

/** Exchanges whose name starts with `prefix`, as "name type" lines, sorted. */
export async function exchangesWith(prefix: string): Promise<string[]> {
  const out = await rabbitmqctl("list_exchanges", "name", "type");
  return out.split("\n").map((l) => l.split("\t")).filter(([n]) => n?.startsWith(prefix))
    .map(([n, t]) => `${n} ${t}`).sort();
}

/**
 * Close, from the broker's side, every connection whose `connection_name`
 * client property is `name` (so other tests' connections stay up).
 * Returns how many were closed.
 */
export async function closeConnectionsNamed(name: string): Promise<number> {
  const out = await rabbitmqctl("list_connections", "pid", "client_properties");
  const pids = out.split("\n")
    .filter((line) => line.includes(`{"connection_name","${name}"}`))
    .map((line) => line.split("\t")[0]!);
  for (const pid of pids) await rabbitmqctl("close_connection", pid, "test");
  return pids.length;
}

/** A raw amqplib connection and channel, as a peer that breaks the rules would use. */
export interface RawPeer {
  channel: amqp.Channel;
  /** Publish `body` (a string or bytes) as it is. */
  publish(
    exchange: string,
    key: string,
    body: string | Uint8Array,
    props?: amqp.Options.Publish,
  ): void;
  close(): Promise<void>;
}

/** Open a raw peer on the test broker. */
export async function rawPeer(): Promise<RawPeer> {
  const conn = await amqp.connect(RABBIT_URL);
  conn.on("error", () => {});
  const channel = await conn.createChannel();
  channel.on("error", () => {});
  return {
    channel,
    publish(exchange, key, body, props = {}) {
      const bytes = typeof body === "string" ? new TextEncoder().encode(body) : body;
      channel.publish(exchange, key, Buffer.from(bytes), props);
    },
    async close() {
      await conn.close().catch(() => {});
    },
  };
}

/** Delete a test's exchanges (and with them their bindings). */
export async function deleteExchanges(ex: AmqpExchanges): Promise<void> {
  const peer = await rawPeer();
  try {
    for (const name of [ex.alert, ex.rpc, ex.reply, ex.dead]) {
      await peer.channel.deleteExchange(name);
    }
  } finally {
    await peer.close();
  }
}
