import assert from "node:assert/strict";
import {
  bindingsWith,
  closeConnectionsNamed,
  deleteExchanges,
  exchangesWith,
  queuesWith,
  RABBIT_URL,
  rabbitmqctl,
  rawPeer,
  uniqueExchanges,
} from "../../tests/_util/rabbit.ts";
import { Collector, quietPeriod, withTimeout } from "../testing/wait.ts";
import { AmqpBus, type AmqpBusOptions, redactUrl } from "./amqp_bus.ts";
import { busContract } from "./bus_contract.ts";
import {
  BusLimitError,
  type BusState,
  BusUnavailableError,
  RpcNoServerError,
  RpcRemoteError,
  RpcTimeoutError,
} from "./bus.ts";

busContract("AmqpBus", async (options) => {
  const exchanges = uniqueExchanges();
  const bus = await AmqpBus.open({ url: RABBIT_URL, exchanges, ...options });
  return { bus, cleanup: () => deleteExchanges(exchanges) };
});

/** Bound of a wait for what must happen: generous, it only catches a hang. */
const EVENT_MS = 30_000;

/** Run `fn` with buses on exchanges of its own; close everything and delete them after. */
async function withExchanges(
  fn: (
    open: (options?: AmqpBusOptions) => Promise<AmqpBus>,
    ex: ReturnType<typeof uniqueExchanges>,
  ) => Promise<void>,
): Promise<void> {
  const ex = uniqueExchanges();
  const buses: AmqpBus[] = [];
  try {
    await fn(async (options = {}) => {
      const bus = new AmqpBus({ url: RABBIT_URL, exchanges: ex, ...options });
      buses.push(bus);
      await bus.connect();
      return bus;
    }, ex);
  } finally {
    for (const bus of buses) await bus.close();
    await deleteExchanges(ex);
  }
}

/** A loopback port that nothing listens on. */
function closedPort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

Deno.test("redactUrl removes the password from an AMQP URL", () => {
  assert.equal(redactUrl("amqp://moat:s3cr:et@h:5672/v"), "amqp://moat@h:5672/v");
  assert.equal(redactUrl("amqps://h/v"), "amqps://h/v");
});

Deno.test("AmqpBus refuses a URL that is not AMQP without showing its password", () => {
  const e = (() => {
    try {
      new AmqpBus({ url: "http://u:s3cret@h" });
    } catch (e) {
      return e as Error;
    }
    assert.fail("no error");
  })();
  assert.ok(e instanceof RangeError);
  assert.ok(!e.message.includes("s3cret"), e.message);
});

Deno.test("AmqpBus connect() rejects at once with one clear line when nothing listens", async () => {
  const url = `amqp://guest:s3cret@127.0.0.1:${closedPort()}`;
  // A connect timeout far out of reach: the refusal itself must end the attempt.
  const bus = new AmqpBus({ url, connectTimeoutMs: 600_000 });
  try {
    const e = await withTimeout(bus.connect().then(() => undefined, (e) => e), 60_000, "connect");
    assert.ok(e instanceof BusUnavailableError, String(e));
    assert.match(e.message, /^AMQP broker at amqp:\/\/guest@127\.0\.0\.1:\d+ is not reachable: /);
    assert.ok(!e.message.includes("\n") && !e.message.includes("s3cret"), e.message);
    assert.ok(
      (await bus.call("x", 1).then(() => undefined, (e) => e)) instanceof BusUnavailableError,
    );
  } finally {
    await bus.close();
  }
});

Deno.test("AmqpBus connect() gives up after connectTimeoutMs on a broker that never answers", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const held: Deno.Conn[] = [];
  const accepting = (async () => {
    for await (const c of listener) held.push(c);
  })();
  const port = (listener.addr as Deno.NetAddr).port;
  const bus = new AmqpBus({ url: `amqp://guest:guest@127.0.0.1:${port}`, connectTimeoutMs: 500 });
  try {
    const started = performance.now();
    const e = await withTimeout(bus.connect().then(() => undefined, (e) => e), 60_000, "connect");
    const elapsed = performance.now() - started;
    assert.ok(e instanceof BusUnavailableError, String(e));
    // It waited for the timeout; how much longer is not a test's business.
    assert.ok(elapsed >= 450, `took ${elapsed} ms`);
    assert.ok(!e.message.includes("\n"));
  } finally {
    await bus.close();
    listener.close();
    await accepting.catch(() => {});
    for (const c of held) {
      try {
        c.close();
      } catch {
        // closed by the client already
      }
    }
  }
});

