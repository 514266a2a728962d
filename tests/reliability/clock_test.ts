/**
 * Scenario 7: the wall clock jumps forward (not far enough), back, and
 * forward again past the target, while real scripts in real sandboxes wait.
 * A virtual clock drives the host and the store. No wait fires early, none
 * is lost, and each fires once.
 */

import { assertEquals } from "../_util/assert.ts";
import { quietPeriod, withTimeout } from "../_util/wait.ts";
import { hostHarness } from "../_util/host_harness.ts";
import { VirtualClock } from "../../host/time/virtual_clock.ts";
import { SOAK } from "./_harness.ts";

const T0 = Date.UTC(2025, 0, 6, 12, 0, 0);
const HOUR = 3_600_000;
/** Waits of the tasks, as offsets from T0. */
const OFFSETS = SOAK ? [1, 2, 3, 4, 5, 6] : [1, 2, 3];

const WAITER = `moat.setup();
moat.run(async () => {
  const target = Number(moat.data.get("at"));
  const reached = await moat.wait({ now: target });
  moat.logger.info("WOKE " + target + " " + reached);
});
`;

Deno.test("clock jumps forward and back neither fire waits early nor lose them", async () => {
  const clock = new VirtualClock(T0);
  const { store, logger, s, host, close } = hostHarness({ clock });
  // Leases far longer than the jumps: this is about waits, not lease expiry.
  await store.put("/moat/config/run/ttl", String(100 * 24 * 3600));
  await store.put("/moat/config/run/restart", "0");
  await s.scripts.add("waiter", WAITER, { language: "javascript" });
  const targets = OFFSETS.map((h) => (T0 + h * HOUR) / 1000);
  for (const [i, at] of targets.entries()) {
    await s.tasks.add("waiter", `h/w${i}`, { data: [["at", String(at)]] });
  }
  const woke = () =>
    logger.lines.filter((l) => l.message.startsWith("WOKE ")).map((l) => {
      const [, target, reached] = l.message.split(" ");
      return { task: l.source, target: Number(target), reached: Number(reached) };
    });
  /** Every wait is pending at the clock (besides the store's own sleeps). */
  const waitsPending = async (n: number) => {
    await withTimeout(
      (async () => {
        while (true) {
          if (clock.pendingSleeps >= n) return;
          await new Promise((r) => setTimeout(r, 20));
        }
      })(),
      60_000,
      `${n} pending waits`,
    );
  };
  /**
   * Give the sandboxes a moment to answer whatever a jump woke (a quiet
   * period: it proves that nothing more fires), then return what woke.
   */
  const afterJump = async () => {
    await quietPeriod(500);
    return woke();
  };
  /** Wait until `n` waits have fired, at most 60 s. */
  const wokeCount = (n: number, what: string) =>
    withTimeout(logger.waitFor(() => woke().length >= n), 60_000, what);
  try {
    await host.start();
    await waitsPending(targets.length);

    // Forward, but short of the first target (by 100 ms).
    await clock.set(targets[0]! * 1000 - 100);
    assertEquals(await afterJump(), [], "no wait fires before its time");
    // Back, far: nothing fires, nothing is lost.
    await clock.set(T0 - 24 * HOUR);
    assertEquals(await afterJump(), [], "a backward jump fires nothing");
    // Forward past the first target only.
    await clock.set(targets[0]! * 1000 + 1);
    await wokeCount(1, "the first wait to fire").catch((e) => {
      throw new Error(`${e.message}; log:\n${logger.lines.map((l) => l.message).join("\n")}`);
    });
    assertEquals((await afterJump()).map((w) => w.task), ["h/w0"]);
    // Back again, below T0: the later waits stay pending.
    await clock.set(T0 - HOUR);
    assertEquals((await afterJump()).length, 1);
    // Far forward, past every target: each remaining wait fires once.
    await clock.set(T0 + 100 * HOUR);
    await wokeCount(targets.length, "every wait to fire");
    const all = await afterJump();
    assertEquals(all.length, targets.length, "each wait fired exactly once");
    for (const w of all) {
      assertEquals(w.reached, w.target, `${w.task} reports its target`);
    }
    assertEquals(new Set(all.map((w) => w.task)).size, targets.length);
  } finally {
    await close();
  }
});
