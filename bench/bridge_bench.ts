/**
 * Bridge benchmarks, each beside the raw primitive it stands on, measured
 * in the same run:
 *
 * - script start (`start()` → first log line, warm pool) vs a raw Worker
 *   spawn → first message inside a bare no-permission process;
 * - a `moat.time_at` round trip answered by a stub handler (measured in the
 *   script) vs a raw echo: host → bare process → bare Worker → back over the
 *   same stdin/stdout pipe;
 * - RSS and PSS of an idle sandbox process with its script vs a bare
 *   process with an idle Worker.
 *
 * Run alone: `deno run --allow-all bench/bridge_bench.ts`.
 *
 * @module
 */

import { type Figure, median, printFigures } from "./figure.ts";
import { SandboxPool } from "../host/bridge/sandbox.ts";
import { stubMethods } from "../host/bridge/method_stubs.ts";
import { memory } from "./_proc.ts";

const SPAWNS = 10;
const ROUND_TRIPS = 2000;
const WARMUP = 200;

/** The bare sandbox: a Worker that echoes, driven over stdin/stdout. */
const BARE_PROCESS = `
const enc = new TextEncoder();
const out = (s) => { const b = enc.encode(s + "\\n"); let o = 0; while (o < b.length) o += Deno.stdout.writeSync(b.subarray(o)); };
const url = URL.createObjectURL(new Blob(["self.onmessage = (e) => self.postMessage(e.data); self.postMessage('up');"], { type: "text/javascript" }));
const spawn = () => new Promise((res) => {
  const w = new Worker(url, { type: "module", deno: { permissions: "none" } });
  w.onmessage = (e) => { if (e.data === "up") res(w); else out(e.data); };
});
let echo;
const dec = new TextDecoder();
let buf = "";
for await (const chunk of Deno.stdin.readable) {
  buf += dec.decode(chunk, { stream: true });
  let nl;
  while ((nl = buf.indexOf("\\n")) >= 0) {
    const line = buf.slice(0, nl);
    buf = buf.slice(nl + 1);
    if (line === "spawn") spawn().then((w) => { out("spawned"); w.terminate(); });
    else if (line === "echo-start") spawn().then((w) => { echo = w; out("echo-ready"); });
    else echo.postMessage(line);
  }
}
`;

/** A bare no-permission process running {@linkcode BARE_PROCESS}. */
class Bare {
  #child: Deno.ChildProcess;
  #writer: WritableStreamDefaultWriter<Uint8Array>;
  #lines: AsyncIterator<string>;
  #enc = new TextEncoder();
  readonly pid: number;

  constructor(child: Deno.ChildProcess, readonly dir: string) {
    this.#child = child;
    this.pid = child.pid;
    this.#writer = child.stdin.getWriter();
    this.#lines = splitLines(child.stdout)[Symbol.asyncIterator]();
  }

  static async spawn(): Promise<Bare> {
    const dir = await Deno.makeTempDir({ prefix: "moat-bench-" });
    await Deno.writeTextFile(`${dir}/bare.js`, BARE_PROCESS);
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--quiet",
        "--no-prompt",
        "--no-npm",
        "--no-remote",
        "--no-config",
        "--unstable-worker-options",
        "--v8-flags=--max-old-space-size=64",
        `${dir}/bare.js`,
      ],
      clearEnv: true,
      env: { DENO_DIR: `${dir}/cache`, NO_COLOR: "1" },
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    return new Bare(child, dir);
  }

  async send(line: string): Promise<void> {
    await this.#writer.write(this.#enc.encode(line + "\n"));
  }

  async next(): Promise<string> {
    const r = await this.#lines.next();
    if (r.done) throw new Error("bare process closed its stdout");
    return r.value;
  }

  async close(): Promise<void> {
    await this.#writer.close().catch(() => {});
    try {
      this.#child.kill("SIGKILL");
    } catch { /* gone */ }
    await this.#child.status;
    await Deno.remove(this.dir, { recursive: true }).catch(() => {});
  }
}