Deno.test("AmqpBus declares MoaT's exchanges and leaves no queue or binding behind", async () => {
  await withExchanges(async (open, ex) => {
    const bus = await open();
    assert.deepEqual(await exchangesWith(ex.prefix), [
      `${ex.alert} topic`,
      `${ex.dead} topic`,
      `${ex.reply} direct`,
      `${ex.rpc} topic`,
    ]);
    const server = await bus.serve("lamp.on", () => Promise.resolve(1));
    const sub = await bus.onAlert("lamp.#", () => {});
    assert.equal(await bus.call("lamp.on", null, { timeoutMs: EVENT_MS }), 1);
    assert.deepEqual(await queuesWith(ex.prefix), [
      `${ex.alert}_${bus.id}.2 1`,
      `${ex.reply}_${bus.id} 1`,
      `${ex.rpc}_lamp.on 1`,
    ]);
    assert.deepEqual(await bindingsWith(ex.prefix), [
      `${ex.alert} -> ${ex.alert}_${bus.id}.2 lamp.#`,
      `${ex.dead} -> ${ex.reply}_${bus.id} #`,
      `${ex.reply} -> ${ex.reply}_${bus.id} ${bus.id}`,
      `${ex.rpc} -> ${ex.rpc}_lamp.on lamp.on`,
    ]);
    await server.close();
    await sub.close();
    assert.deepEqual(await queuesWith(ex.prefix), [`${ex.reply}_${bus.id} 1`]);
    await bus.close();
    assert.deepEqual(await queuesWith(ex.prefix), []);
    assert.deepEqual(await bindingsWith(ex.prefix), []);
  });
});

Deno.test("AmqpBus shares one RPC name among servers on different connections", async () => {
  await withExchanges(async (open, ex) => {
    const [a, b, caller] = [await open(), await open(), await open()];
    const seen: string[] = [];
    const ra = await a.serve("work", () => Promise.resolve(seen.push("a")));
    await b.serve("work", () => Promise.resolve(seen.push("b")));
    for (let i = 0; i < 6; i++) await caller.call("work", i, { timeoutMs: EVENT_MS });
    assert.ok(seen.includes("a") && seen.includes("b"), seen.join(","));
    assert.deepEqual(await queuesWith(`${ex.rpc}_`), [`${ex.rpc}_work 2`]);
    await ra.close();
    assert.deepEqual(await queuesWith(`${ex.rpc}_`), [`${ex.rpc}_work 1`]);
  });
});

