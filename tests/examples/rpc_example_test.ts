/**
 * examples/rpc_service.ts on a real host (real sandbox, MemoryStore,
 * LocalBus) with a virtual clock: served RPCs, errors back to the caller,
 * alerts in and out, and the motion timer.
 */

import { assert, assertEquals, assertIncludes, assertRejects } from "../_util/assert.ts";
import { withTimeout } from "../_util/wait.ts";
import { hostHarness } from "../_util/host_harness.ts";
import { LocalBus } from "../../host/bus/local_bus.ts";
import { VirtualClock } from "../../host/time/virtual_clock.ts";

/** Bound of a wait for what must happen: generous, it only catches a hang. */
const WAIT_MS = 60_000;
const START = Date.UTC(2026, 2, 2, 12);

Deno.test("rpc_service.ts serves get/set, reports bad calls, announces changes and obeys motion", async () => {
  const clock = new VirtualClock(START);
  const bus = new LocalBus();
  const { store, logger, s, host, close } = hostHarness({ bus, clock });
  const dump = () => logger.lines.map((l) => `${l.source} ${l.message}`).join("\n");
  const waitLine = (pred: (m: string) => boolean, what: string) =>
    withTimeout(
      logger.waitFor((l) => l.source === "h/porch" && pred(l.message)),
      WAIT_MS,
      what,
    ).catch((e) => {
      throw new Error(`${e.message}; log:\n${dump()}`);
    });
  const light = async () => (await store.get("/moat/task/h/porch/:task/data/light"))?.value;
  try {
    const code = await Deno.readTextFile(
      new URL("../../examples/rpc_service.ts", import.meta.url),
    );
    // No lease keep-alives due within the test: the next sleep is the script's.
    await store.put("/moat/config/run/ttl", String(10 * 365 * 86400));
    await s.scripts.add("porchsvc", code, { language: "typescript" });
    await s.tasks.add("porchsvc", "h/porch", { data: [["light", "false"], ["hold", "300"]] });
    const changes: unknown[] = [];
    await bus.onAlert("porch.light.#", (topic, data) => void changes.push([topic, data]));
    await host.start();
    await waitLine((m) => m === "serving porch.light.get and porch.light.set", "serving");

    assertEquals(await bus.call("porch.light.get", null, { timeoutMs: 30_000 }), { on: false });
    assertEquals(
      await bus.call("porch.light.set", { on: true }, { timeoutMs: 30_000 }),
      { on: true },
    );
    assertEquals(await light(), "true");
    assertEquals(await bus.call("porch.light.get", null, { timeoutMs: 30_000 }), { on: true });
    const bad = await assertRejects(
      bus.call("porch.light.set", { on: "yes" }, { timeoutMs: 30_000 }),
    );
    assertIncludes(bad.message, 'porch.light.set expects {"on": true} or {"on": false}');
    assertEquals(await light(), "true", "a refused call changes nothing");

    // Motion: on (through its own RPC), off `hold` seconds after the last motion.
    await bus.call("porch.light.set", { on: false }, { timeoutMs: 30_000 });
    await bus.alert("porch.motion", { where: "door" });
    const off = START + 300_000;
    const armed = async (atMs: number, what: string) => {
      const until = performance.now() + WAIT_MS;
      while (clock.nextDue !== atMs) {
        if (performance.now() > until) throw new Error(`no timer for ${what}; log:\n${dump()}`);
        await new Promise((r) => setTimeout(r, 5));
      }
    };
    await armed(off, "the first motion");
    assertEquals(await light(), "true");
    await clock.advance(120_000);
    await bus.alert("porch.motion", null);
    await armed(off + 120_000, "the second motion");
    await clock.advance(180_000); // the first motion's time: still on
    assertEquals(await light(), "true");
    await clock.advance(120_000);
    await waitLine((m) => m === "light off (no motion)", "off after the last motion");
    assertEquals(await light(), "false");
    const seen = () => changes.map((c) => JSON.stringify(c));
    const until = performance.now() + WAIT_MS;
    while (!seen().includes('["porch.light.changed",{"on":false,"why":"no motion"}]')) {
      if (performance.now() > until) throw new Error(`alerts: ${seen().join("\n")}`);
      await new Promise((r) => setTimeout(r, 5));
    }
    assertEquals(seen().slice(0, 2), [
      '["porch.light.changed",{"on":true,"why":"rpc"}]',
      '["porch.light.changed",{"on":false,"why":"rpc"}]',
    ]);
    assert(host.running.includes("h/porch"), "the service keeps running");
  } finally {
    await close();
    await bus.close();
  }
});
