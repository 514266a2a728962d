import { assertEquals } from "../testing/assert.ts";
import { shownState } from "./status.ts";

const m = (o: Record<string, string>) => new Map(Object.entries(o));

Deno.test("a task with a running key shows run and who runs it", () => {
  const r = shownState("h/a", m({ running: '{"host":"h","pid":7,"id":"x"}', started: "100" }));
  assertEquals([r.state, r.since, r.runner], ["run", 100, "h pid 7"]);
});

Deno.test("a task that ended shows its state and message since it stopped", () => {
  const r = shownState(
    "h/a",
    m({ started: "100", stopped: "105", state: "error", message: "boom" }),
  );
  assertEquals([r.state, r.since, r.message], ["error", 105, "boom"]);
});

Deno.test("a task started but neither running nor stopped shows crash", () => {
  assertEquals(shownState("h/a", m({ started: "100" })).state, "crash");
  assertEquals(
    shownState("h/a", m({ started: "200", stopped: "105", state: "ok" })).state,
    "crash",
  );
});

Deno.test("a task that never ran shows new", () => {
  assertEquals(shownState("h/a", m({})).state, "new");
});
