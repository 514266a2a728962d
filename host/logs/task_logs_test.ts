import assert from "node:assert/strict";
import { TaskLogs } from "./task_logs.ts";
import { MemoryLogger } from "../log.ts";
import { LocalBus } from "../bus/local_bus.ts";
import { LogReader } from "./log_reader.ts";
import { asLogLine } from "./log_line.ts";
import type { Bus } from "../bus/bus.ts";

Deno.test("task lines are kept, published, and answered; host lines only logged", async () => {
  const bus = new LocalBus();
  const inner = new MemoryLogger();
  const logs = new TaskLogs({ host: "h1", inner, pid: 7, now: () => 1000 });
  try {
    await logs.serve(bus);
    const live: unknown[] = [];
    const reg = await bus.onAlert("moat.log.#", (_t, d) => void live.push(d));
    logs.log("info", "host", "a host line");
    logs.log("debug", "h1/a", "below the level");
    logs.log("warn", "h1/a", "a task line");
    assert.equal(inner.lines.length, 3);
    const reader = await LogReader.open(bus, "h1/a");
    const h = await reader.history({ hosts: ["h1"], processes: [] }, 10, 60_000, 0);
    assert.deepEqual(h.missing, []);
    assert.deepEqual(h.lines.map((l) => [l.task, l.level, l.message, l.pid]), [
      ["h1/a", "warn", "a task line", 7],
    ]);
    await reader.close();
    await reg.close();
    assert.deepEqual(live.map((d) => asLogLine(d)?.message), ["a task line"]);
  } finally {
    await logs.close();
    await bus.close();
  }
});

Deno.test("a slow broker drops lines from publishing and counts them; logging never waits", async () => {
  const inner = new MemoryLogger();
  let release!: () => void;
  const stuck = new Promise<void>((r) => release = r);
  const sent: unknown[] = [];
  const four = Promise.withResolvers<void>();
  // A bus whose publish hangs until released: the broker is slow.
  const local = new LocalBus();
  const bus: Bus = {
    serve: (n, h, o) => local.serve(n, h, o),
    call: (n, a, o) => local.call(n, a, o),
    onAlert: (p, h) => local.onAlert(p, h),
    alert: async (_t, d) => {
      await stuck;
      sent.push(d);
      if (sent.length === 4) four.resolve();
    },
    group: (o) => local.group(o),
    connected: true,
    onState: (l) => local.onState(l),
    close: () => local.close(),
  };
  const logs = new TaskLogs({ host: "h1", inner, queue: 3 });
  try {
    await logs.serve(bus);
    for (let i = 0; i < 10; i++) logs.log("info", "h1/a", `line ${i}`);
    // One is in flight, three wait: six are dropped, and all ten are kept.
    assert.equal(logs.dropped, 6);
    assert.equal(logs.ring.lines("h1/a").length, 10);
    release();
    await inner.waitFor((l) => l.message.includes("6 lines were not published"));
    await four.promise;
    assert.deepEqual(sent.map((d) => asLogLine(d)?.message), [
      "line 0",
      "line 1",
      "line 2",
      "line 3",
    ]);
  } finally {
    await logs.close();
    await local.close();
  }
});
