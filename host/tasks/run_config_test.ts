import { assert, assertEquals } from "../testing/assert.ts";
import {
  checkSetting,
  isSettingKey,
  nextDelay,
  quickEndDelay,
  readGroup,
  runConfig,
  settingRows,
  SETTINGS,
} from "./run_config.ts";

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

Deno.test("settingRows shows each setting's value in force and where it comes from", () => {
  const rows = new Map(
    settingRows({ retry: "3", memory: "256", cpu: "lots" }, { retry: "5", restart: "0" })
      .map((r) => [r.key, r]),
  );
  assertEquals([rows.get("retry")?.value, rows.get("retry")?.source], [5, "task"]);
  assertEquals(rows.get("retry")?.global, "3");
  assertEquals([rows.get("restart")?.value, rows.get("restart")?.source], [0, "task"]);
  assertEquals([rows.get("ttl")?.value, rows.get("ttl")?.source], [30, "default"]);
  assertEquals([rows.get("memory")?.value, rows.get("memory")?.source], [256, "/config/run"]);
  assertEquals(rows.get("memory")?.kind, "limit");
  assertEquals([rows.get("cpu")?.value, rows.get("cpu")?.source], [5, "default"]);
  assertEquals(rows.get("cpu")?.ignored, ['/config/run cpu = "lots": not a number >= 0.05']);
  assertEquals(rows.get("value_size")?.kind, "quota");
  assertEquals(rows.get("queue_ttl")?.installWide, true);
  assertEquals(rows.size, SETTINGS.length);
});

Deno.test("settingRows does not count an install-wide quota set on the task", () => {
  const row = settingRows({}, { queue_length: "5" }).find((r) => r.key === "queue_length")!;
  assertEquals([row.value, row.source, row.task], [10000, "default", "5"]);
  assertEquals(row.ignored.length, 1);
});

Deno.test("checkSetting refuses what the host would ignore, naming the key", () => {
  checkSetting("restart", "0");
  checkSetting("cpu", "0.5");
  checkSetting("value_size", "131072");
  const message = (key: string, text: string) => {
    try {
      checkSetting(key, text);
    } catch (e) {
      assertEquals((e as Error).name, "RangeError");
      return (e as Error).message;
    }
    throw new Error(`${key} = ${text} was accepted`);
  };
  assertEquals(
    message("restart", "soon"),
    'cannot set restart = "soon": not a non-negative number',
  );
  assertEquals(message("memory", "1"), 'cannot set memory = "1": not a number >= 32');
  assertEquals(
    message("queue_ttl", "5"),
    'cannot set queue_ttl = "5": queue_ttl can only be set in /config/run',
  );
  assert(message("colour", "red").startsWith('unknown setting "colour"; the settings are ttl,'));
  assert(isSettingKey("max_retry") && !isSettingKey("colour"));
});

Deno.test("the group is the task's own, a name or none; /config/run cannot set it", () => {
  const warnings: string[] = [];
  assertEquals(readGroup({}, {}), undefined);
  assertEquals(readGroup({}, { group: "kitchen.lights-2_b" }), "kitchen.lights-2_b");
  assertEquals(readGroup({ group: "all" }, {}, (m) => warnings.push(m)), undefined);
  assertEquals(readGroup({}, { group: "two words" }, (m) => warnings.push(m)), undefined);
  assertEquals(readGroup({}, { group: "x".repeat(65) }, (m) => warnings.push(m)), undefined);
  assertEquals(warnings.length, 3);
  assertEquals(warnings[0], 'ignoring /config/run group = "all": group can only be set per task');
  assert(isSettingKey("group"));
  checkSetting("group", "g1");
  for (const bad of ["", "a/b", "x".repeat(65)]) {
    let threw = false;
    try {
      checkSetting("group", bad);
    } catch (e) {
      threw = e instanceof RangeError && /cannot set group/.test(e.message);
    }
    assert(threw, `group = "${bad}" was accepted`);
  }
  const row = settingRows({}, { group: "g1" }).find((r) => r.key === "group")!;
  assertEquals([row.value, row.source, row.default, row.kind], ["g1", "task", "", "run"]);
  const none = settingRows({ group: "all" }, {}).find((r) => r.key === "group")!;
  assertEquals([none.value, none.source], ["", "default"]);
});