Deno.test("AmqpBus speaks the documented wire protocol with a raw AMQP peer", async () => {
  await withExchanges(async (open, ex) => {
    const bus = await open();
    const peer = await rawPeer();
    try {
      const ch = peer.channel;
      // A raw caller: reply queue bound to `reply` with its id.
      const { queue: replyQueue } = await ch.assertQueue("", { exclusive: true });
      await ch.bindQueue(replyQueue, ex.reply, "raw-caller");
      const replies = new Collector<{ props: Record<string, unknown>; body: string }>();
      await ch.consume(replyQueue, (m) => {
        if (m) replies.push({ props: m.properties as never, body: m.content.toString() });
      }, { noAck: true });
      await bus.serve("math.add", (args) => {
        const { a, b } = args as { a: number; b: number };
        return Promise.resolve(a + b);
      });
      await bus.serve("math.fail", () => Promise.reject(new RangeError("too big")));
      peer.publish(ex.rpc, "math.add", '{"a":2,"b":3}', {
        replyTo: "raw-caller",
        messageId: "m-1",
        contentType: "application/json",
      });
      peer.publish(ex.rpc, "math.fail", "{}", {
        replyTo: "raw-caller",
        messageId: "m-2",
        contentType: "application/json",
      });
      const got = await replies.count(2, EVENT_MS, "two replies");
      const byId = new Map(got.map((r) => [r.props.correlationId, r]));
      assert.equal(byId.get("m-1")!.body, "5");
      assert.equal(byId.get("m-1")!.props.contentType, "application/json");
      assert.equal((byId.get("m-1")!.props.headers as Record<string, unknown>)?.error, undefined);
      // qbroker's m_err shape, with an exc member its raise_if_error raises.
      assert.deepEqual((byId.get("m-2")!.props.headers as Record<string, unknown>).error, {
        _o: "m_err",
        s: "error",
        m: "too big",
        c: "RangeError",
        e: {
          _o: "exc",
          e: "builtins.ValueError",
          a0: "too big",
          s: "too big",
          r: 'ValueError("too big")',
        },
      });

      // A raw server answers the bus's call, once with a result, once with an error header.
      await ch.assertQueue(`${ex.rpc}_raw`, { autoDelete: true });
      await ch.bindQueue(`${ex.rpc}_raw`, ex.rpc, "raw.#");
      await ch.consume(`${ex.rpc}_raw`, (m) => {
        if (!m) return;
        const p = m.properties;
        const fail = m.fields.routingKey === "raw.fail";
        peer.publish(ex.reply, p.replyTo, fail ? "null" : `{"echo":${m.content.toString()}}`, {
          correlationId: p.messageId,
          contentType: "application/json",
          ...(fail ? { headers: { error: { s: "fail", m: "broken relay", c: "IOError" } } } : {}),
        });
      }, { noAck: true });
      assert.deepEqual(await bus.call("raw.echo", [1], { timeoutMs: EVENT_MS }), { echo: [1] });
      const e = await bus.call("raw.fail", 1, { timeoutMs: EVENT_MS }).catch((e) => e);
      assert.ok(e instanceof RpcRemoteError, String(e));
      assert.deepEqual(e.remote, { s: "fail", m: "broken relay", c: "IOError" });

      // Alerts both ways.
      const alerts = new Collector<string>();
      await bus.onAlert("sensor.*.temp", (t, d) => alerts.push(`${t} ${JSON.stringify(d)}`));
      peer.publish(ex.alert, "sensor.kitchen.temp", "21.5", { contentType: "application/json" });
      assert.deepEqual(await alerts.count(1, EVENT_MS, "the raw alert"), [
        "sensor.kitchen.temp 21.5",
      ]);
      const { queue: alertQueue } = await ch.assertQueue("", { exclusive: true });
      await ch.bindQueue(alertQueue, ex.alert, "door.#");
      const raw = new Collector<string>();
      await ch.consume(alertQueue, (m) => {
        if (m) raw.push(`${m.fields.routingKey} ${m.properties.contentType} ${m.content}`);
      }, { noAck: true });
      await bus.alert("door.front", { open: true });
      assert.deepEqual(await raw.count(1, EVENT_MS, "the bus's alert"), [
        'door.front application/json {"open":true}',
      ]);
    } finally {
      await peer.close();
    }
  });
});

