import assert from "node:assert/strict";
import { LocalBus } from "../bus/local_bus.ts";
import { MemoryStore } from "../store/memory_store.ts";
import { Layout } from "../layout.ts";
import { CapabilityError } from "./capability_error.ts";
import type { Json, ScriptEvent } from "../../sandbox/protocol.ts";
import { RpcRemoteError } from "../bus/bus.ts";
import { DEFAULT_QUOTAS, type Quotas } from "./quotas.ts";
import { RpcNames } from "./rpc_names.ts";
import { ScriptBus } from "./script_bus.ts";

interface World {
  bus: LocalBus;
  store: MemoryStore;
  names: RpcNames;
  /** A ScriptBus for a run of `script` as task `task`; answers every request with `answer`. */
  run(script: string, task: string, quotas?: Partial<Quotas>): Promise<ScriptBus>;
}

async function world(fn: (w: World) => Promise<void>): Promise<void> {
  const bus = new LocalBus();
  const store = new MemoryStore();
  const names = new RpcNames(store, new Layout("/moat"));
  const runs: ScriptBus[] = [];
  try {
    await fn({
      bus,
      store,
      names,
      async run(script, task, quotas = {}) {
        const lease = await store.grantLease(30);
        const box: { sb?: ScriptBus } = {};
        const send = (e: ScriptEvent) => {
          if (e.event !== "rpc") return;
          const d = e.data;
          queueMicrotask(() => box.sb!.reply(d.call, true, { by: task, args: d.args }));
        };
        const sb = box.sb = new ScriptBus(bus, send, {
          quotas: { ...DEFAULT_QUOTAS, ...quotas },
          claims: { names, script, task, lease: lease.id },
        });
        runs.push(sb);
        return sb;
      },
    });
  } finally {
    for (const r of runs) await r.close();
    await bus.close();
    await store.close();
  }
}

async function refusal(p: Promise<unknown>): Promise<CapabilityError> {
  const e = await p.then(() => undefined, (e) => e);
  assert.ok(e instanceof CapabilityError, `expected a CapabilityError, got ${String(e)}`);
  return e;
}

Deno.test("ScriptBus holds the registration quota under 200 concurrent registrations", async () => {
  await world(async (w) => {
    const sb = await w.run("many", "h/many");
    const tries = Array.from(
      { length: 200 },
      (_, i) => i % 2 ? sb.serve(`many.n${i}`) : sb.listen(`many.a${i}.#`),
    );
    const outcomes = await Promise.allSettled(tries);
    const ok = outcomes.filter((o) => o.status === "fulfilled");
    const refused = outcomes.filter((o) => o.status === "rejected") as PromiseRejectedResult[];
    assert.equal(ok.length, 100);
    assert.equal(sb.registrations, 100);
    for (const r of refused) {
      assert.ok(r.reason instanceof CapabilityError);
      assert.equal(r.reason.code, "quota");
      assert.match(r.reason.message, /quota registrations = 100/);
    }
    // Ids are distinct.
    const ids = new Set(ok.map((o) => (o as PromiseFulfilledResult<number>).value));
    assert.equal(ids.size, 100);
  });
});

Deno.test("ScriptBus gives a registration back when the broker refuses it", async () => {
  await world(async (w) => {
    const a = await w.run("one", "h/one", { registrations: 2 });
    const b = await w.run("two", "h/two", { registrations: 2 });
    await a.serve("held");
    const e = await refusal(b.serve("held"));
    assert.equal(e.code, "taken");
    // The failed one did not count: two more fit.
    await b.serve("b.one");
    await b.listen("b.#");
    assert.equal((await refusal(b.serve("b.three"))).code, "quota");
  });
});

Deno.test("ScriptBus refuses names starting with moat. with code reserved", async () => {
  await world(async (w) => {
    const sb = await w.run("evil", "h/evil");
    const attempts: [string, () => Promise<unknown>][] = [
      ["serve", () => sb.serve("moat.debug.h")],
      ["serve", () => sb.serve("moat")],
      ["serve", () => sb.serve("moat.task.x")],
      ["call", () => sb.call("moat.debug.h", "", 1)],
      ["alert", () => sb.alert("moat.task.h.x", { state: "ok" })],
      ["alert", () => sb.alert("moat", 1)],
      ["listen", () => sb.listen("moat.debug.*")],
      ["listen", () => sb.listen("moat.#")],
      ["listen", () => sb.listen("moat.*.x")],
    ];
    for (const [what, attempt] of attempts) {
      const e = await refusal(attempt());
      assert.equal(e.code, "reserved", `${what}: ${e.code} ${e.message}`);
      assert.match(e.message, /is reserved: names starting with "moat\." belong to the MoaT hosts/);
    }
    assert.equal(sb.registrations, 0);
    // Reading the hosts' task state alerts is allowed.
    await sb.listen("moat.task.#");
    await sb.listen("#");
    await sb.listen("*.task.#");
    // Names that merely contain the word are fine.
    await sb.serve("my.moat.thing");
    await sb.serve("moatish");
  });
});

