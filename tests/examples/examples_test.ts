/**
 * Every example script in examples/ runs on a real host (real sandbox
 * processes, the embedded MemoryStore) and does what its comments promise.
 * The host uses the system clock, so time-based examples are driven with
 * specs a few seconds from now, and their computed times are compared with
 * `timeAt`.
 */

import { assert, assertEquals, assertIncludes } from "../_util/assert.ts";
import { waitForKey } from "../_util/store_wait.ts";
import { withTimeout } from "../_util/wait.ts";
import { MemoryStore } from "../../host/store/memory_store.ts";
import { Layout } from "../../host/layout.ts";
import { MemoryLogger } from "../../host/log.ts";
import { SandboxPool } from "../../host/bridge/sandbox.ts";
import { Host } from "../../host/tasks/host.ts";
import { servicesOn } from "../../host/cli/services.ts";
import { ErrorRecords } from "../../host/capabilities/error_records.ts";
import { SystemClock } from "../../host/time/clock.ts";
import { timeAt } from "../../host/time/time_at.ts";

const layout = new Layout("/moat");
/** Bound of a wait for what must happen: generous, it only catches a hang. */
const WAIT_MS = 60_000;

function example(file: string): Promise<string> {
  return Deno.readTextFile(new URL(`../../examples/${file}`, import.meta.url));
}

function setup(options: { once?: boolean } = {}) {
  const store = new MemoryStore();
  const logger = new MemoryLogger();
  const pool = new SandboxPool({ warm: 1 });
  const s = servicesOn(store, "/moat");
  const host = new Host({
    store,
    layout,
    hostName: "h",
    isolation: pool,
    logger,
    ...(options.once ? { once: true } : {}),
  });
  const lines = (task: string) =>
    logger.lines.filter((l) => l.source === task).map((l) => l.message);
  const dump = () => logger.lines.map((l) => `${l.source} ${l.level} ${l.message}`).join("\n");
  const waitLine = (task: string, pred: (m: string) => boolean, what: string) =>
    withTimeout(
      logger.waitFor((l) => l.source === task && pred(l.message)),
      WAIT_MS,
      what,
    ).catch((e) => {
      throw new Error(`${e.message}; log:\n${dump()}`);
    });
  const addScript = async (name: string, file: string) =>
    await s.scripts.add(name, await example(file), { language: "typescript" });
  const put = (key: string, value: string) => store.put(`/moat/${key}`, value);
  const errors = (prefix: string) =>
    new ErrorRecords(store, layout, new SystemClock()).list(prefix);
  const close = async () => {
    await host.close();
    await pool.close();
    await store.close();
  };
  return { store, logger, host, s, lines, dump, waitLine, addScript, put, errors, close };
}

/** The state a task's last run ended with, once it has ended. */
async function endState(t: ReturnType<typeof setup>, task: string): Promise<string> {
  await withTimeout(t.host.settled(), WAIT_MS, `task ${task} to end`);
  return (await t.store.get(`/moat/status/run/${task}/:task/state`))?.value ?? "(none)";
}

const iso = (t: number) => new Date(t * 1000).toISOString();

Deno.test("hello.ts says hello and ends ok", async () => {
  const t = setup({ once: true });
  try {
    await t.addScript("hello", "hello.ts");
    await t.s.tasks.add("hello", "h/hello");
    await t.host.start();
    assertEquals(await endState(t, "h/hello"), "ok", t.dump());
    assert(t.lines("h/hello").includes("hello from a sandboxed script"), t.dump());
  } finally {
    await t.close();
  }
});

Deno.test("ticker.ts ticks three times a second apart and ends ok", async () => {
  const t = setup({ once: true });
  try {
    await t.addScript("ticker", "ticker.ts");
    await t.s.tasks.add("ticker", "h/ticker");
    await t.host.start();
    assertEquals(await endState(t, "h/ticker"), "ok", t.dump());
    const ticks = t.lines("h/ticker").filter((m) => m.startsWith("tick "));
    assertEquals(ticks.length, 3, t.dump());
    const times = ticks.map((m) => Date.parse(m.split(" at ")[1]!));
    assertEquals([times[1]! - times[0]!, times[2]! - times[1]!], [1000, 1000]);
    assert(t.lines("h/ticker").includes("ticker stopped"), t.dump());
  } finally {
    await t.close();
  }
});

Deno.test("flaky.ts fails and its error is recorded under the job tag", async () => {
  const t = setup({ once: true });
  try {
    await t.addScript("flaky", "flaky.ts");
    await t.s.tasks.add("flaky", "h/flaky");
    await t.host.start();
    assertEquals(await endState(t, "h/flaky"), "error", t.dump());
    assertEquals(
      (await t.store.get("/moat/status/run/h/flaky/:task/message"))?.value,
      "the sensor did not answer",
    );
  } finally {
    await t.close();
  }
});

