/**
 * The one contract every `Bus` passes. A backend's test file calls
 * `busContract` with a factory; each case opens a fresh bus (for AMQP: on
 * exchanges of its own) and closes it, and cleans up behind it, in `finally`.
 *
 * Every wait is bounded; `quietPeriod` only proves that something does *not*
 * arrive.
 *
 * @module
 */

import assert from "node:assert/strict";
import { Collector, quietPeriod, withTimeout } from "../testing/wait.ts";
import {
  type Bus,
  BusUnavailableError,
  RpcNoServerError,
  RpcRemoteError,
  RpcTimeoutError,
} from "./bus.ts";

/** Settings a case asks its fresh bus for. */
export interface ContractBusOptions {
  maxMessageBytes?: number;
  handlerTimeoutMs?: number;
  maxInFlight?: number;
}

/** A bus under test, as opened for one contract case. */
export interface ContractSubject {
  /** A fresh, connected bus that sees no traffic but its own. */
  bus: Bus;
  /** Called after `bus.close()`, e.g. to delete the case's exchanges. */
  cleanup(): Promise<void>;
}

/** Options of `busContract`. */
export interface BusContractOptions {
  /**
   * Whether Deno's op and resource sanitizers run.
   * @default true
   */
  sanitize?: boolean;
}

/** How long any single awaited event may take before the case fails. */
/** Bound of a wait for what must happen: generous, it only catches a hang. */
const EVENT_MS = 30_000;
/** A call timeout short enough for tests, long enough for a loaded machine. */
const SHORT_MS = 200;

type Case = (open: (options?: ContractBusOptions) => Promise<Bus>) => Promise<void>;

/** The rejection of `promise`, or a failure if it resolves. */
/** A call nobody answered: no server (at once), or no reply within its timeout. */
function unanswered(e: Error): boolean {
  return e instanceof RpcNoServerError || e instanceof RpcTimeoutError;
}

async function rejection(promise: Promise<unknown>, what: string): Promise<Error> {
  const outcome = await withTimeout(
    promise.then((v) => ({ ok: true as const, v }), (e: unknown) => ({ ok: false as const, e })),
    EVENT_MS,
    what,
  );
  if (outcome.ok) assert.fail(`${what}: resolved with ${JSON.stringify(outcome.v)}`);
  assert.ok(outcome.e instanceof Error, `${what}: rejected with a non-Error ${String(outcome.e)}`);
  return outcome.e;
}

/**
 * Register the `Bus` contract as `Deno.test` cases named
 * `"<name> <sentence>"`; `open` gives each case a fresh bus.
 */