Deno.test("ScriptBus refuses a name another script serves with code taken, naming it", async () => {
  await world(async (w) => {
    const a1 = await w.run("lamps", "h1/porch");
    const a2 = await w.run("lamps", "h2/garden");
    const b = await w.run("squatter", "h1/squat");
    await a1.serve("lamp.set");
    await a2.serve("lamp.set");
    const e = await refusal(b.serve("lamp.set"));
    assert.equal(e.code, "taken");
    assert.match(e.message, /^RPC name "lamp\.set" is served by script "lamps"/);
    // The same script's tasks share the calls.
    const by = new Set<string>();
    for (let i = 0; i < 10; i++) {
      const r = await w.bus.call("lamp.set", i, { timeoutMs: 2000 }) as { by: string };
      by.add(r.by);
    }
    assert.deepEqual([...by].sort(), ["h1/porch", "h2/garden"]);
    // Once both runs end, the name is free again.
    await a1.close();
    await a2.close();
    assert.deepEqual((await w.store.range("/moat/status/rpc/")).kvs, []);
    await b.serve("lamp.set");
    assert.deepEqual(await w.bus.call("lamp.set", 1, { timeoutMs: 2000 }), {
      by: "h1/squat",
      args: 1,
    });
  });
});

Deno.test("ScriptBus claims a name once per run however often the run serves it", async () => {
  await world(async (w) => {
    const sb = await w.run("twice", "h/twice");
    await Promise.all([sb.serve("dup"), sb.serve("dup")]);
    assert.deepEqual(await w.names.holders("dup"), new Map([["h/twice", "twice"]]));
    await sb.close();
    assert.deepEqual(await w.names.holders("dup"), new Map());
  });
});

Deno.test("ScriptBus answers the caller once, bounding a hostile error reply", async () => {
  await world(async (w) => {
    const box: { sb?: ScriptBus } = {};
    const replies: [boolean, Json][] = [
      [false, { message: "é".repeat(500_000), class: "X".repeat(5000) }],
      [false, { message: nested(100_000), class: { a: 1 } } as unknown as Json],
      [false, "just a string"],
      [false, null],
      [false, { message: 42, class: "RangeError" }],
    ];
    let n = 0;
    const sb = box.sb = new ScriptBus(w.bus, (e) => {
      if (e.event !== "rpc") return;
      const [ok, value] = replies[n++]!;
      box.sb!.reply(e.data.call, ok, value);
    }, { quotas: DEFAULT_QUOTAS });
    try {
      await sb.serve("hostile");
      const got = [];
      for (let i = 0; i < replies.length; i++) {
        const e = await w.bus.call("hostile", i, { timeoutMs: 2000 }).catch((e) => e);
        assert.ok(e instanceof RpcRemoteError, String(e).slice(0, 200));
        got.push(e.remote);
      }
      assert.ok(new TextEncoder().encode(got[0]!.m).length <= 4096);
      assert.equal(got[0]!.c, "Error");
      assert.deepEqual(got.slice(1), [
        { s: "error", m: "error", c: "Error" },
        { s: "error", m: "error", c: "Error" },
        { s: "error", m: "error", c: "Error" },
        { s: "error", m: "42", c: "RangeError" },
      ]);
    } finally {
      await sb.close();
    }
  });
});

Deno.test("ScriptBus refuses registrations after close and closes late ones", async () => {
  await world(async (w) => {
    const sb = await w.run("late", "h/late");
    const pending = sb.serve("late.one");
    await sb.close();
    const e = await refusal(pending);
    assert.equal(e.code, "ended");
    assert.equal((await refusal(sb.listen("x"))).code, "ended");
    assert.deepEqual(await w.names.holders("late.one"), new Map());
  });
});

/** `[[[…]]]` nested `depth` deep, as parsed JSON. */
function nested(depth: number): Json {
  let v: Json = [];
  for (let i = 0; i < depth; i++) v = [v];
  return v;
}