Deno.test("AmqpBus survives malformed messages and answers the next good call", async () => {
  const logged: string[] = [];
  await withExchanges(async (open, ex) => {
    const bus = await open({
      maxMessageBytes: 1000,
      log: (_level, message) => logged.push(message),
    });
    const peer = await rawPeer();
    try {
      const ch = peer.channel;
      const { queue } = await ch.assertQueue("", { exclusive: true });
      await ch.bindQueue(queue, ex.reply, "raw");
      const replies = new Collector<{ id: unknown; error: unknown }>();
      await ch.consume(queue, (m) => {
        if (m) {
          replies.push({
            id: m.properties.correlationId,
            error: (m.properties.headers as Record<string, unknown> | undefined)?.error,
          });
        }
      }, { noAck: true });
      let handled = 0;
      await bus.serve("svc", (args) => Promise.resolve({ handled: ++handled, args }));
      const alerts = new Collector<unknown>();
      await bus.onAlert("news", (_t, d) => alerts.push(d));
      const req = (id: string, body: string, props: Record<string, unknown> = {}) =>
        peer.publish(ex.rpc, "svc", body, {
          replyTo: "raw",
          messageId: id,
          contentType: "application/json",
          ...props,
        });

      req("bad-json", "{nope");
      req("bad-type", "<x/>", { contentType: "application/xml" });
      req("bad-utf8", new Uint8Array([0xff, 0xfe]) as never);
      req("too-big", JSON.stringify("x".repeat(2000)));
      peer.publish(ex.rpc, "svc", "{}", {
        messageId: "no-reply-to",
        contentType: "application/json",
      });
      peer.publish(ex.rpc, "svc", "{}", { replyTo: "raw", contentType: "application/json" });
      peer.publish(ex.reply, bus.id, "42", { correlationId: "who-knows" });
      peer.publish(ex.reply, bus.id, "{", {});
      peer.publish(ex.alert, "news", "{broken", { contentType: "application/json" });
      peer.publish(ex.alert, "news", "1", { contentType: "image/png" });
      peer.publish(ex.alert, "news", JSON.stringify("y".repeat(2000)), {});
      peer.publish(ex.alert, "news", '"fine"', { contentType: "application/json" });

      const got = await replies.count(4, EVENT_MS, "four error replies");
      const byId = new Map(got.map((r) => [r.id, r.error as Record<string, unknown>]));
      assert.equal(byId.get("bad-json")?.c, "SyntaxError");
      assert.equal(byId.get("bad-type")?.c, "TypeError");
      assert.match(String(byId.get("bad-type")?.m), /unsupported content type "application\/xml"/);
      assert.equal(byId.get("bad-utf8")?.c, "SyntaxError");
      assert.equal(byId.get("too-big")?.c, "RangeError");
      assert.match(String(byId.get("too-big")?.m), /is 2002 bytes, over the limit of 1000 bytes/);
      assert.deepEqual(await alerts.count(1, EVENT_MS, "the good alert"), ["fine"]);
      assert.equal(handled, 0);
      assert.deepEqual(await bus.call("svc", "good", { timeoutMs: EVENT_MS }), {
        handled: 1,
        args: "good",
      });
      await quietPeriod(100);
      assert.equal(replies.items.length, 4, "no reply to requests without reply_to or message_id");
      assert.equal(alerts.items.length, 1);
      assert.ok(logged.some((m) => m.includes("without reply_to")), logged.join("\n"));
      assert.ok(logged.some((m) => m.includes("without message_id")), logged.join("\n"));
      assert.ok(logged.some((m) => m.includes("unknown correlation id")), logged.join("\n"));

      // Broken replies to a real call fail that call with a clear error.
      await ch.assertQueue(`${ex.rpc}_liar`, { autoDelete: true });
      await ch.bindQueue(`${ex.rpc}_liar`, ex.rpc, "liar.*");
      await ch.consume(`${ex.rpc}_liar`, (m) => {
        if (!m) return;
        const body = m.fields.routingKey === "liar.big" ? JSON.stringify("z".repeat(5000)) : "{";
        peer.publish(ex.reply, m.properties.replyTo, body, {
          correlationId: m.properties.messageId,
          contentType: "application/json",
        });
      }, { noAck: true });
      // The reason is in the caller's error: a script's moat.call sees it too.
      const e1 = await bus.call("liar.json", 1, { timeoutMs: EVENT_MS }).catch((e) => e);
      assert.ok(e1 instanceof RpcRemoteError, String(e1));
      assert.equal(e1.remote.c, "SyntaxError");
      assert.match(e1.message, /^liar.json failed: the reply from "liar.json" is not valid JSON/);
      const e2 = await bus.call("liar.big", 1, { timeoutMs: EVENT_MS }).catch((e) => e);
      assert.ok(e2 instanceof RpcRemoteError, String(e2));
      assert.equal(
        e2.message,
        'liar.big failed: the reply from "liar.big" is 5002 bytes, over the limit of 1000 bytes (RangeError)',
      );
      assert.deepEqual(await bus.call("svc", 2, { timeoutMs: EVENT_MS }), { handled: 2, args: 2 });
    } finally {
      await peer.close();
    }
  });
});

