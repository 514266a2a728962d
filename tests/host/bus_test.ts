/**
 * Scripts on the bus, run by a real host in real sandboxes with the
 * embedded LocalBus: RPC between scripts, alerts, task state alerts, debug
 * objects, and registrations dying with the script.
 */

import { assert, assertEquals, assertIncludes, assertRejects } from "../_util/assert.ts";
import { withTimeout } from "../_util/wait.ts";
import { debugRpcName } from "../../host/tasks/host.ts";
import { hostHarness } from "../_util/host_harness.ts";
import { LocalBus } from "../../host/bus/local_bus.ts";

function setup() {
  const bus = new LocalBus();
  const t = hostHarness({ bus });
  return {
    ...t,
    bus,
    close: async () => {
      await t.close();
      await bus.close();
    },
  };
}

const SERVER = `moat.setup();
moat.rpc("calc.double")((args) => {
  if (typeof args?.x !== "number") throw new RangeError("x must be a number");
  return { y: 2 * args.x };
});
moat.rpc("calc.never")(() => new Promise(() => {}));
moat.debug_obj({ served: ["calc.double"] });
moat.on_start(() => moat.logger.info("serving"));
`;

Deno.test("scripts serve and call RPCs; errors and timeouts reach the caller", async () => {
  const t = setup();
  try {
    await t.s.scripts.add("server", SERVER, { language: "javascript" });
    await t.s.scripts.add(
      "client",
      `moat.setup();
moat.rpc("self.echo")((a) => a);
moat.run(async () => {
  moat.logger.info("double " + JSON.stringify(await moat.call("calc.double", { x: 21 })));
  moat.logger.info("self " + JSON.stringify(await moat.call("self.echo", [1, "a"])));
  for (const [name, args, timeout] of [["calc.double", { x: "a" }, 5], ["calc.never", null, 0.3], ["no.such", 1, 0.3], ["bad name!", 1, 1]]) {
    try { await moat.call(name, args, { timeout }); moat.logger.info("no error " + name); }
    catch (e) { moat.logger.info("error " + name + ": " + e.message); }
  }
  moat.end();
});
`,
      { language: "javascript" },
    );
    await t.s.tasks.add("server", "h/server");
    await t.host.start();
    await t.waitLine("h/server", (m) => m === "serving");
    await t.s.tasks.add("client", "h/client");
    await t.waitLine("h/client", (m) => m.startsWith("error bad name!"));
    const l = t.lines("h/client");
    assert(l.includes('double {"y":42}'), l.join("\n"));
    assert(l.includes('self [1,"a"]'), l.join("\n"));
    assertIncludes(
      l.find((m) => m.startsWith("error calc.double"))!,
      "x must be a number (RangeError)",
    );
    assertIncludes(
      l.find((m) => m.startsWith("error calc.never"))!,
      'no reply from "calc.never" within 300 ms',
    );
    assert(l.some((m) => m.startsWith("error no.such")), l.join("\n"));
    assert(l.some((m) => m.startsWith("error bad name!")), l.join("\n"));
    // The host's debug RPC returns every debug object.
    const dbg = await t.bus.call(debugRpcName("h"), "", { timeoutMs: 30_000 });
    assertEquals(dbg, { task: { script: { "h/server": { served: ["calc.double"] } } } });
    // Registrations die with the script.
    await t.s.tasks.delete("h/server");
    await t.waitLine("h/server", (m) => m.startsWith("ended"));
    await assertRejects(t.bus.call("calc.double", { x: 1 }, { timeoutMs: 300 }));
  } finally {
    await t.close();
  }
});

Deno.test("every alert handler gets a copy; patterns match; task state alerts are published", async () => {
  const t = setup();
  try {
    const states: string[] = [];
    let senderOk: () => void = () => {};
    const sawSenderOk = new Promise<void>((r) => senderOk = r);
    await t.bus.onAlert("moat.task.h.#", (topic, data) => {
      states.push(`${topic} ${(data as { state: string }).state}`);
      const { state, status } = data as { state: string; status: string };
      // qbroker's state name, and moat-scripts' word for it.
      if (topic === "moat.task.h.sender" && state === "done" && status === "ok") senderOk();
    });
    const listener = `moat.setup();
moat.on_alert("home.*.temp")((topic, data) => moat.logger.info("star " + topic + " " + data.v));
moat.on_alert("home.#")((topic) => moat.logger.info("hash " + topic));
moat.on_start(() => moat.logger.info("listening"));
`;
    await t.s.scripts.add("listener", listener, { language: "javascript" });
    for (const n of ["a", "b"]) await t.s.tasks.add("listener", `h/${n}`);
    await t.host.start();
    for (const n of ["a", "b"]) await t.waitLine(`h/${n}`, (m) => m === "listening");
    await t.s.scripts.add(
      "sender",
      `moat.setup();\nawait moat.alert("home.kitchen.temp", { v: 21 });\nawait moat.alert("home.kitchen.door.open", {});\nmoat.end();\n`,
      { language: "javascript" },
    );
    await t.s.tasks.add("sender", "h/sender");
    for (const n of ["a", "b"]) {
      await t.waitLine(`h/${n}`, (m) => m === "star home.kitchen.temp 21");
      await t.waitLine(`h/${n}`, (m) => m === "hash home.kitchen.door.open");
      assertEquals(t.lines(`h/${n}`).filter((m) => m.startsWith("star ")).length, 1);
      assertEquals(t.lines(`h/${n}`).filter((m) => m.startsWith("hash ")).length, 2);
    }
    await t.waitLine("h/sender", (m) => m.startsWith("ended"));
    await withTimeout(sawSenderOk, 5000, "the sender's ok alert");
    assert(states.includes("moat.task.h.sender start"), states.join("\n"));
    assert(states.includes("moat.task.h.a start"), states.join("\n"));
  } finally {
    await t.close();
  }
});
