/**
 * Benchmark of `AmqpBus` against raw amqplib on the same broker, in the
 * same run:
 *
 * - RPC: one sequential `AmqpBus.call` round trip (caller and server on
 *   two connections) against a raw request/reply round trip with the same
 *   topology (topic exchange → queue → server → direct exchange → reply
 *   queue), median µs;
 * - no_server: how long a call nobody serves takes to fail (through the
 *   `dead` alternate exchange; the issue wants it under 1 s), median ms;
 * - alerts: `AmqpBus.alert` → handler delivery rate against raw publish →
 *   consume on a topic exchange, msgs/s, and how many alerts of a burst the
 *   size of the queue bound were lost (target 0); then how many of a burst
 *   of twice the bound were dropped (no target: the bound at work).
 *
 * Needs RabbitMQ on 127.0.0.1:5672 (guest/guest); uses exchanges of its own
 * and deletes them after. Run standalone: `deno run --allow-all bench/bus_bench.ts`
 *
 * @module
 */

import { Buffer } from "node:buffer";
// @ts-types="@types/amqplib"
import amqp from "amqplib";
import { type Figure, median, printFigures } from "./figure.ts";
import { AmqpBus } from "../host/bus/amqp_bus.ts";
import { RpcNoServerError, topicMatches } from "../host/bus/bus.ts";

const URL = Deno.env.get("MOAT_AMQP") ?? "amqp://guest:guest@127.0.0.1:5672";
const ROUND_TRIPS = 1_000;
const WARM_UP = 100;
/**
 * A burst of alerts as large as a subscription's queue holds by default
 * (`queue_length`, 10 000): none of it may be lost, however fast the
 * sender is beside the handler.
 */
const ALERTS = 10_000;
/**
 * A burst of twice that: past the bound the broker drops the oldest
 * (docs/security.md), so how many are lost depends on how far the sender
 * outruns the handler on this machine. Reported, no target.
 */
const OVER_BOUND = 2 * ALERTS;
const NO_SERVER_CALLS = 50;
/** The longest any one phase may take before the benchmark fails. */
const PHASE_MS = 60_000;

function deadline<T>(p: Promise<T>, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`bench: ${what} took over ${PHASE_MS} ms`)),
        PHASE_MS,
      );
    }),
  ]).finally(() => clearTimeout(timer));
}

/**
 * Median µs per round trip of `raw` and of `bus`, run in alternating blocks
 * so that load from elsewhere on the machine hits both alike.
 */
async function roundTrips(
  raw: () => Promise<void>,
  bus: () => Promise<void>,
): Promise<[number, number]> {
  for (let i = 0; i < WARM_UP; i++) {
    await raw();
    await bus();
  }
  const us: [number[], number[]] = [[], []];
  const block = 50;
  for (let b = 0; b < ROUND_TRIPS / block; b++) {
    for (const [k, once] of [raw, bus].entries()) {
      for (let i = 0; i < block; i++) {
        const t0 = performance.now();
        await once();
        us[k]!.push((performance.now() - t0) * 1000);
      }
    }
  }
  return [median(us[0]), median(us[1])];
}

/** A raw connection; `noDelay` (no Nagle) is the raw primitive at its best for round trips. */
async function open(noDelay = false): Promise<{ conn: amqp.ChannelModel; ch: amqp.Channel }> {
  const conn = await amqp.connect(URL, { noDelay });
  const ch = await conn.createChannel();
  return { conn, ch };
}

/** Raw request/reply, the primitive `AmqpBus.call` stands on: one round trip per `once()`. */
async function rawRpc(
  prefix: string,
): Promise<{ once: () => Promise<void>; close: () => Promise<void> }> {
  const server = await open(true);
  const client = await open(true);
  const rpc = `${prefix}-raw-rpc`;
  const reply = `${prefix}-raw-reply`;
  await server.ch.assertExchange(rpc, "topic", { durable: false, autoDelete: true });
  await client.ch.assertExchange(reply, "direct", { durable: false, autoDelete: true });
  const { queue } = await server.ch.assertQueue("", { exclusive: true });
  await server.ch.bindQueue(queue, rpc, "bench.echo");
  await server.ch.consume(queue, (m) => {
    if (!m) return;
    server.ch.publish(reply, m.properties.replyTo, m.content, {
      correlationId: m.properties.messageId,
      contentType: "application/json",
    });
  }, { noAck: true });
  const { queue: replyQueue } = await client.ch.assertQueue("", { exclusive: true });
  await client.ch.bindQueue(replyQueue, reply, "me");
  let waiting: { id: string; resolve: () => void } | undefined;
  await client.ch.consume(replyQueue, (m) => {
    if (m && waiting && m.properties.correlationId === waiting.id) waiting.resolve();
  }, { noAck: true });
  let i = 0;
  return {
    async once() {
      const { promise, resolve } = Promise.withResolvers<void>();
      const id = crypto.randomUUID();
      waiting = { id, resolve };
      client.ch.publish(rpc, "bench.echo", Buffer.from(JSON.stringify({ i: i++ })), {
        replyTo: "me",
        messageId: id,
        contentType: "application/json",
      });
      await promise;
    },
    async close() {
      await client.conn.close();
      await server.conn.close();
    },
  };
}

