import assert from "node:assert/strict";
import { AmqpBus } from "../../host/bus/amqp_bus.ts";
import { MOAT_RUN_ARGS, runMoat } from "../_util/cli.ts";
import { deleteExchanges, RABBIT_URL, uniqueExchanges } from "../_util/rabbit.ts";
import { Collector, withTimeout } from "../_util/wait.ts";

/** Bound of a wait for what must happen: generous, it only catches a hang. */
const EVENT_MS = 60_000;

/** Run `fn` with a bus on exchanges of its own and the env that points `moat` at them. */
async function withBus(
  fn: (bus: AmqpBus, env: Record<string, string>) => Promise<void>,
): Promise<void> {
  const ex = uniqueExchanges();
  const bus = await AmqpBus.open({ url: RABBIT_URL, exchanges: ex });
  const { prefix: _, ...names } = ex;
  try {
    await fn(bus, { MOAT_AMQP: RABBIT_URL, MOAT_AMQP_EXCHANGES: JSON.stringify(names) });
  } finally {
    await bus.close();
    await deleteExchanges(ex);
  }
}

/** Start `moat ARGS…` and wait until it says it is listening. */
async function startListening(args: string[], env: Record<string, string>) {
  const child = new Deno.Command(Deno.execPath(), {
    args: [...MOAT_RUN_ARGS, ...args],
    env: { NO_COLOR: "1", ...env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const dec = new TextDecoder();
  let stderr = "";
  const reader = child.stderr.getReader();
  const ready = (async () => {
    while (!stderr.includes("listening to")) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`moat listen ended before listening: ${stderr}`);
      stderr += dec.decode(value);
    }
  })();
  try {
    await withTimeout(ready, EVENT_MS, "moat listen to subscribe");
  } catch (e) {
    child.kill();
    await child.status;
    reader.releaseLock();
    await child.stderr.cancel();
    await child.stdout.cancel();
    throw e;
  }
  const rest = (async () => {
    let text = "";
    for (let r = await reader.read(); !r.done; r = await reader.read()) text += dec.decode(r.value);
    return text;
  })();
  const chunks = new Collector<string>();
  const stdout = (async () => {
    for await (const chunk of child.stdout) chunks.push(dec.decode(chunk));
  })();
  return {
    child,
    /** Wait until standard output contains `text`. */
    async printed(text: string): Promise<void> {
      await chunks.until((c) => c.join("").includes(text), EVENT_MS, `"${text}" on stdout`);
    },
    /** Wait for the exit; resolves with the code and the whole output. */
    async done() {
      const status = await withTimeout(child.status, EVENT_MS, "moat listen to exit");
      await stdout;
      return { code: status.code, stdout: chunks.items.join(""), stderr: stderr + await rest };
    },
  };
}

Deno.test("moat call prints the JSON result of an RPC", async () => {
  await withBus(async (bus, env) => {
    await bus.serve("math.add", (args) => {
      const { a, b } = args as { a: number; b: number };
      return Promise.resolve({ sum: a + b });
    });
    const r = await runMoat(["call", "math.add", '{"a": 1, "b": 2}'], { env });
    assert.deepEqual(r, { code: 0, stdout: '{"sum":3}\n', stderr: "" });
  });
});

Deno.test("moat call sends null when no JSON is given", async () => {
  await withBus(async (bus, env) => {
    await bus.serve("echo", (args) => Promise.resolve([args]));
    const r = await runMoat(["call", "echo"], { env });
    assert.deepEqual(r, { code: 0, stdout: "[null]\n", stderr: "" });
  });
});

Deno.test("moat call prints a remote error as NAME failed: message (class) and exits with 1", async () => {
  await withBus(async (bus, env) => {
    await bus.serve("lamp.set", () => Promise.reject(new TypeError("lamp 7 is not dimmable")));
    const r = await runMoat(["call", "lamp.set", "7"], { env });
    assert.deepEqual(r, {
      code: 1,
      stdout: "",
      stderr: "error: lamp.set failed: lamp 7 is not dimmable (TypeError)\n",
    });
  });
});

Deno.test("moat call gives up after --timeout with a clear message and exits with 1", async () => {
  await withBus(async (bus, env) => {
    // A server that takes the request and never answers.
    await bus.serve(
      "slow.home",
      (_args, info) =>
        new Promise((_, reject) => info.signal.addEventListener("abort", () => reject())),
    );
    const r = await runMoat(["call", "slow.home", "--timeout", "0.3"], { env });
    assert.deepEqual(r, {
      code: 1,
      stdout: "",
      stderr: 'error: no reply from "slow.home" within 300 ms\n',
    });
  });
});

Deno.test("moat call of a name nobody serves fails with no_server and exits with 1", async () => {
  await withBus(async (_bus, env) => {
    // The timeout is far out of reach: the outcome is no_server, not a timeout.
    const r = await runMoat(["call", "nobody.home", "--timeout", "600"], { env });
    assert.deepEqual(r, {
      code: 1,
      stdout: "",
      stderr: 'error: nobody.home failed: nobody serves "nobody.home" (no_server)\n',
    });
  });
});

Deno.test("moat call refuses bad JSON, bad names and bad options as usage errors", async () => {
  await withBus(async (_bus, env) => {
    const cases: [string[], string][] = [
      [["call", "x", "{nope"], 'error: the JSON argument is not valid JSON: "{nope"'],
      [["call", "x", "on"], "quote strings"],
      [
        ["call", "x", "--timeout", "soon"],
        'error: --timeout must be a positive number of seconds, not "soon"',
      ],
      [["call", "lamp on"], 'error: RPC name "lamp on" has the word "lamp on"'],
      [["alert", "a.#", "1"], 'error: alert topic "a.#" has the word "#"'],
      [["listen", "a.b*"], 'error: alert pattern "a.b*" has the word "b*"'],
      [["listen", "a", "--count", "0"], 'error: --count must be a positive whole number, not "0"'],
      [["call"], "error: missing arguments: usage: moat call NAME [JSON]"],
    ];
    for (const [args, part] of cases) {
      const r = await runMoat(args, { env });
      assert.equal(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
      assert.ok(
        r.stderr.startsWith(part) || r.stderr.includes(part),
        `${args.join(" ")}: ${r.stderr}`,
      );
      assert.equal(r.stdout, "");
    }
  });
});

Deno.test("moat call fails in one line without the password when the broker is unreachable", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  const r = await runMoat(["call", "x", "--amqp", `amqp://guest:s3cret@127.0.0.1:${port}`]);
  assert.equal(r.code, 1);
  assert.match(
    r.stderr,
    /^error: AMQP broker at amqp:\/\/guest@127\.0\.0\.1:\d+ is not reachable: .*\n$/,
  );
  assert.ok(!r.stderr.includes("s3cret"));
});

Deno.test("moat refuses MOAT_AMQP_EXCHANGES that is not a JSON object of exchange names", async () => {
  for (
    const [value, part] of [
      ["{", "MOAT_AMQP_EXCHANGES is not JSON"],
      ["[]", "MOAT_AMQP_EXCHANGES must be a JSON object"],
      ['{"rcp": "x"}', 'MOAT_AMQP_EXCHANGES has the unknown key "rcp"'],
    ]
  ) {
    const r = await runMoat(["alert", "x"], { env: { MOAT_AMQP_EXCHANGES: value! } });
    assert.equal(r.code, 2, r.stderr);
    assert.ok(r.stderr.includes(part!), r.stderr);
  }
});

Deno.test("moat alert sends an alert that every subscriber receives", async () => {
  await withBus(async (bus, env) => {
    const got = new Collector<string>();
    await bus.onAlert("door.*", (topic, data) => got.push(`${topic} ${JSON.stringify(data)}`));
    const r = await runMoat(["alert", "door.front", '{"open": true}'], { env });
    assert.deepEqual(r, { code: 0, stdout: "", stderr: "" });
    assert.deepEqual(await got.count(1, EVENT_MS, "the alert"), ['door.front {"open":true}']);
  });
});

Deno.test("moat listen prints one line per matching alert and stops after --count", async () => {
  await withBus(async (bus, env) => {
    const listen = await startListening(["listen", "sensor.#", "--count", "2"], env);
    await bus.alert("other.topic", 0);
    await bus.alert("sensor.kitchen.temp", 21.5);
    await bus.alert("sensor.door", { open: false });
    await bus.alert("sensor.late", "not printed");
    const r = await listen.done();
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'sensor.kitchen.temp 21.5\nsensor.door {"open":false}\n');
  });
});

Deno.test("moat listen stops cleanly on SIGINT", async () => {
  await withBus(async (bus, env) => {
    const listen = await startListening(["listen", "#"], env);
    await bus.alert("one", 1);
    await listen.printed("one 1\n");
    listen.child.kill("SIGINT");
    const r = await listen.done();
    assert.deepEqual(r, { code: 0, stdout: "one 1\n", stderr: "listening to #\n" });
  });
});
