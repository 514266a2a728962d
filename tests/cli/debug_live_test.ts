/**
 * `moat debug` shows each debug object as it is when asked, not as it was
 * when the script registered it: against a real `moat run` host over etcd
 * and the real RabbitMQ, a script changes its object many times, then
 * through values it reads live, then beyond the `value_size` quota.
 */

import { assert, assertEquals } from "../_util/assert.ts";
import { runMoat, spawnMoat } from "../_util/cli.ts";
import { withTimeout } from "../_util/wait.ts";
import { startMoatServices } from "../_util/moat_services.ts";

/** A script whose debug object changes after it was registered. */
const LIVE = `moat.setup();
const state = {
  hits: 0,
  get who() { return moat.data.get("who"); },
  get blob() { return "x".repeat(Number(moat.data.get("grow") ?? 0)); },
};
moat.debug_obj(state);
for (let i = 0; i < 1000; i++) state.hits++;
moat.logger.info("counted " + state.hits);
`;

Deno.test("moat debug shows a debug object as it is at the time of the call", async () => {
  const services = await startMoatServices("moat-debug-live-");
  const { dir } = services;
  const env = services.env("live");
  const moat = (...a: string[]) => runMoat(a, { env });
  /** `moat debug live/counter`, parsed: the task's debug object. */
  const debug = async (): Promise<Record<string, unknown> | undefined> => {
    const r = await moat("debug", "--timeout", "60", "live/counter");
    assertEquals(r.code, 0, r.stderr);
    const answer = JSON.parse(r.stdout) as { task: { script: Record<string, unknown> } };
    return answer.task.script["live/counter"] as Record<string, unknown> | undefined;
  };
  /** Ask until `pred` holds (the host learns of a changed value through its watch). */
  const debugUntil = async (pred: (v: Record<string, unknown> | undefined) => boolean) => {
    const deadline = Date.now() + 60_000;
    for (;;) {
      const v = await debug();
      if (pred(v)) return v;
      assert(Date.now() < deadline, `moat debug still shows ${JSON.stringify(v)}`);
    }
  };
  const host = spawnMoat(["run"], { env });
  try {
    await Deno.writeTextFile(`${dir}/live.js`, LIVE);
    assertEquals((await moat("script", "def", "add", "live", `${dir}/live.js`)).code, 0);
    const added = await moat("script", "add", "live", "live/counter", "who=Alice", "grow=0");
    assertEquals(added.code, 0, added.stderr);
    await host.waitForLine((l) => l.includes("[live/counter] counted 1000"), 60_000, "counting");

    // Registered at 0, changed 1000 times since.
    assertEquals(await debug(), { hits: 1000, who: "Alice", blob: "" });
    // --json is accepted, as on every command that prints data: the same JSON.
    const asJson = await moat("debug", "--json", "--timeout", "60", "live/counter");
    assertEquals(asJson.code, 0, asJson.stderr);
    assertEquals(JSON.parse(asJson.stdout), {
      task: { script: { "live/counter": { hits: 1000, who: "Alice", blob: "" } } },
    });

    // A value the object reads live, changed from outside.
    assertEquals((await moat("script", "param", "live/counter", "who=Bob")).code, 0);
    const bob = await debugUntil((v) => v?.who === "Bob");
    assertEquals(bob, { hits: 1000, who: "Bob", blob: "" });

    // Grown beyond value_size (64 KiB): a note says why, and the script runs on.
    assertEquals((await moat("script", "param", "live/counter", "grow=70000")).code, 0);
    const note = await debugUntil((v) => typeof v === "string");
    assert(
      /^\[the debug object cannot be shown: .*quota value_size = 65536/.test(String(note)),
      String(note),
    );
    const status = await moat("status", "live/counter");
    assertEquals(status.code, 0, status.stderr);
    assert(/live\/counter\s+run\b/.test(status.stdout), status.stdout);

    // And back within the quota, it shows again.
    assertEquals((await moat("script", "param", "live/counter", "grow=3")).code, 0);
    const back = await debugUntil((v) => typeof v === "object" && v?.blob === "xxx");
    assertEquals(back, { hits: 1000, who: "Bob", blob: "xxx" });
  } finally {
    host.kill("SIGTERM");
    await withTimeout(host.status, 60_000, "the host to stop");
    await services.stop();
  }
});