async function* splitLines(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  const dec = new TextDecoder();
  let buf = "";
  for await (const chunk of stream) {
    buf += dec.decode(chunk, { stream: true });
    let nl: number;
    while ((nl = buf.indexOf("\n")) >= 0) {
      yield buf.slice(0, nl);
      buf = buf.slice(nl + 1);
    }
  }
}

function fig(
  name: string,
  value: number,
  unit: string,
  rawName: string,
  raw: number,
  target?: string,
): Figure {
  const f: Figure = { name, value, unit, rawName, raw };
  if (target !== undefined) f.target = target;
  return f;
}

/** Measure the bridge; see the module doc. */
export async function benchBridge(): Promise<Figure[]> {
  const bare = await Bare.spawn();
  const pool = new SandboxPool({ warm: 1 });
  try {
    // --- raw primitives --------------------------------------------------
    const rawSpawn: number[] = [];
    for (let i = 0; i < SPAWNS; i++) {
      const t0 = performance.now();
      await bare.send("spawn");
      await bare.next();
      rawSpawn.push(performance.now() - t0);
    }
    await bare.send("echo-start");
    await bare.next();
    const echoLine = JSON.stringify({ kind: "reply", id: 1, ok: true, value: 1_700_000_000 });
    const rawTrip: number[] = [];
    for (let i = 0; i < WARMUP + ROUND_TRIPS; i++) {
      const t0 = performance.now();
      await bare.send(echoLine);
      await bare.next();
      if (i >= WARMUP) rawTrip.push((performance.now() - t0) * 1000);
    }
    const bareMem = await memory(bare.pid);

    // --- ours ------------------------------------------------------------
    const methods = stubMethods({
      time_at: () => Promise.resolve(1_700_000_000),
      wait: () => Promise.resolve(1_700_000_000),
    });
    const starts: number[] = [];
    for (let i = 0; i < SPAWNS; i++) {
      await pool.ready();
      let up: () => void = () => {};
      const first = new Promise<void>((r) => (up = r));
      const t0 = performance.now();
      const script = await pool.start({
        task: "bench",
        script: "bench",
        code: `moat.setup(); moat.on_start(() => console.log("up"));`,
        methods,
        onLog: () => up(),
      });
      await first;
      starts.push(performance.now() - t0);
      await script.kill("bench done");
    }

    await pool.ready();
    let report: (m: string) => void = () => {};
    const reported = new Promise<string>((r) => (report = r));
    const script = await pool.start({
      task: "bench",
      script: "bench",
      code: `
        moat.setup();
        const times = [];
        for (let i = 0; i < ${WARMUP + ROUND_TRIPS}; i++) {
          const t0 = performance.now();
          await moat.time_at("12 hr", {});
          if (i >= ${WARMUP}) times.push((performance.now() - t0) * 1000);
        }
        console.log(JSON.stringify(times));
      `,
      methods,
      onLog: (_level, message) => report(message),
    });
    const ourTrip = JSON.parse(await reported) as number[];
    const ourMem = await memory(script.pid);
    await script.kill("bench done");

    return [
      fig(
        "bridge.script_start",
        median(starts),
        "ms",
        "Worker spawn → first message",
        median(rawSpawn),
        "ratio <= 3",
      ),
      fig(
        "bridge.time_at_round_trip",
        median(ourTrip),
        "µs",
        "pipe + Worker echo",
        median(rawTrip),
        "ratio <= 2, < 300 µs",
      ),
      fig("bridge.idle_rss", ourMem.rss, "MiB", "bare process + idle Worker", bareMem.rss),
      fig("bridge.idle_pss", ourMem.pss, "MiB", "bare process + idle Worker", bareMem.pss),
    ];
  } finally {
    await pool.close();
    await bare.close();
  }
}

if (import.meta.main) printFigures(await benchBridge());