Deno.test("AmqpBus reconnects after the broker drops its connection and restores registrations", async () => {
  await withExchanges(async (open) => {
    const name = `moat-test-${crypto.randomUUID().slice(0, 8)}`;
    const logged: string[] = [];
    const victim = await open({ connectionName: name, log: (_l, m) => logged.push(m) });
    const other = await open();
    const states = new Collector<BusState>();
    victim.onState(states.push);
    let failFast: Promise<unknown> | undefined;
    victim.onState((s) => {
      // A call made while disconnected fails at once instead of waiting.
      if (s === "disconnected") {
        failFast = victim.call("other.echo", 1, { timeoutMs: EVENT_MS }).then(() => 0, (e) => e);
      }
    });

    await victim.serve("victim.echo", (args) => Promise.resolve(args));
    const alerts = new Collector<unknown>();
    await victim.onAlert("to.victim", (_t, d) => alerts.push(d));
    const started = Promise.withResolvers<void>();
    await other.serve("other.slow", () => {
      started.resolve();
      return new Promise(() => {});
    });
    const inFlight = victim.call("other.slow", null, { timeoutMs: 600_000 });
    inFlight.catch(() => {});
    await withTimeout(started.promise, EVENT_MS, "the slow handler to start");

    assert.equal(await closeConnectionsNamed(name), 1);
    const e = await withTimeout(inFlight.then(() => undefined, (e) => e), EVENT_MS, "in flight");
    assert.ok(e instanceof BusUnavailableError, String(e));
    assert.equal(
      e.message,
      'call to "other.slow" failed: lost the connection to the AMQP broker at amqp://guest@127.0.0.1:5672',
    );
    // "At once": long before its own timeout (EVENT_MS), which would say "no reply".
    const fast = await withTimeout(failFast!, EVENT_MS, "the call made while disconnected");
    assert.ok(fast instanceof BusUnavailableError, String(fast));
    assert.match(fast.message, /not connected to the AMQP broker .*\(reconnecting\)/);

    await states.until((s) => s.includes("connected"), 60_000, "the reconnect");
    assert.deepEqual(states.items, ["disconnected", "connected"]);
    assert.equal(await other.call("victim.echo", "again", { timeoutMs: EVENT_MS }), "again");
    await other.alert("to.victim", "hello");
    assert.deepEqual(await alerts.count(1, EVENT_MS, "an alert after the reconnect"), ["hello"]);
    assert.ok(logged.some((m) => m.startsWith("reconnected")), logged.join("\n"));
  });
});

Deno.test("AmqpBus brings registrations made while disconnected alive after the reconnect", async () => {
  await withExchanges(async (open) => {
    const name = `moat-test-${crypto.randomUUID().slice(0, 8)}`;
    const victim = await open({ connectionName: name, reconnectMinMs: 300 });
    const other = await open();
    const states = new Collector<BusState>();
    victim.onState(states.push);
    assert.equal(await closeConnectionsNamed(name), 1);
    await states.count(1, EVENT_MS, "the disconnect");
    // Registered while disconnected: recorded now, live after the reconnect.
    const reg = await victim.serve("late", () => Promise.resolve("late but here"));
    await states.count(2, 60_000, "the reconnect");
    assert.equal(await other.call("late", null, { timeoutMs: EVENT_MS }), "late but here");
    await reg.close();
  });
});