export function busContract(
  name: string,
  open: (options: ContractBusOptions) => Promise<ContractSubject>,
  options: BusContractOptions = {},
): void {
  const sanitize = options.sanitize ?? true;
  const test = (sentence: string, body: Case): void => {
    Deno.test({
      name: `${name} ${sentence}`,
      sanitizeOps: sanitize,
      sanitizeResources: sanitize,
      async fn() {
        const subjects: ContractSubject[] = [];
        try {
          await body(async (o = {}) => {
            const s = await open(o);
            subjects.push(s);
            return s.bus;
          });
        } finally {
          for (const s of subjects) {
            await s.bus.close();
            await s.cleanup();
          }
        }
      },
    });
  };

  test("answers a call with the handler's result", async (open) => {
    const bus = await open();
    assert.equal(bus.connected, true);
    const seen: unknown[] = [];
    const reg = await bus.serve("lamp.set", (args, info) => {
      seen.push([args, info.name]);
      return Promise.resolve({ ok: true, echo: args });
    });
    const args = { level: 42, name: "Küche 🔆", list: [1, null, "x"] };
    assert.deepEqual(await bus.call("lamp.set", args, { timeoutMs: EVENT_MS }), {
      ok: true,
      echo: args,
    });
    assert.deepEqual(seen, [[args, "lamp.set"]]);
    await reg.close();
    await reg.close();
  });

  test("sends undefined as null and plain values as they are", async (open) => {
    const bus = await open();
    await bus.serve("echo", (args) => Promise.resolve(args));
    await bus.serve("nothing", () => Promise.resolve(undefined));
    for (const v of [null, 0, "text", true, [1, 2], { a: { b: [] } }]) {
      assert.deepEqual(await bus.call("echo", v, { timeoutMs: EVENT_MS }), v);
    }
    assert.equal(await bus.call("echo", undefined, { timeoutMs: EVENT_MS }), null);
    assert.equal(await bus.call("nothing", 1, { timeoutMs: EVENT_MS }), null);
  });

  test("matches many concurrent calls to their own replies", async (open) => {
    const bus = await open();
    await bus.serve("square", async (args) => {
      const n = args as number;
      await new Promise((resolve) => setTimeout(resolve, n % 3));
      return n * n;
    });
    const ns = Array.from({ length: 50 }, (_, i) => i);
    const results = await withTimeout(
      Promise.all(ns.map((n) => bus.call("square", n, { timeoutMs: EVENT_MS }))),
      EVENT_MS,
      "50 concurrent calls",
    );
    assert.deepEqual(results, ns.map((n) => n * n));
  });

  test("shares the calls to one name among all its servers", async (open) => {
    const bus = await open();
    const counts = [0, 0];
    for (const i of [0, 1]) {
      await bus.serve("work", () => {
        counts[i]!++;
        return Promise.resolve(i);
      });
    }
    for (let k = 0; k < 10; k++) await bus.call("work", k, { timeoutMs: EVENT_MS });
    assert.equal(counts[0]! + counts[1]!, 10);
    assert.ok(counts[0]! >= 1 && counts[1]! >= 1, `calls per server: ${counts.join(", ")}`);
  });

  test("gives the next call to a free server while another one is busy", async (open) => {
    const bus = await open();
    const release = Promise.withResolvers<void>();
    const busyStarted = Promise.withResolvers<void>();
    await bus.serve("job", async () => {
      busyStarted.resolve();
      await release.promise;
      return "slow";
    }, { maxInFlight: 1 });
    const slow = bus.call("job", 0, { timeoutMs: EVENT_MS });
    await withTimeout(busyStarted.promise, EVENT_MS, "the first server to start");
    await bus.serve("job", () => Promise.resolve("fast"), { maxInFlight: 1 });
    assert.equal(await bus.call("job", 1, { timeoutMs: EVENT_MS }), "fast");
    release.resolve();
    assert.equal(await slow, "slow");
  });

  test("passes a handler's error to the caller as RpcRemoteError with message and class", async (open) => {
    const bus = await open();
    await bus.serve("lamp.fail", () => Promise.reject(new TypeError("lamp 7 is not dimmable")));
    await bus.serve("lamp.throw", () => {
      throw "a plain string";
    });
    const e = await rejection(bus.call("lamp.fail", {}, { timeoutMs: EVENT_MS }), "lamp.fail");
    assert.ok(e instanceof RpcRemoteError, `got ${e.name}: ${e.message}`);
    assert.deepEqual(e.remote, { s: "error", m: "lamp 7 is not dimmable", c: "TypeError" });
    assert.equal(e.rpc, "lamp.fail");
    assert.equal(e.message, "lamp.fail failed: lamp 7 is not dimmable (TypeError)");
    const e2 = await rejection(bus.call("lamp.throw", {}, { timeoutMs: EVENT_MS }), "lamp.throw");
    assert.ok(e2 instanceof RpcRemoteError);
    assert.deepEqual(e2.remote, { s: "error", m: "a plain string", c: "Error" });
  });

  test("fails a call nobody serves with no_server instead of letting it wait", async (open) => {
    const bus = await open();
    const e = await rejection(bus.call("nobody.home", 1, { timeoutMs: EVENT_MS / 2 }), "the call");
    assert.ok(e instanceof RpcNoServerError, `got ${e.name}: ${e.message}`);
    assert.equal(e.code, "no_server");
    assert.equal(e.message, 'nobody.home failed: nobody serves "nobody.home" (no_server)');
  });

  test("times out a call that its server does not answer in time", async (open) => {
    const bus = await open({ handlerTimeoutMs: 600_000 });
    const taken = Promise.withResolvers<void>();
    await bus.serve("slow.home", (_args, info) => {
      taken.resolve();
      return new Promise((_, reject) => info.signal.addEventListener("abort", () => reject()));
    });
    const started = performance.now();
    const call = rejection(bus.call("slow.home", 1, { timeoutMs: SHORT_MS }), "the call");
    await withTimeout(taken.promise, EVENT_MS, "the server to take the request");
    const e = await call;
    const elapsed = performance.now() - started;
    assert.ok(e instanceof RpcTimeoutError, `got ${e.name}: ${e.message}`);
    assert.equal(e.message, `no reply from "slow.home" within ${SHORT_MS} ms`);
    // It waited for the timeout (how much longer is no test's business: see deno task bench).
    assert.ok(elapsed >= SHORT_MS - 5, `took ${elapsed} ms`);
  });

  test("times out a call whose handler never returns, and the server recovers", async (open) => {
    const bus = await open({ handlerTimeoutMs: 400 });
    const aborted = Promise.withResolvers<unknown>();
    await bus.serve("hang", (args, info) => {
      if (args === "hang") {
        info.signal.addEventListener("abort", () => aborted.resolve(info.signal.reason));
        return new Promise(() => {});
      }
      return Promise.resolve("answered");
    }, { maxInFlight: 1 });
    const e = await rejection(bus.call("hang", "hang", { timeoutMs: SHORT_MS }), "the hung call");
    assert.ok(e instanceof RpcTimeoutError, `got ${e.name}: ${e.message}`);
    // The server gives up on the handler, frees its only slot and answers again.
    await withTimeout(aborted.promise, EVENT_MS, "the hung handler's signal to abort");
    assert.equal(await bus.call("hang", "quick", { timeoutMs: EVENT_MS }), "answered");
    const e2 = await rejection(bus.call("hang", "hang", { timeoutMs: EVENT_MS }), "hung call 2");
    assert.ok(e2 instanceof RpcRemoteError, `got ${e2.name}: ${e2.message}`);
    assert.equal(e2.remote.c, "TimeoutError");
    assert.equal(e2.remote.m, 'the handler of "hang" did not finish within 400 ms');
  });

  test("delivers alerts by exact, * and # patterns, a copy to every subscriber", async (open) => {
    const bus = await open();
    const patterns = ["a.b.c", "a.*.c", "a.#", "#", "*.b", "a.b.c.#", "#.c", "a.#.c", "a.*"];
    const got = new Map<string, Collector<string>>();
    for (const p of patterns) {
      const c = new Collector<string>();
      got.set(p, c);
      await bus.onAlert(p, (topic, data) => {
        c.push(`${topic}=${JSON.stringify(data)}`);
      });
    }
    const twin = new Collector<unknown>();
    await bus.onAlert("a.b.c", (_topic, data) => {
      (data as { n: number }).n = -1; // must not change the other subscribers' copies
      twin.push(data);
    });
    const topics = ["a.b.c", "a.x.c", "a.b", "a", "b.c.d", "x.b", "a.b.c.d"];
    for (const [i, t] of topics.entries()) await bus.alert(t, { n: i });
    const expected: Record<string, string[]> = {
      "a.b.c": ["a.b.c"],
      "a.*.c": ["a.b.c", "a.x.c"],
      "a.#": ["a.b.c", "a.x.c", "a.b", "a", "a.b.c.d"],
      "#": topics,
      "*.b": ["a.b", "x.b"],
      "a.b.c.#": ["a.b.c", "a.b.c.d"],
      "#.c": ["a.b.c", "a.x.c"],
      "a.#.c": ["a.b.c", "a.x.c"],
      "a.*": ["a.b"],
    };
    for (const p of patterns) {
      const want = expected[p]!.map((t) => `${t}={"n":${topics.indexOf(t)}}`);
      await got.get(p)!.count(want.length, EVENT_MS, `alerts for "${p}"`);
    }
    await twin.count(1, EVENT_MS, "the twin subscriber's alert");
    await quietPeriod(150);
    for (const p of patterns) {
      const want = expected[p]!.map((t) => `${t}={"n":${topics.indexOf(t)}}`);
      assert.deepEqual(got.get(p)!.items, want, `alerts for "${p}"`);
    }
    assert.deepEqual(twin.items, [{ n: -1 }]);
  });

  test("keeps delivering alerts after a handler throws", async (open) => {
    const bus = await open();
    const got = new Collector<unknown>();
    await bus.onAlert("flaky", (_t, data) => {
      got.push(data);
      if (data === 1) throw new Error("handler bug");
      return Promise.resolve();
    });
    await bus.alert("flaky", 1);
    await bus.alert("flaky", 2);
    assert.deepEqual(await got.count(2, EVENT_MS, "two alerts"), [1, 2]);
  });

  test("stops delivery once a registration is closed", async (open) => {
    const bus = await open();
    let served = 0;
    const reg = await bus.serve("gone", () => Promise.resolve(++served));
    assert.equal(await bus.call("gone", null, { timeoutMs: EVENT_MS }), 1);
    await reg.close();
    const e = await rejection(bus.call("gone", null, { timeoutMs: SHORT_MS }), "call after close");
    // Nobody serves it now: no_server, or (while the broker deletes the queue) no reply.
    assert.ok(unanswered(e), `got ${e.name}: ${e.message}`);
    assert.equal(served, 1);

    const closed = new Collector<string>();
    const open2 = new Collector<string>();
    const sub = await bus.onAlert("news.#", (t) => closed.push(t));
    await bus.onAlert("news.#", (t) => open2.push(t));
    await bus.alert("news.one", 1);
    await closed.count(1, EVENT_MS, "the first alert");
    await sub.close();
    await sub.close();
    await bus.alert("news.two", 2);
    await open2.count(2, EVENT_MS, "the second alert at the open subscriber");
    await quietPeriod(100);
    assert.deepEqual(closed.items, ["news.one"]);
  });

  test("answers requests in flight with an error when their server stops", async (open) => {
    const bus = await open();
    const started = Promise.withResolvers<void>();
    const reg = await bus.serve("stopping", () => {
      started.resolve();
      return new Promise(() => {});
    });
    const call = rejection(bus.call("stopping", null, { timeoutMs: EVENT_MS }), "the call");
    await withTimeout(started.promise, EVENT_MS, "the handler to start");
    await reg.close();
    const e = await call;
    assert.ok(e instanceof RpcRemoteError, `got ${e.name}: ${e.message}`);
    assert.equal(e.remote.m, 'the server of "stopping" stopped');
  });

  test("refuses messages over the size limit with a clear error", async (open) => {
    const bus = await open({ maxMessageBytes: 1000 });
    let calls = 0;
    await bus.serve("big", (args) => {
      calls++;
      return Promise.resolve("x".repeat(args as number));
    });
    const e = await rejection(bus.call("big", "y".repeat(2000), { timeoutMs: EVENT_MS }), "send");
    assert.ok(e instanceof RangeError, `got ${e.name}: ${e.message}`);
    assert.equal(e.message, 'the request to "big" is 2002 bytes, over the limit of 1000 bytes');
    assert.equal(calls, 0);
    const e2 = await rejection(bus.call("big", 5000, { timeoutMs: EVENT_MS }), "big reply");
    assert.ok(e2 instanceof RpcRemoteError, `got ${e2.name}: ${e2.message}`);
    assert.deepEqual(e2.remote, {
      s: "error",
      m: 'the reply from "big" is 5002 bytes, over the limit of 1000 bytes',
      c: "RangeError",
    });
    assert.equal(await bus.call("big", 998, { timeoutMs: EVENT_MS }), "x".repeat(998));
    const e3 = await rejection(bus.alert("big.news", "z".repeat(1000)), "a big alert");
    assert.ok(e3 instanceof RangeError);
    assert.equal(e3.message, 'the alert "big.news" is 1002 bytes, over the limit of 1000 bytes');
  });

  test("refuses bad names and patterns with a RangeError naming them", async (open) => {
    const bus = await open();
    const cases: [string, () => Promise<unknown>, string][] = [
      ["serve", () => bus.serve("lamp on", () => Promise.resolve()), '"lamp on"'],
      ["serve", () => bus.serve("a.*", () => Promise.resolve()), '"a.*"'],
      ["call", () => bus.call("a..b", 1), '"a..b"'],
      ["call", () => bus.call("", 1), "must not be empty"],
      ["call", () => bus.call("x/y", 1), '"x/y"'],
      ["onAlert", () => bus.onAlert("a.b*", () => {}), '"a.b*"'],
      ["onAlert", () => bus.onAlert("a.", () => {}), '"a."'],
      ["alert", () => bus.alert("a.#", 1), '"a.#"'],
      ["alert", () => bus.alert("ä", 1), '"ä"'],
      ["call", () => bus.call("a".repeat(256), 1), "longer than 255 bytes"],
    ];
    for (const [what, op, part] of cases) {
      const e = await rejection(op(), `${what} with a bad name`);
      assert.ok(e instanceof RangeError, `${what}: got ${e.name}: ${e.message}`);
      assert.ok(e.message.includes(part), `${what}: "${e.message}" should name ${part}`);
    }
  });

  test("refuses arguments that are not JSON with a TypeError", async (open) => {
    const bus = await open();
    const e = await rejection(bus.call("x", { n: 1n }), "a BigInt argument");
    assert.ok(e instanceof TypeError, `got ${e.name}: ${e.message}`);
    assert.ok(e.message.startsWith('the arguments of "x" cannot be sent as JSON'));
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    assert.ok((await rejection(bus.alert("x", cyclic), "a cyclic alert")) instanceof TypeError);
  });

  test("serves and listens through a group that shares one channel", async (open) => {
    const bus = await open();
    const group = bus.group({ channels: 1 });
    const got = new Collector<string>();
    const regs = [];
    for (let i = 0; i < 12; i++) {
      regs.push(await group.serve(`g.n${i}`, (args) => Promise.resolve([i, args])));
    }
    for (let i = 0; i < 3; i++) {
      regs.push(await group.onAlert(`g.a${i}.#`, (t, d) => got.push(`${i} ${t} ${d}`)));
    }
    assert.equal(group.size, 15);
    const results = await withTimeout(
      Promise.all(
        Array.from({ length: 12 }, (_, i) => bus.call(`g.n${i}`, i * 2, { timeoutMs: EVENT_MS })),
      ),
      EVENT_MS,
      "calls to 12 names of one group",
    );
    assert.deepEqual(results, Array.from({ length: 12 }, (_, i) => [i, i * 2]));
    for (let i = 0; i < 3; i++) await bus.alert(`g.a${i}.x`, i);
    await got.count(3, EVENT_MS, "an alert per pattern");
    assert.deepEqual([...got.items].sort(), ["0 g.a0.x 0", "1 g.a1.x 1", "2 g.a2.x 2"]);
    // One registration of the group closes alone; the others keep working.
    await regs[0]!.close();
    assert.equal(group.size, 14);
    const e = await rejection(bus.call("g.n0", 1, { timeoutMs: SHORT_MS }), "a closed one");
    assert.ok(unanswered(e), `got ${e.name}: ${e.message}`);
    assert.deepEqual(await bus.call("g.n1", "x", { timeoutMs: EVENT_MS }), [1, "x"]);
  });

  test("keeps every consumer's own prefetch on a shared channel", async (open) => {
    const bus = await open();
    const group = bus.group({ channels: 1 });
    const release = Promise.withResolvers<void>();
    let running = 0;
    let most = 0;
    await group.serve("g.one", async () => {
      most = Math.max(most, ++running);
      await release.promise;
      running--;
      return "one";
    }, { maxInFlight: 1 });
    await group.onAlert("g.any", () => {});
    const calls = [0, 1, 2].map((i) => bus.call("g.one", i, { timeoutMs: EVENT_MS }));
    await quietPeriod(150);
    assert.equal(most, 1, "a server with maxInFlight 1 ran more than one request at once");
    release.resolve();
    assert.deepEqual(await withTimeout(Promise.all(calls), EVENT_MS, "three calls"), [
      "one",
      "one",
      "one",
    ]);
  });

  test("ends every registration of a group with close(), and refuses new ones", async (open) => {
    const bus = await open();
    const group = bus.group({ channels: 2 });
    const other = bus.group();
    const got = new Collector<string>();
    const started = Promise.withResolvers<void>();
    await group.serve("g.hang", () => {
      started.resolve();
      return new Promise(() => {});
    });
    await group.serve("g.echo", (a) => Promise.resolve(a));
    await group.onAlert("g.news", (t) => got.push(`group ${t}`));
    await other.onAlert("g.news", (t) => got.push(`other ${t}`));
    const hung = rejection(bus.call("g.hang", null, { timeoutMs: EVENT_MS }), "the hung call");
    await withTimeout(started.promise, EVENT_MS, "the handler to start");
    await group.close();
    await group.close();
    assert.equal(group.size, 0);
    const e = await hung;
    assert.ok(e instanceof RpcRemoteError, `got ${e.name}: ${e.message}`);
    assert.equal(e.remote.m, 'the server of "g.hang" stopped');
    const e2 = await rejection(bus.call("g.echo", 1, { timeoutMs: SHORT_MS }), "after close");
    assert.ok(unanswered(e2), `got ${e2.name}: ${e2.message}`);
    await bus.alert("g.news", 1);
    await got.count(1, EVENT_MS, "the other group's alert");
    await quietPeriod(100);
    assert.deepEqual(got.items, ["other g.news"]);
    const e3 = await rejection(group.serve("g.late", () => Promise.resolve()), "serve after close");
    assert.ok(e3 instanceof BusUnavailableError, `got ${e3.name}: ${e3.message}`);
    const e4 = await rejection(group.onAlert("g.late", () => {}), "listen after close");
    assert.ok(e4 instanceof BusUnavailableError, `got ${e4.name}: ${e4.message}`);
    assert.equal(other.size, 1);
  });

  test("refuses a group whose channel count is not a whole number of at least 1", async (open) => {
    const bus = await open();
    for (const channels of [0, -1, 1.5, NaN]) {
      assert.throws(() => bus.group({ channels }), RangeError, `channels ${channels}`);
    }
  });

  test("bounds a handler's error in the reply: message at most 4 KiB, class an identifier", async (open) => {
    const bus = await open();
    class Odd extends Error {
      override name = "not a class name!";
    }
    await bus.serve("err.huge", () => Promise.reject(new Error("é".repeat(600_000))));
    await bus.serve("err.odd", () => Promise.reject(new Odd("odd")));
    await bus.serve("err.long", () => {
      const e = new Error("long class");
      e.name = "C".repeat(70_000);
      return Promise.reject(e);
    });
    const e = await rejection(bus.call("err.huge", 1, { timeoutMs: EVENT_MS }), "a huge error");
    assert.ok(e instanceof RpcRemoteError, `got ${e.name}: ${e.message.slice(0, 100)}`);
    assert.ok(new TextEncoder().encode(e.remote.m).length <= 4096, "message over 4 KiB");
    assert.ok(e.remote.m.startsWith("éé") && e.remote.m.endsWith("…"));
    assert.equal(e.remote.c, "Error");
    const e2 = await rejection(bus.call("err.odd", 1, { timeoutMs: EVENT_MS }), "an odd class");
    assert.ok(e2 instanceof RpcRemoteError);
    assert.deepEqual(e2.remote, { s: "error", m: "odd", c: "Error" });
    const e3 = await rejection(bus.call("err.long", 1, { timeoutMs: EVENT_MS }), "a long class");
    assert.ok(e3 instanceof RpcRemoteError);
    assert.deepEqual(e3.remote, { s: "error", m: "long class", c: "Error" });
    await bus.serve("fine", () => Promise.resolve("fine"));
    assert.equal(await bus.call("fine", null, { timeoutMs: EVENT_MS }), "fine");
  });

  test("fails calls in flight and later calls with BusUnavailableError once closed", async (open) => {
    const bus = await open();
    const states: string[] = [];
    bus.onState((s) => states.push(s));
    const started = Promise.withResolvers<void>();
    await bus.serve("slow", () => {
      started.resolve();
      return new Promise(() => {});
    });
    const call = rejection(bus.call("slow", null, { timeoutMs: EVENT_MS }), "the call in flight");
    await withTimeout(started.promise, EVENT_MS, "the handler to start");
    await bus.close();
    const e = await call;
    assert.ok(e instanceof BusUnavailableError, `got ${e.name}: ${e.message}`);
    assert.equal(bus.connected, false);
    assert.deepEqual(states, ["closed"]);
    const e2 = await rejection(bus.call("slow", null), "a call after close");
    assert.ok(e2 instanceof BusUnavailableError, `got ${e2.name}: ${e2.message}`);
    assert.ok(
      (await rejection(bus.alert("x", 1), "an alert after close")) instanceof BusUnavailableError,
    );
    assert.ok(
      (await rejection(bus.serve("x", () => Promise.resolve()), "serve after close")) instanceof
        BusUnavailableError,
    );
    assert.ok(
      (await rejection(
        bus.group().serve("x", () => Promise.resolve()),
        "group after close",
      )) instanceof
        BusUnavailableError,
    );
    await bus.close();
  });
}
