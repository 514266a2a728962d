/**
 * The one harness for host tests: a real `Host` named `h` on a
 * `MemoryStore` (wrapped in a `CountingStore` and a `StallingStore`, so
 * that a test can count store operations and stall the lease keep-alives),
 * a `VirtualClock` for the host and the store, a
 * `MemoryLogger`, and by default a `FakeIsolation`, so that the run
 * protocol runs in milliseconds without sandbox processes. Pass a
 * `SandboxPool` as `isolation` to run real scripts.
 *
 * @example
 * ```ts
 * import { hostHarness } from "./host_harness.ts";
 *
 * const h = hostHarness();
 * try {
 *   await h.scripts.add("s", "moat.setup();", { language: "javascript" });
 *   await h.tasks.add("s", "h/t");
 *   await h.host.start();
 *   const script = await h.isolation.next();
 *   script.end("ok");
 *   await h.waitStatus("h/t", "state", "ok");
 * } finally {
 *   await h.close();
 * }
 * ```
 *
 * @module
 */

import { MemoryStore } from "../store/memory_store.ts";
import { Layout, STATUS_KEYS } from "../layout.ts";
import { MemoryLogger } from "../log.ts";
import { Host } from "../tasks/host.ts";
import type { Transition } from "../tasks/task_runner.ts";
import { ScriptDefs } from "../scripts/definitions.ts";
import { TaskDefs } from "../tasks/task_defs.ts";
import type { Bus } from "../bus/bus.ts";
import { VirtualClock } from "../time/virtual_clock.ts";
import { FakeIsolation } from "./fake_isolation.ts";
import { StallingStore } from "./stalling_store.ts";
import { CountingStore } from "./counting_store.ts";
import type { Isolation } from "../bridge/sandbox.ts";

/** Options of {@linkcode hostHarness}. */
export interface HostHarnessOptions<I extends Isolation = FakeIsolation> {
  /** What runs the scripts. @default new FakeIsolation() */
  isolation?: I;
  /** The clock's start, Unix ms. @default 2026-01-05T07:00:00Z, a Monday */
  startMs?: number;
  /** Run each task once, without restarts. @default false */
  once?: boolean;
  /** The host's bus (the caller closes it). @default the host's own LocalBus */
  bus?: Bus;
}

/** What {@linkcode hostHarness} builds; `close()` ends it all. */
export interface HostHarness<I extends Isolation = FakeIsolation> {
  /** The store the host uses: a `StallingStore` over `counts` over `memory`. */
  store: StallingStore;
  /** Counts every store operation (of the host and of the test). */
  counts: CountingStore;
  /** The store below it. */
  memory: MemoryStore;
  /** The clock of the host and the store. */
  clock: VirtualClock;
  /** The keys below `/moat`. */
  layout: Layout;
  /** Everything the host and its scripts logged. */
  logger: MemoryLogger;
  /** What runs the scripts. */
  isolation: I;
  /** Script definitions, as the CLI writes them. */
  scripts: ScriptDefs;
  /** Task definitions, as the CLI writes them. */
  tasks: TaskDefs;
  /** The host, not started yet. */
  host: Host;
  /** Every transition the host published, in order. */
  transitions: Transition[];
  /** A status key of a task, or undefined. */
  status(task: string, key: keyof typeof STATUS_KEYS): Promise<string | undefined>;
  /** Wait (5 s of real time at most) until a status key of `task` has the value `want`. */
  waitStatus(task: string, key: keyof typeof STATUS_KEYS, want: string | undefined): Promise<void>;
  /**
   * Wait (5 s of real time at most) until the host logged `count` lines of
   * `task` matching `re` (@default 1); returns the `count`-th.
   */
  waitLog(task: string, re: RegExp, count?: number): Promise<string>;
  /** Close the host, the isolation and the store. */
  close(): Promise<void>;
}

/** Build a host harness; see the module doc. */
export function hostHarness<I extends Isolation = FakeIsolation>(
  options: HostHarnessOptions<I> = {},
): HostHarness<I> {
  const clock = new VirtualClock(options.startMs ?? Date.UTC(2026, 0, 5, 7));
  const memory = new MemoryStore({ clock });
  const counts = new CountingStore(memory);
  const store = new StallingStore(counts, clock);
  const layout = new Layout("/moat");
  const logger = new MemoryLogger();
  const isolation = options.isolation ?? (new FakeIsolation() as Isolation as I);
  const scripts = new ScriptDefs(store, layout, { clock });
  const tasks = new TaskDefs(store, layout, scripts);
  const transitions: Transition[] = [];
  const host = new Host({
    store,
    layout,
    hostName: "h",
    isolation,
    logger,
    clock,
    onTransition: (t) => transitions.push(t),
    ...(options.bus ? { bus: options.bus } : {}),
    ...(options.once ? { once: true } : {}),
  });
  const status = async (task: string, key: keyof typeof STATUS_KEYS) =>
    (await store.get(layout.statusDir(task) + STATUS_KEYS[key]))?.value;
  const until = async (ok: () => Promise<boolean> | boolean, what: string) => {
    const deadline = Date.now() + 5000;
    while (!await ok()) {
      if (Date.now() > deadline) {
        const log = logger.lines.map((l) => `${l.source} ${l.message}`).join("\n");
        throw new Error(`timed out after 5 s waiting for ${what}; log:\n${log}`);
      }
      await new Promise((r) => setTimeout(r, 2));
    }
  };
  return {
    store,
    counts,
    memory,
    clock,
    layout,
    logger,
    isolation,
    scripts,
    tasks,
    host,
    transitions,
    status,
    waitStatus: (task, key, want) =>
      until(async () => await status(task, key) === want, `${task} ${key} = ${want}`),
    async waitLog(task, re, count = 1) {
      let found: string[] = [];
      await until(() => {
        found = logger.lines.filter((l) => l.source === task && re.test(l.message))
          .map((l) => l.message);
        return found.length >= count;
      }, `${task} to log ${re} ${count} times`);
      return found[count - 1]!;
    },
    async close() {
      await host.close();
      await isolation.close();
      await store.close();
    },
  };
}