/** Raw publish → consume rate on a topic exchange, msgs/s. */
async function rawRate(prefix: string): Promise<number> {
  const pub = await open();
  const sub = await open();
  try {
    const ex = `${prefix}-raw-alert`;
    await pub.ch.assertExchange(ex, "topic", { durable: false, autoDelete: true });
    const { queue } = await sub.ch.assertQueue("", { exclusive: true });
    await sub.ch.bindQueue(queue, ex, "bench.#");
    let got = 0;
    const all = Promise.withResolvers<void>();
    await sub.ch.consume(queue, (m) => {
      if (m && ++got === ALERTS) all.resolve();
    }, { noAck: true });
    const t0 = performance.now();
    for (let i = 0; i < ALERTS; i++) {
      const ok = pub.ch.publish(ex, "bench.x", Buffer.from(JSON.stringify({ i })), {
        contentType: "application/json",
      });
      if (!ok) await new Promise((resolve) => pub.ch.once("drain", resolve));
    }
    await deadline(all.promise, "raw alerts");
    return ALERTS / ((performance.now() - t0) / 1000);
  } finally {
    await sub.conn.close();
    await pub.conn.close();
  }
}

/**
 * Measure `AmqpBus` against raw amqplib: call round trip (median µs, target
 * ratio ≤ 2) and alert delivery rate (msgs/s, target ratio ≥ 0.5), plus the
 * number of alerts lost (target 0).
 *
 * @example
 * ```ts ignore
 * import { benchBus } from "./bus_bench.ts";
 * for (const f of await benchBus()) console.log(f.name, f.value, f.unit);
 * ```
 */
export async function benchBus(): Promise<Figure[]> {
  const prefix = `bench-${crypto.randomUUID().slice(0, 8)}`;
  const exchanges = {
    alert: `${prefix}-alert`,
    rpc: `${prefix}-rpc`,
    reply: `${prefix}-reply`,
    dead: `${prefix}-dead`,
  };
  const server = await AmqpBus.open({ url: URL, exchanges });
  const client = await AmqpBus.open({ url: URL, exchanges });
  const raw = await rawRpc(prefix);
  let rawUs: number;
  let busUs: number;
  let rawPerS = 0;
  let busPerS = 0;
  let received = 0;
  let lost = ALERTS;
  let droppedOverBound = OVER_BOUND;
  const noServerMs: number[] = [];
  try {
    await server.serve("bench.echo", (args) => Promise.resolve(args));
    let i = 0;
    [rawUs, busUs] = await deadline(
      roundTrips(raw.once, async () => {
        await client.call("bench.echo", { i: i++ });
      }),
      "round trips",
    );

    // A call nobody serves fails through the `dead` alternate exchange, not by its timeout.
    for (let k = 0; k < NO_SERVER_CALLS; k++) {
      const t0 = performance.now();
      const e = await client.call("bench.nobody", k, { timeoutMs: PHASE_MS }).catch((e) => e);
      if (!(e instanceof RpcNoServerError)) throw new Error(`bench: no no_server but ${e}`);
      noServerMs.push(performance.now() - t0);
    }

    let all = Promise.withResolvers<void>();
    await server.onAlert("bench.#", () => {
      if (++received === ALERTS) all.resolve();
    });
    // Best of two alternating runs each, for the same reason.
    for (let round = 0; round < 2; round++) {
      rawPerS = Math.max(rawPerS, await rawRate(prefix));
      received = 0;
      all = Promise.withResolvers<void>();
      const t0 = performance.now();
      for (let i = 0; i < ALERTS; i++) await client.alert("bench.x", { i });
      await deadline(all.promise, "bus alerts").catch(() => {});
      busPerS = Math.max(busPerS, received / ((performance.now() - t0) / 1000));
      if (received < ALERTS) break;
    }
    lost = ALERTS - received;

    // Twice the bound: count what arrives until nothing more has for 1 s.
    received = 0;
    for (let i = 0; i < OVER_BOUND; i++) await client.alert("bench.x", { i });
    const end = performance.now() + PHASE_MS;
    for (let last = -1, quietSince = performance.now(); performance.now() < end;) {
      if (received === OVER_BOUND) break;
      if (received !== last) [last, quietSince] = [received, performance.now()];
      else if (performance.now() - quietSince > 1000) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    droppedOverBound = OVER_BOUND - received;
  } finally {
    await raw.close();
    await client.close();
    await server.close();
    const cleanup = await open();
    for (const name of Object.values(exchanges)) await cleanup.ch.deleteExchange(name);
    await cleanup.conn.close();
  }
  // A pattern of many `#` against a long topic that it does not match: the
  // matcher must not backtrack (a bound that used to sit in local_bus_test.ts).
  const pattern = Array.from({ length: 40 }, () => "#").join(".") + ".z";
  const topic = Array.from({ length: 60 }, () => "a").join(".");
  const matchMs: number[] = [];
  for (let i = 0; i < 20; i++) {
    const t0 = performance.now();
    if (topicMatches(pattern, topic)) throw new Error("the pattern matched");
    matchMs.push(performance.now() - t0);
  }
  return [
    {
      name: "bus.topic_match_40_hashes",
      value: median(matchMs),
      unit: "ms",
      rawName: "",
      raw: NaN,
      target: "< 100 ms",
    },
    {
      name: "bus.call.median",
      value: busUs,
      unit: "µs",
      rawName: "amqplib request/reply",
      raw: rawUs,
      target: "ratio <= 2",
    },
    {
      name: "bus.call.no_server",
      value: median(noServerMs),
      unit: "ms",
      rawName: "",
      raw: NaN,
      target: "< 1000 ms",
    },
    {
      name: "bus.alert.rate",
      value: busPerS,
      unit: "/s",
      rawName: "amqplib publish→consume",
      raw: rawPerS,
      target: "ratio >= 0.5",
    },
    {
      name: "bus.alert.lost",
      value: lost,
      unit: "msgs",
      rawName: "",
      raw: NaN,
      target: "== 0",
    },
    {
      name: "bus.alert.dropped_at_2x_bound",
      value: droppedOverBound,
      unit: "msgs",
      rawName: "",
      raw: NaN,
    },
  ];
}

if (import.meta.main) printFigures(await benchBus());