Deno.test("daily_schedule.ts plans 07:30 and 23:00 by default and switches the light at its times", async () => {
  const t = setup();
  try {
    await t.put("config/timezone", "UTC");
    await t.addScript("porch", "daily_schedule.ts");
    await t.put("meta/script/porch/:code/types/light", "bool");
    await t.put("meta/script/porch/:code/values/light", "false");

    // Default times: the first plan is what timeAt computes for now.
    const before = Date.now() / 1000;
    await t.s.tasks.add("porch", "h/porch");
    // A second light switching a few seconds from now (the host's clock is real).
    const sec = new Date().getUTCSeconds();
    const onAt = `${(sec + 4) % 60} sec`;
    const offAt = `${(sec + 6) % 60} sec`;
    await t.s.tasks.add("porch", "h/quick", { data: [["on_at", onAt], ["off_at", offAt]] });
    await t.host.start();

    await t.waitLine("h/porch", (m) => m.startsWith("next on at "), "the first plan");
    const after = Date.now() / 1000;
    const plan = t.lines("h/porch").find((m) => m.startsWith("next on at "))!;
    const expected = (now: number) =>
      `next on at ${iso(timeAt("7 hr 30 min", { now, zone: "UTC" }))}, next off at ${
        iso(timeAt("23 hr", { now, zone: "UTC" }))
      }`;
    assert(plan === expected(before) || plan === expected(after), `${plan} vs ${expected(after)}`);
    assertIncludes(plan, "T07:30:00.000Z");
    assertIncludes(plan, "T23:00:00.000Z");
    // Between 07:30 and 23:00 the light is on at start, else off.
    const hour = new Date().getUTCHours() + new Date().getUTCMinutes() / 60;
    const on = hour >= 7.5 && hour < 23;
    await t.waitLine("h/porch", (m) => m.startsWith("light "), "the light set at start");
    assertIncludes(t.lines("h/porch").find((m) => m.startsWith("light "))!, on ? "on" : "off");

    // The quick light: off at start, on at +4 s, off at +6 s, written to data/light.
    await t.waitLine("h/quick", (m) => m === `light off (${offAt})`, "the light to go off");
    const switched = t.lines("h/quick").filter((m) => m.startsWith("light "));
    assertEquals(switched, ["light off (at start)", `light on (${onAt})`, `light off (${offAt})`]);
    assertEquals((await t.store.get("/moat/task/h/quick/:task/data/light"))?.value, "false");
    const plans = t.lines("h/quick").filter((m) => m.startsWith("next on at "));
    // After switching on, the next "on" is a minute later (the next period's start).
    const firstOn = Date.parse(plans[0]!.slice("next on at ".length, plans[0]!.indexOf(",")));
    const secondOn = Date.parse(plans[1]!.slice("next on at ".length, plans[1]!.indexOf(",")));
    assertEquals(secondOn - firstOn, 60_000, plans.join("\n"));
  } finally {
    await t.close();
  }
});

Deno.test("device_monitor.ts records too_warm while the freezer is warm and clears it after", async () => {
  const t = setup();
  try {
    await t.put("device/onewire/10/:dev/temp", "-20");
    await t.addScript("freezer", "device_monitor.ts");
    await t.put("meta/script/freezer/:code/types/device", "str/ref");
    await t.put("meta/script/freezer/:code/types/max", "float");
    await t.put("meta/script/freezer/:code/values/max", "-15");
    await t.s.tasks.add("freezer", "h/freezer", { data: [["device", "device/onewire/10/:dev"]] });
    await t.host.start();
    await t.waitLine(
      "h/freezer",
      (m) => m === "temperature fine: error cleared",
      "a first reading",
    );

    await t.put("device/onewire/10/:dev/temp", "-10.5");
    await t.waitLine("h/freezer", (m) => m === "too warm: error recorded", "the warning");
    const warm = (await t.errors("h/freezer")).find((r) => r.tag === "too_warm");
    assertEquals(warm?.msg, "freezer at -10.5 °C, above -15 °C");
    assertEquals(warm?.counter, 1);

    await t.put("device/onewire/10/:dev/temp", "-9"); // still warm: recorded once only
    await t.put("device/onewire/10/:dev/temp", "-18");
    await t.waitLine(
      "h/freezer",
      (m) => m === "freezer at -18 °C",
      "the reading after the warm ones",
    );
    // The first "error cleared" came with the first reading: wait for the second.
    await withTimeout(
      t.logger.waitFor(() =>
        t.lines("h/freezer").filter((m) => m === "temperature fine: error cleared").length >= 2
      ),
      60_000,
      "the error to be cleared",
    );
    const l = t.lines("h/freezer");
    assertEquals(l.filter((m) => m === "too warm: error recorded").length, 1, l.join("\n"));
    assertEquals(
      l.filter((m) => m.startsWith("freezer at ")),
      ["freezer at -20 °C", "freezer at -10.5 °C", "freezer at -9 °C", "freezer at -18 °C"],
    );
    // The script logs after `await moat.clear_error(…)`: the record is gone.
    assertEquals((await t.errors("h/freezer")).filter((r) => r.tag === "too_warm"), []);

    await t.store.delete("/moat/device/onewire/10/:dev/", { prefix: true });
    await t.waitLine("h/freezer", (m) => m.endsWith("was deleted"), "the deletion");
    assertEquals(
      (await t.errors("h/freezer")).find((r) => r.tag === "device_gone")?.msg,
      "device/onewire/10/:dev was deleted",
    );
  } finally {
    await t.close();
  }
});

