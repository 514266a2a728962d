/**
 * Catch-up under `moat script try` (issue 21): 100 schedules with ids in
 * one task, half `run_at`, half loops of `wait`, over a simulated day with
 * the script stopped and started again in the middle (`--events`). Every
 * schedule fires exactly once per due time; those missed before the first
 * start and while the script was stopped fire late, marked so in the trace.
 * The CLI as a user runs it.
 */

import { assert, assertEquals } from "../_util/assert.ts";
import { runMoat } from "../_util/cli.ts";

const SCHEDULES = 100;
const CATCH_UP = 3600;
const START = Date.UTC(2026, 2, 2, 0, 30) / 1000;
const END = START + 86400;
const STOP = Date.UTC(2026, 2, 2, 10, 0) / 1000;
const RESUME = Date.UTC(2026, 2, 2, 10, 30) / 1000;

const hour = (i: number) => i % 24;
const minute = (i: number) => (i * 7) % 60;

const SCRIPT = `moat.setup();
moat.run(async () => {
  for (let i = 0; i < ${SCHEDULES}; i++) {
    const spec = (i % 24) + " hr " + ((i * 7) % 60) + " min";
    const id = "s" + i;
    const options = { id, catch_up: ${CATCH_UP} };
    if (i % 2 === 0) {
      const arm = () =>
        moat.run_at(spec, ({ due, late }) => {
          moat.logger.info("RAN " + id + " " + due + " " + late);
          arm();
        }, options);
      arm();
    } else {
      (async () => {
        for (;;) {
          const due = await moat.wait(spec, options);
          moat.logger.info("RAN " + id + " " + due + " -");
        }
      })();
    }
  }
  await moat.stopping;
});
`;

/** Every firing that must happen: each schedule's daily due times from START - CATCH_UP to END. */
function expected(): Map<string, boolean> {
  const out = new Map<string, boolean>();
  for (let i = 0; i < SCHEDULES; i++) {
    for (let day = -1; day <= 1; day++) {
      const d = Date.UTC(2026, 2, 2 + day, hour(i), minute(i)) / 1000;
      if (d < START - CATCH_UP || d > END) continue;
      // Missed before the first start, or while the script was stopped: late.
      out.set(`s${i} ${d}`, d < START || (d > STOP && d < RESUME));
    }
  }
  return out;
}

Deno.test("100 schedules with ids in one task each fire once per due time over a simulated day, late ones marked", async () => {
  const dir = await Deno.makeTempDir({ prefix: "moat-try-sched-" });
  try {
    await Deno.writeTextFile(`${dir}/script.js`, SCRIPT);
    await Deno.writeTextFile(
      `${dir}/events.json`,
      JSON.stringify([{ at: STOP, stop: true }, { at: RESUME, start: true }]),
    );
    const r = await runMoat([
      "script",
      "try",
      `${dir}/script.js`,
      "--at",
      String(START),
      "--for",
      "1d",
      "--tz",
      "UTC",
      "--events",
      `${dir}/events.json`,
    ], { env: { TMPDIR: dir } });
    assertEquals(r.code, 0, r.stderr + r.stdout.slice(-3000));
    const lines = r.stdout.trimEnd().split("\n");
    assert(lines.some((l) => / stop +stopping the script/.test(l)), r.stdout.slice(-3000));
    assert(lines.some((l) => / start +starting the script again/.test(l)), r.stdout.slice(-3000));

    // The trace's "fire" lines: one per firing, "late (catch-up)" when late.
    const fired = new Map<string, boolean[]>();
    for (const l of lines) {
      const m = / fire +(s\d+) due (\S+)( late \(catch-up\))?$/.exec(l);
      if (!m) continue;
      const key = `${m[1]} ${Date.parse(m[2]!) / 1000}`;
      fired.set(key, [...(fired.get(key) ?? []), m[3] !== undefined]);
    }
    const want = expected();
    const lateCount = [...want.values()].filter((x) => x).length;
    assert(lateCount >= 4, `the scenario has late firings (${lateCount})`);
    for (const [key, late] of want) {
      assertEquals(fired.get(key), [late], `${key}: fires once, late=${late}`);
    }
    for (const key of fired.keys()) assert(want.has(key), `${key} fired, but is not due`);

    // The script saw the same: one RAN line per firing, run_at callbacks with late.
    const ran = new Map<string, number>();
    for (const l of lines) {
      const m = / info +RAN (s\d+) (\d+) (true|false|-)$/.exec(l);
      if (!m) continue;
      const key = `${m[1]} ${m[2]}`;
      ran.set(key, (ran.get(key) ?? 0) + 1);
      if (m[3] !== "-") assertEquals(m[3] === "true", want.get(key), `${key}: late argument`);
    }
    for (const key of want.keys()) assertEquals(ran.get(key), 1, `${key}: the script ran once`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
