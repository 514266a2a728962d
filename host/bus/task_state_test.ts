import { assertEquals } from "../testing/assert.ts";
import { withQbrokerTaskFields } from "./task_state.ts";

const base = { task: "h/a", host: "h", time: 1 };

Deno.test("task state alerts carry qbroker's state names, moat-scripts' in status", () => {
  assertEquals(withQbrokerTaskFields("moat.task.h.a", { ...base, state: "start" }), {
    ...base,
    state: "start",
    status: "start",
    reason: null,
    parent: null,
    result: null,
  });
  assertEquals(
    withQbrokerTaskFields("moat.task.h.a", { ...base, state: "ok", message: "ended" }),
    {
      ...base,
      state: "done",
      status: "ok",
      message: "ended",
      reason: "ended",
      parent: null,
      result: null,
    },
  );
  for (const s of ["error", "fail"]) {
    const out = withQbrokerTaskFields("moat.task.h.a", { ...base, state: s, message: "m" });
    assertEquals((out as { state: string; status: string }).state, s);
    assertEquals((out as { state: string; status: string }).status, s);
  }
});

Deno.test("other alerts, and bodies that are not the hosts' transitions, pass unchanged", () => {
  const odd = { ...base, state: "done" };
  assertEquals(withQbrokerTaskFields("moat.task.h.a", odd), odd);
  assertEquals(withQbrokerTaskFields("moat.task.h.a", { state: "ok" }), { state: "ok" });
  assertEquals(withQbrokerTaskFields("moat.task.h.a", [1]), [1]);
  assertEquals(withQbrokerTaskFields("moat.task.h.a", "x"), "x");
  const other = { ...base, state: "ok" };
  assertEquals(withQbrokerTaskFields("lamp.on", other), other);
});
