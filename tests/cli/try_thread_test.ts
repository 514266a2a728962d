/**
 * `moat.thread` under `moat script try`: virtual time stands still while a
 * thread computes, as it does while a call to the host is in flight, so a
 * timer due during the computation fires after it, at its virtual time.
 * The CLI as a user runs it.
 */

import { assert, assertEquals } from "../_util/assert.ts";
import { runMoat } from "../_util/cli.ts";

Deno.test("under try, virtual time waits for a thread and its timers fire after it", async () => {
  const dir = await Deno.makeTempDir({ prefix: "moat-try-thread-" });
  try {
    await Deno.writeTextFile(
      `${dir}/script.ts`,
      `moat.setup();
setTimeout(() => moat.logger.info("timer at " + new Date().toISOString()), 1000);
moat.run(async () => {
  // Real time in the thread: it computes for 1.5 s of it.
  const spent = await moat.thread((ms: number) => {
    const t0 = Date.now();
    while (Date.now() - t0 < ms) { /* compute */ }
    return Date.now() - t0;
  }, 1500);
  moat.logger.info("thread done at " + new Date().toISOString() + " after " + (spent >= 1500));
  await new Promise((r) => setTimeout(r, 2000));
});
`,
    );
    const r = await runMoat([
      "script",
      "try",
      `${dir}/script.ts`,
      "--at",
      "2026-03-02T12:00",
      "--tz",
      "UTC",
      "--for",
      "1h",
    ]);
    assertEquals(r.code, 0, r.stderr);
    const lines = r.stdout.trimEnd().split("\n");
    const done = lines.findIndex((l) =>
      l === "2026-03-02T12:00:00+00:00 info  thread done at 2026-03-02T12:00:00.000Z after true"
    );
    const timer = lines.findIndex((l) =>
      l === "2026-03-02T12:00:01+00:00 info  timer at 2026-03-02T12:00:01.000Z"
    );
    assert(done >= 0 && timer > done, r.stdout);
    assert(lines.some((l) => l.includes("ended: ok: run function returned")), r.stdout);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
