/**
 * Starts take turns (`spawnConcurrency`): a sandbox process and a group
 * member's Worker each hold one until ready, so that many starts at once
 * (a host's start) run in turn instead of all missing their ready timeout.
 * Real sandbox processes.
 */

import assert from "node:assert/strict";
import { stubMethods as makeStubs } from "./method_stubs.ts";
import { type MethodTable, SandboxPool, type ScriptHandle } from "./sandbox.ts";

/** Every limit far out of reach: no test here is about them. */
const FAR = { cpu: 10_000, cpuWindow: 60, heartbeat: 3_600 };

const methods: MethodTable = makeStubs({
  time_at: () => Promise.resolve(1_700_000_000),
  wait: () => Promise.resolve(1_700_000_000),
  run_at: () => Promise.resolve({ due: 1_700_000_000, late: false }),
  fired: () => Promise.resolve(null),
});

const UP = 'moat.setup();\nmoat.on_start(() => moat.logger.info("up"));\n';

Deno.test("with one turn at a time, group members and ungrouped scripts started at once all run", async () => {
  const tmpDir = await Deno.makeTempDir({ prefix: "moat-turns-test-" });
  const pool = new SandboxPool({ warm: 0, spawnConcurrency: 1, limits: FAR, tmpDir });
  const handles: ScriptHandle[] = [];
  try {
    const ups = new Set<string>();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const all = new Promise<void>((resolve, reject) => {
      timer = setTimeout(() => reject(new Error(`only ${[...ups]} up after 60 s`)), 60_000);
      const start = async (task: string, group?: string) => {
        const h = await pool.start({
          task,
          script: "up",
          code: UP,
          methods,
          ...(group === undefined ? {} : { group }),
          onLog: (_level, message) => {
            if (message !== "up") return;
            ups.add(task);
            if (ups.size === 7) resolve();
          },
        });
        handles.push(h);
      };
      // Five members of one group and two scripts of their own, all at once.
      for (let i = 0; i < 5; i++) start(`t/g${i}`, "g").catch(reject);
      for (let i = 0; i < 2; i++) start(`t/own${i}`).catch(reject);
    });
    try {
      await all;
    } finally {
      clearTimeout(timer);
    }
    assert.equal(ups.size, 7);
    const pids = new Set(handles.map((h) => h.pid));
    assert.equal(pids.size, 3, "the group's five share one process; the other two have one each");
  } finally {
    await Promise.all(handles.map((h) => h.kill("test over")));
    await pool.close();
    await Deno.remove(tmpDir, { recursive: true }).catch(() => {});
  }
});