/** Queues whose name starts with `prefix`: name → { arguments, ready messages }. */
async function queueInfo(
  prefix: string,
): Promise<Map<string, { args: Record<string, unknown>; ready: number }>> {
  const rows = JSON.parse(
    await rabbitmqctl("list_queues", "name", "arguments", "messages_ready", "--formatter", "json"),
  ) as { name: string; arguments: [string, string, unknown][]; messages_ready: number }[];
  return new Map(
    rows.filter((r) => r.name.startsWith(prefix)).map((r) => [
      r.name,
      {
        args: Object.fromEntries(r.arguments.map(([k, , v]) => [k, v])),
        ready: r.messages_ready,
      },
    ]),
  );
}

/** Channels the broker sees on the connections named `name`. */
async function channelsOf(name: string): Promise<number> {
  const conns = (await rabbitmqctl("list_connections", "pid", "client_properties"))
    .split("\n").filter((l) => l.includes(`{"connection_name","${name}"}`))
    .map((l) => l.split("\t")[0]!);
  const rows = JSON.parse(
    await rabbitmqctl("list_channels", "connection", "--formatter", "json"),
  ) as { connection: string }[];
  return rows.filter((r) => conns.includes(r.connection)).length;
}

/** Poll `check` every 100 ms until it holds, at most `ms`. */
async function eventually(check: () => Promise<boolean>, ms: number, what: string): Promise<void> {
  const until = performance.now() + ms;
  while (!(await check())) {
    if (performance.now() > until) throw new Error(`Timed out after ${ms} ms waiting for ${what}`);
    await quietPeriod(100);
  }
}

Deno.test("AmqpBus declares every queue with a message TTL, length and byte limits and drop-head", async () => {
  await withExchanges(async (open, ex) => {
    const bus = await open({ queueTtlMs: 7_000, queueLength: 42, queueBytes: 4096 });
    await bus.serve("bounded", () => Promise.resolve(1));
    await bus.group().onAlert("bounded.#", () => {});
    const info = await queueInfo(ex.prefix);
    assert.deepEqual([...info.keys()].sort(), [
      `${ex.alert}_${bus.id}.2`,
      `${ex.reply}_${bus.id}`,
      `${ex.rpc}_bounded`,
    ]);
    for (const [name, { args }] of info) {
      assert.equal(args["x-message-ttl"], 7_000, name);
      assert.equal(args["x-max-length"], 42, name);
      assert.equal(args["x-overflow"], "drop-head", name);
      assert.equal(args["x-max-length-bytes"], 4096, name);
    }
    assert.equal(info.get(`${ex.rpc}_bounded`)!.args["x-dead-letter-exchange"], ex.dead);
    // A shared RPC queue nobody consumes from goes (auto-delete alone keeps
    // one that never had a consumer).
    assert.equal(info.get(`${ex.rpc}_bounded`)!.args["x-expires"], 10_000);
  });
});

Deno.test("AmqpBus declares RPC queues with qbroker's arguments by default, so a qbroker peer may declare after it", async () => {
  const logged: string[] = [];
  await withExchanges(async (open, ex) => {
    const bus = await open({ log: (_l, m) => logged.push(m) });
    await bus.serve("shared.name", () => Promise.resolve("ours"));
    const info = await queueInfo(`${ex.rpc}_shared.name`);
    assert.deepEqual(info.get(`${ex.rpc}_shared.name`)!.args, {
      "x-dead-letter-exchange": ex.dead,
      "x-message-ttl": 10_000,
    });
    const peer = await rawPeer();
    try {
      // What qbroker's register() declares: no 406, the queue is shared.
      await peer.channel.assertQueue(`${ex.rpc}_shared.name`, {
        durable: false,
        autoDelete: true,
        arguments: { "x-dead-letter-exchange": ex.dead, "x-message-ttl": 10_000 },
      });
      await peer.channel.assertExchange(ex.rpc, "topic", {
        durable: true,
        alternateExchange: ex.dead,
      });
    } finally {
      await peer.close();
    }
    assert.equal(await bus.call("shared.name", null, { timeoutMs: EVENT_MS }), "ours");
    assert.ok(!logged.some((m) => m.includes("other")), logged.join("\n"));
  });
});