Deno.test("device_monitor.ts ends with an error when its device does not exist", async () => {
  const t = setup({ once: true });
  try {
    await t.addScript("freezer", "device_monitor.ts");
    await t.put("meta/script/freezer/:code/types/device", "str/ref");
    await t.s.tasks.add("freezer", "h/freezer", { data: [["device", "device/nowhere"]] });
    await t.host.start();
    assertEquals(await endState(t, "h/freezer"), "error", t.dump());
    assertIncludes(
      (await t.store.get("/moat/status/run/h/freezer/:task/message"))?.value ?? "",
      'the node named by the data value "device" does not exist',
    );
  } finally {
    await t.close();
  }
});

Deno.test("shared_library.ts loads lib_units.ts with moat.load and uses its exports", async () => {
  const t = setup({ once: true });
  try {
    await t.addScript("lib/units", "lib_units.ts");
    await t.addScript("weather", "shared_library.ts");
    await t.s.tasks.add("weather", "h/weather");
    await t.host.start();
    assertEquals(await endState(t, "h/weather"), "ok", t.dump());
    assertEquals(t.lines("h/weather").filter((m) => m.includes("°")), [
      "32 °F is 0.0 °C",
      "70 °F is 21.1 °C",
      "212 °F is 100.0 °C",
      "body temperature: 98.6 °F",
    ]);
  } finally {
    await t.close();
  }
});

Deno.test("shared_library.ts without its library ends with an error naming it", async () => {
  const t = setup({ once: true });
  try {
    await t.addScript("weather", "shared_library.ts");
    await t.s.tasks.add("weather", "h/weather");
    await t.host.start();
    assertEquals(await endState(t, "h/weather"), "error", t.dump());
    assertIncludes(
      (await t.store.get("/moat/status/run/h/weather/:task/message"))?.value ?? "",
      'script "lib/units" does not exist',
    );
  } finally {
    await t.close();
  }
});

Deno.test("error_report.ts sets an error per low battery and clears those that are fine", async () => {
  const t = setup();
  try {
    await t.put("device/window/kitchen/battery", "80");
    await t.put("device/window/bath room/battery", "5");
    await t.put("device/window/attic/battery", "19");
    await t.put("device/window/attic/name", "attic window");
    await t.addScript("batteries", "error_report.ts");
    await t.put("meta/script/batteries/:code/types/sensors", "str/ref");
    await t.put("meta/script/batteries/:code/types/min", "int");
    await t.put("meta/script/batteries/:code/values/min", "20");
    await t.s.tasks.add("batteries", "h/batteries", { data: [["sensors", "device/window"]] });
    // An old record of a sensor whose battery has been replaced since.
    const records = new ErrorRecords(t.store, layout, new SystemClock());
    await records.set("h/batteries", "battery.kitchen", "battery of kitchen at 3 %");
    await t.host.start();
    await t.waitLine("h/batteries", (m) => m === "checked 3 sensors, 2 low", "the first check");
    const found = (await t.errors("h/batteries")).map((r) => [r.tag, r.msg, r.counter]);
    assertEquals(found, [
      ["battery.attic", "battery of attic at 19 %", 1],
      ["battery.bath_room", "battery of bath room at 5 %", 1],
    ]);
    assertEquals(
      await t.store.get("/moat/status/run/h/batteries/:task/error/battery.kitchen"),
      undefined,
    );
    assert(t.host.running.includes("h/batteries"), "it keeps running between checks");
  } finally {
    await t.close();
  }
});

Deno.test("error_report.ts records no_sensors when its node does not exist", async () => {
  const t = setup();
  try {
    await t.addScript("batteries", "error_report.ts");
    await t.put("meta/script/batteries/:code/types/sensors", "str/ref");
    await t.s.tasks.add("batteries", "h/batteries", { data: [["sensors", "device/none"]] });
    await t.host.start();
    await waitForKey(
      t.store,
      "/moat/status/run/h/batteries/:task/error/no_sensors",
      (v) => v !== undefined,
      WAIT_MS,
    );
    assertEquals(
      (await t.errors("h/batteries")).map((r) => r.msg),
      ['the node named by "sensors" does not exist'],
    );
  } finally {
    await t.close();
  }
});
