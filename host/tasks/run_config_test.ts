import { assertEquals } from "../testing/assert.ts";
import { nextDelay, quickEndDelay, runConfig } from "./run_config.ts";

Deno.test("runConfig takes the defaults, then /config/run, then the task's own values", () => {
  assertEquals(runConfig({}, {}), { ttl: 30, refresh: 2, restart: 2, retry: 1, max_retry: 600 });
  assertEquals(
    runConfig({ ttl: "10", retry: "3" }, { retry: "5", restart: "0" }),
    { ttl: 10, refresh: 2, restart: 0, retry: 5, max_retry: 600 },
  );
});

Deno.test("runConfig ignores values that are not non-negative numbers and says so", () => {
  const warnings: string[] = [];
  const c = runConfig({ ttl: "soon" }, { retry: "-1" }, (m) => warnings.push(m));
  assertEquals(c.ttl, 30);
  assertEquals(c.retry, 1);
  assertEquals(warnings, [
    'ignoring /config/run ttl = "soon": not a non-negative number',
    'ignoring task retry = "-1": not a non-negative number',
  ]);
});

Deno.test("nextDelay restarts after restart seconds and never when it is 0", () => {
  const c = runConfig({}, {});
  assertEquals(nextDelay(c, "ok", 0), 2);
  assertEquals(nextDelay({ ...c, restart: 0 }, "ok", 0), undefined);
});

Deno.test("nextDelay grows the retry by 1.1 per consecutive failure up to max_retry", () => {
  const c = runConfig({ retry: "10", max_retry: "12" }, {});
  assertEquals(nextDelay(c, "error", 1), 10);
  assertEquals(nextDelay(c, "fail", 2), 10 * 1.1);
  assertEquals(nextDelay(c, "fail", 3), 12);
  assertEquals(nextDelay(c, "fail", 30), 12);
  assertEquals(nextDelay({ ...c, max_retry: 0 }, "error", 1), undefined);
});

Deno.test("quickEndDelay doubles the pause for every quick end in a row, up to max_retry", () => {
  const c = runConfig({}, {});
  assertEquals(quickEndDelay(c, 2, 0), 2);
  assertEquals(quickEndDelay(c, 2, 1), 2);
  assertEquals(quickEndDelay(c, 2, 2), 4);
  assertEquals(quickEndDelay(c, 2, 5), 32);
  assertEquals(quickEndDelay(c, 2, 50), 600);
  // retry 0 must not become a tight loop: the back-off starts at 1 s.
  assertEquals(quickEndDelay({ ...c, retry: 0 }, 0, 3), 4);
  // max_retry 0 (failures never retried) still bounds a restart loop.
  assertEquals(quickEndDelay({ ...c, max_retry: 0 }, 2, 40), 600);
  // A restart longer than max_retry is never shortened.
  assertEquals(quickEndDelay({ ...c, max_retry: 5 }, 60, 4), 60);
});