Deno.test("AmqpBus fails a call with no_server when its request expires in a queue nobody consumes", async () => {
  await withExchanges(async (open, ex) => {
    const bus = await open();
    const peer = await rawPeer();
    try {
      // A qbroker server's queue, left without a consumer: the request waits
      // for its TTL (10 s), is dead-lettered to `dead`, and comes back.
      await peer.channel.assertQueue(`${ex.rpc}_idle`, {
        durable: false,
        autoDelete: true,
        arguments: { "x-dead-letter-exchange": ex.dead, "x-message-ttl": 10_000 },
      });
      await peer.channel.bindQueue(`${ex.rpc}_idle`, ex.rpc, "idle");
      const e = await bus.call("idle", 1, { timeoutMs: 6 * EVENT_MS }).catch((e) => e);
      assert.ok(e instanceof RpcNoServerError, String(e));
      assert.equal(
        e.message,
        'idle failed: no server of "idle" took the request before it expired in its queue (no_server)',
      );
      await peer.channel.deleteQueue(`${ex.rpc}_idle`);
    } finally {
      await peer.close();
    }
  });
});

Deno.test("AmqpBus shares an RPC queue declared with other arguments, and says so once", async () => {
  const logged: string[] = [];
  await withExchanges(async (open, ex) => {
    const peer = await rawPeer();
    try {
      await peer.channel.assertQueue(`${ex.rpc}_foreign`, {
        autoDelete: true,
        arguments: { "x-message-ttl": 1234 },
      });
      const bus = await open({ log: (_l, m) => logged.push(m) });
      const a = await bus.serve("foreign", () => Promise.resolve("a"));
      await bus.group().serve("foreign", () => Promise.resolve("a"));
      assert.equal(await bus.call("foreign", null, { timeoutMs: EVENT_MS }), "a");
      assert.equal(logged.filter((m) => m.includes("exists with other arguments")).length, 1);
      assert.equal(
        (await queueInfo(`${ex.rpc}_foreign`)).get(`${ex.rpc}_foreign`)!.args[
          "x-message-ttl"
        ],
        1234,
      );
      await a.close();
    } finally {
      await peer.close();
    }
  });
});

Deno.test("AmqpBus lets requests expire with their caller's timeout and bounds the queue", async () => {
  await withExchanges(async (open, ex) => {
    const server = await open({ queueLength: 5, handlerTimeoutMs: 30_000 });
    const caller = await open();
    const started = Promise.withResolvers<void>();
    let handled = 0;
    await server.serve("stuck", () => {
      handled++;
      started.resolve();
      return new Promise(() => {});
    }, { maxInFlight: 1 });
    const first = caller.call("stuck", 0, { timeoutMs: 400 }).catch((e) => e);
    await withTimeout(started.promise, EVENT_MS, "the first request to start");
    const calls = Array.from(
      { length: 30 },
      (_, i) => caller.call("stuck", i + 1, { timeoutMs: 400 }).catch((e) => e),
    );
    const queue = `${ex.rpc}_stuck`;
    // Never more than queue_length wait; once the callers gave up, none.
    assert.ok((await queueInfo(queue)).get(queue)!.ready <= 5);
    for (const e of [await first, ...await Promise.all(calls)]) {
      assert.ok(e instanceof RpcTimeoutError, String(e));
    }
    await eventually(
      async () => (await queueInfo(queue)).get(queue)?.ready === 0,
      EVENT_MS,
      "the expired requests to leave the queue",
    );
    assert.equal(handled, 1);
  });
});

