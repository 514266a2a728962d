/**
 * `moat.time_at`, `moat.wait` and `moat.run_at` through real scripts on a
 * real host: every argument form of the spec (one string, an array,
 * separate arguments, options alone), and sun events at the installation's
 * `/config/location`, which the host reads and follows.
 */

import { assertEquals } from "../_util/assert.ts";
import { withTimeout } from "../_util/wait.ts";
import { hostHarness } from "../_util/host_harness.ts";
import { timeAt } from "../../host/time/time_at.ts";

/** 2026-03-29T14:40:00Z, a Sunday (the day Berlin's clocks go forward); in the past. */
const N = 1_774_795_200;
const ZONE = "Europe/Berlin";

const SCRIPT = `
moat.setup();
const N = ${N};
const out = {};
out.string = await moat.time_at("12 hr 10 min", { now: N, current: true });
out.array = await moat.time_at(["12", "hr", 10, "min"], { now: N, current: true });
out.separate = await moat.time_at("12", "hr", "10", "min", { now: N, current: true });
out.separateNumbers = await moat.time_at(12, "hr", 10, "min", { now: N, current: true });
out.separateNext = await moat.time_at("12", "hr", "10", "min", { now: N });
out.optionsOnly = await moat.time_at({ now: N });
out.waitOptionsOnly = await moat.wait({ now: N });
out.waitString = await moat.wait("12 hr 10 min", { now: N, current: true });
out.waitArray = await moat.wait(["12", "hr", 10, "min"], { now: N, current: true });
out.waitSeparate = await moat.wait("12", "hr", "10", "min", { now: N, current: true });
try {
  out.sunset = await moat.time_at("30", "min", "before", "sunset", { now: N, current: true });
  out.sunsetWait = await moat.wait("30 min before sunset", { now: N, current: true });
} catch (e) {
  out.sunsetError = e.code + ": " + e.message;
}
const fired = [];
await new Promise((resolve) => {
  const done = (name) => () => {
    fired.push(name);
    if (fired.length === 4) resolve();
  };
  moat.run_at("12", "hr", "10", "min", done("separate"), { now: N, current: true });
  moat.run_at(["12", "hr", 10, "min"], done("array"), { now: N, current: true });
  moat.run_at("12 hr 10 min", done("string"), { now: N, current: true });
  moat.run_at({ now: N }, done("options"));
});
out.fired = fired.sort();
moat.logger.info("result " + JSON.stringify(out));
moat.end();
`;

/** Run the script as task h1/NAME and return what it logged. */
async function runTask(
  t: ReturnType<typeof hostHarness>,
  name: string,
): Promise<Record<string, unknown>> {
  await t.s.tasks.add("forms", `h1/${name}`);
  const line = (l: { source: string; message: string }) =>
    l.source === `h1/${name}` && l.message.startsWith("result ");
  await withTimeout(t.logger.waitFor(line), 60_000, `task ${name} to log its result`);
  return JSON.parse(t.logger.lines.find(line)!.message.slice("result ".length));
}

Deno.test("every argument form of time_at, wait and run_at works in a real script, and sun specs follow /config/location", async () => {
  const t = hostHarness({ hostName: "h1" });
  try {
    await t.store.put("/moat/config/timezone", ZONE);
    await t.store.put("/moat/config/location", "52.52 13.405");
    await t.s.scripts.add("forms", SCRIPT, { language: "javascript" });
    await t.host.start();

    const tenPast = timeAt("12 hr 10 min", { now: N, current: true, zone: ZONE });
    const nextDay = timeAt("12 hr 10 min", { now: N, zone: ZONE });
    const sunset = (latitude: number, longitude: number) =>
      timeAt("30 min before sunset", {
        now: N,
        current: true,
        zone: ZONE,
        location: { latitude, longitude },
      });
    const forms = {
      string: tenPast,
      array: tenPast,
      separate: tenPast,
      separateNumbers: tenPast,
      separateNext: nextDay,
      optionsOnly: N,
      waitOptionsOnly: N,
      waitString: tenPast,
      waitArray: tenPast,
      waitSeparate: tenPast,
      fired: ["array", "options", "separate", "string"],
    };

    const berlin = await runTask(t, "berlin");
    assertEquals(berlin, {
      ...forms,
      sunset: sunset(52.52, 13.405),
      sunsetWait: sunset(52.52, 13.405),
    });

    // A new location reaches the next run through the host's watch.
    await t.store.put("/moat/config/location", "69.6492 18.9553");
    assertEquals(await runTask(t, "tromso"), {
      ...forms,
      sunset: sunset(69.6492, 18.9553),
      sunsetWait: sunset(69.6492, 18.9553),
    });

    await t.store.delete("/moat/config/location");
    const none = await runTask(t, "nowhere");
    assertEquals(
      none.sunsetError,
      'time_spec: Cannot evaluate time spec "30 min before sunset": "sunset" needs the ' +
        'installation\'s location; set /config/location to "LAT LON", e.g. "52.52 13.405"',
    );
    assertEquals(none.string, tenPast);

    await t.store.put("/moat/config/location", "north");
    const bad = await runTask(t, "bad");
    assertEquals(
      bad.sunsetError,
      'time_spec: /config/location: Cannot use location "north": expected "LAT LON" in ' +
        'decimal degrees, e.g. "52.52 13.405"',
    );
  } finally {
    await t.close();
  }
});
