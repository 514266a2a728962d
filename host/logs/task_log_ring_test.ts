import assert from "node:assert/strict";
import { TaskLogRing } from "./task_log_ring.ts";
import type { LogLine } from "./log_line.ts";

function line(task: string, seq: number): LogLine {
  return { task, level: "info", time: seq, message: `m${seq}`, host: "h", pid: 1, seq };
}

Deno.test("a task's ring keeps its last lines, oldest first", () => {
  const ring = new TaskLogRing({ lines: 3 });
  for (let i = 1; i <= 5; i++) ring.add(line("h/a", i));
  assert.deepEqual(ring.lines("h/a").map((l) => l.seq), [3, 4, 5]);
  assert.deepEqual(ring.lines("h/a", 2).map((l) => l.seq), [4, 5]);
});

Deno.test("lines are selected by tree path, not by string prefix", () => {
  const ring = new TaskLogRing();
  ring.add(line("h/porch", 1));
  ring.add(line("h/porch/light", 2));
  ring.add(line("h/porchsvc", 3));
  assert.deepEqual(ring.lines("h/porch").map((l) => l.seq).sort(), [1, 2]);
  assert.equal(ring.lines("").length, 3);
});

Deno.test("the ring keeps at most its number of tasks, dropping the least recently written", () => {
  const ring = new TaskLogRing({ tasks: 2 });
  ring.add(line("h/a", 1));
  ring.add(line("h/b", 2));
  ring.add(line("h/a", 3));
  ring.add(line("h/c", 4));
  assert.deepEqual(ring.lines("").map((l) => l.task).sort(), ["h/a", "h/a", "h/c"]);
});

Deno.test("a ring of no lines is refused", () => {
  assert.throws(() => new TaskLogRing({ lines: 0 }), RangeError);
});