Deno.test("AmqpBus drops a request whose deadline passed without running the handler", async () => {
  await withExchanges(async (open, ex) => {
    const bus = await open();
    let handled = 0;
    await bus.serve("late", () => Promise.resolve(++handled));
    const peer = await rawPeer();
    try {
      const { queue } = await peer.channel.assertQueue("", { exclusive: true });
      await peer.channel.bindQueue(queue, ex.reply, "raw");
      const replies = new Collector<unknown>();
      await peer.channel.consume(queue, (m) => m && replies.push(m.properties.correlationId), {
        noAck: true,
      });
      peer.publish(ex.rpc, "late", "1", {
        replyTo: "raw",
        messageId: "too-late",
        contentType: "application/json",
        headers: { deadline: Date.now() - 1_000 },
      });
      peer.publish(ex.rpc, "late", "1", {
        replyTo: "raw",
        messageId: "in-time",
        contentType: "application/json",
        headers: { deadline: Date.now() + 60_000 },
      });
      assert.deepEqual(await replies.count(1, EVENT_MS, "the reply in time"), ["in-time"]);
      await quietPeriod(200);
      assert.deepEqual(replies.items, ["in-time"]);
      assert.equal(handled, 1);
    } finally {
      await peer.close();
    }
  });
});

Deno.test("AmqpBus caps the channels it opens and refuses registrations beyond, working on", async () => {
  await withExchanges(async (open) => {
    const name = `moat-test-${crypto.randomUUID().slice(0, 8)}`;
    const states = new Collector<BusState>();
    const bus = await open({ connectionName: name, maxChannels: 6 });
    bus.onState(states.push);
    // 2 own channels + 4: a group of 3 (many registrations) and one of its own.
    const group = bus.group({ channels: 3 });
    for (let i = 0; i < 10; i++) await group.serve(`cap.g${i}`, () => Promise.resolve(i));
    await bus.serve("cap.solo", () => Promise.resolve("solo"));
    const e = await bus.serve("cap.more", () => Promise.resolve()).catch((e) => e);
    assert.ok(e instanceof BusLimitError, String(e));
    assert.match(e.message, /^cannot serve "cap\.more": the bus has 6 AMQP channels open/);
    const e2 = await bus.group().onAlert("cap.#", () => {}).catch((e) => e);
    assert.ok(e2 instanceof BusLimitError, String(e2));
    // A group that has channels shares them even when the bus is full.
    await group.onAlert("cap.news", () => {});
    assert.ok(await channelsOf(name) <= 6);
    for (let i = 0; i < 10; i++) {
      assert.equal(await bus.call(`cap.g${i}`, null, { timeoutMs: EVENT_MS }), i);
    }
    assert.equal(await bus.call("cap.solo", null, { timeoutMs: EVENT_MS }), "solo");
    // Closing gives the channels back.
    await group.close();
    await bus.serve("cap.more", () => Promise.resolve("more"));
    assert.equal(await bus.call("cap.more", null, { timeoutMs: EVENT_MS }), "more");
    assert.deepEqual(states.items, []);
  });
});

Deno.test("AmqpBus stays connected and answers once whatever error a handler throws", async () => {
  await withExchanges(async (open) => {
    const logged: string[] = [];
    const bus = await open({ log: (_l, m) => logged.push(m) });
    const states = new Collector<BusState>();
    bus.onState(states.push);
    const errors = [
      Object.assign(new Error("é".repeat(40_000)), { name: "C".repeat(3_000) }),
      new Error("x".repeat(1024 * 1024)),
      Object.assign(new Error("m"), { name: "é".repeat(70_000) }),
    ];
    await bus.serve("hostile.err", (i) => Promise.reject(errors[i as number]));
    await bus.serve("hostile.big", () => Promise.resolve("y".repeat(2 * 1024 * 1024)));
    for (let i = 0; i < errors.length; i++) {
      const e = await bus.call("hostile.err", i, { timeoutMs: EVENT_MS }).catch((e) => e);
      assert.ok(e instanceof RpcRemoteError, String(e).slice(0, 200));
      assert.ok(new TextEncoder().encode(e.remote.m).length <= 4096);
      assert.equal(e.remote.c, "Error");
    }
    const big = await bus.call("hostile.big", null, { timeoutMs: EVENT_MS }).catch((e) => e);
    assert.ok(big instanceof RpcRemoteError, String(big).slice(0, 200));
    assert.match(big.remote.m, /^the reply from "hostile\.big" is 2097154 bytes, over the limit/);
    assert.deepEqual(states.items, []);
    assert.ok(logged.every((m) => !m.includes("\n")), logged.join("\n"));
  });
});
