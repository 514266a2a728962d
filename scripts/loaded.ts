/**
 * `deno task test:loaded`: the whole suite (`deno task test`) beside two
 * busy-loop processes, as on a machine that is doing other work. A test
 * that holds only on an idle machine fails here.
 *
 * The busy loops are bounded three ways: they are killed when the suite
 * ends (or this script is interrupted), each exits by itself once this
 * script's process is gone, and each exits by itself after at most
 * {@linkcode BUSY_MAX_MS} whatever happens. Exits with the suite's status.
 *
 * Run: `deno task test:loaded [FILE|FOLDER…]` (arguments go to `deno task test`,
 * which it runs as that task does: scripts/run_tests.ts).
 *
 * @module
 */

/** The number of busy-loop processes. */
export const BUSY_PROCESSES = 2;

/** The longest a busy loop lives, ms (45 minutes). */
export const BUSY_MAX_MS = 45 * 60 * 1000;

/**
 * One busy loop: spins until `BUSY_MAX_MS` passed or its parent (this
 * script, by pid) is gone, checking the parent about every 100 ms.
 */
function busyLoopSource(parent: number): string {
  return `
const end = Date.now() + ${BUSY_MAX_MS};
const alive = () => { try { Deno.statSync("/proc/${parent}"); return true; } catch { return false; } };
let x = 0;
for (let next = 0;;) {
  for (let i = 0; i < 1e5; i++) x = (x * 31 + i) | 0;
  const now = Date.now();
  if (now >= end) break;
  if (now >= next) { if (!alive()) break; next = now + 100; }
}
`;
}

function startBusyLoops(): Deno.ChildProcess[] {
  const loops: Deno.ChildProcess[] = [];
  for (let i = 0; i < BUSY_PROCESSES; i++) {
    loops.push(
      new Deno.Command(Deno.execPath(), {
        args: ["eval", "--quiet", busyLoopSource(Deno.pid)],
        stdin: "null",
        stdout: "null",
        stderr: "inherit",
      }).spawn(),
    );
  }
  return loops;
}

async function stopBusyLoops(loops: Deno.ChildProcess[]): Promise<void> {
  for (const l of loops) {
    try {
      l.kill("SIGKILL");
    } catch { /* already gone */ }
  }
  await Promise.allSettled(loops.map((l) => l.status));
}

async function main(args: string[]): Promise<number> {
  const loops = startBusyLoops();
  console.log(`test:loaded: ${loops.length} busy loops running (pids ${loops.map((l) => l.pid)})`);
  // Not through `deno task`, which would not pass a signal on to the suite.
  const runner = new URL("./run_tests.ts", import.meta.url).pathname;
  const suite = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", runner, ...args],
    stdin: "null",
    stdout: "inherit",
    stderr: "inherit",
  }).spawn();
  // Ctrl-C or a kill: stop the suite and the loops, then end with its status.
  const signals: Deno.Signal[] = ["SIGINT", "SIGTERM"];
  const forward = () => {
    try {
      suite.kill("SIGTERM");
    } catch { /* already gone */ }
  };
  for (const s of signals) Deno.addSignalListener(s, forward);
  try {
    const status = await suite.status;
    return status.success ? 0 : (status.code || 1);
  } finally {
    for (const s of signals) Deno.removeSignalListener(s, forward);
    await stopBusyLoops(loops);
    console.log("test:loaded: busy loops stopped");
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
