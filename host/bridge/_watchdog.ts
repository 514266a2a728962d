/**
 * Watching sandbox processes from the outside: one timer per pool samples
 * each process's CPU time and resident memory from `/proc/<pid>/stat`, and
 * a {@linkcode ScriptGuard} per script turns the samples and the heartbeat
 * into a verdict. Private to `host/bridge/`; see docs/security.md.
 *
 * Why from the outside: a Worker that spins cannot be stopped from inside
 * its process (`terminate()` does not stop it), and a Worker blocked in
 * `Atomics.wait` burns no CPU at all; only the host, which can SIGKILL the
 * process, can end either.
 *
 * @module
 */

import type { SandboxLimits } from "./limits.ts";

/** One look at a process. */
export interface ProcSample {
  /** User + system CPU time since the process started, ms. */
  cpuMs: number;
  /** Resident set size, bytes. */
  rssBytes: number;
}

/** Linux reports CPU times in USER_HZ ticks, 100 per second on every architecture. */
const MS_PER_TICK = 10;

let pageSize: number | undefined;

/** The page size: resident pages of `/proc/self/statm` against `VmRSS` of status. */
function pageBytes(): number {
  if (pageSize !== undefined) return pageSize;
  pageSize = 4096;
  try {
    const pages = Number(Deno.readTextFileSync("/proc/self/statm").split(" ")[1]);
    const kb = Number(/VmRSS:\s+(\d+)/.exec(Deno.readTextFileSync("/proc/self/status"))?.[1]);
    const guess = (kb * 1024) / pages;
    for (const size of [4096, 16384, 65536]) {
      if (Math.abs(guess - size) / size < 0.25) pageSize = size;
    }
  } catch { /* not Linux, or /proc hidden: keep 4096 */ }
  return pageSize;
}

/**
 * Why this process cannot read `/proc/<pid>/stat`, or `undefined` when it
 * can. Deno grants `/proc` only with `--allow-all`, whatever `--allow-read`
 * says.
 */
export function procUnreadable(): string | undefined {
  try {
    Deno.readTextFileSync(`/proc/${Deno.pid}/stat`);
    return undefined;
  } catch (e) {
    return (e as Error).message;
  }
}

/** Sample a process; `undefined` when it is gone (or `/proc` is not there). */
export function readProc(pid: number): ProcSample | undefined {
  let stat: string;
  try {
    stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  } catch {
    return undefined;
  }
  // The command name (field 2) may contain spaces and parentheses.
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // f[0] is field 3 (state): utime is field 14, stime 15, rss (pages) 24.
  const utime = Number(f[11]);
  const stime = Number(f[12]);
  const rss = Number(f[21]);
  if (!Number.isFinite(utime + stime + rss)) return undefined;
  return { cpuMs: (utime + stime) * MS_PER_TICK, rssBytes: rss * pageBytes() };
}

/** `VmData` of a process (private writable memory mapped), bytes. */
export function readVmData(pid: number): number | undefined {
  try {
    const kb = /VmData:\s+(\d+)/.exec(Deno.readTextFileSync(`/proc/${pid}/status`))?.[1];
    return kb === undefined ? undefined : Number(kb) * 1024;
  } catch {
    return undefined;
  }
}

/** Something the watchdog ticks. */
export interface Watched {
  /**
   * One sample. `stalled`: the host itself was late for this tick (its
   * event loop was blocked), so silence since the last tick proves nothing.
   */
  tick(now: number, sample: ProcSample | undefined, stalled: boolean): void;
}

/** One timer that samples every watched process every `intervalMs`. */
export class Watchdog {
  #intervalMs: number;
  #watched = new Map<Watched, number>();
  #timer: ReturnType<typeof setInterval> | undefined;
  #last = 0;

  constructor(intervalMs = 250) {
    this.#intervalMs = intervalMs;
  }

  /** How often processes are sampled, ms. */
  get intervalMs(): number {
    return this.#intervalMs;
  }

  /** Sample `pid` for `w` until the returned function is called. */
  watch(pid: number, w: Watched): () => void {
    this.#watched.set(w, pid);
    if (this.#timer === undefined) {
      this.#last = performance.now();
      const timer = setInterval(() => this.#tick(), this.#intervalMs);
      // The watchdog alone must not keep a host alive.
      Deno.unrefTimer(timer);
      this.#timer = timer;
    }
    return () => {
      this.#watched.delete(w);
      if (this.#watched.size === 0) this.close();
    };
  }

  /** Stop the timer (watching again restarts it). */
  close(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  #tick(): void {
    const now = performance.now();
    const stalled = now - this.#last > 4 * this.#intervalMs;
    this.#last = now;
    for (const [w, pid] of [...this.#watched]) {
      try {
        w.tick(now, readProc(pid), stalled);
      } catch (err) {
        console.error("moat: sandbox watchdog failed:", err);
      }
    }
  }
}

/** What a guard may do to its script. */
export interface GuardActions {
  /** Kill the sandbox process; the script ends `fail` with `reason`. */
  kill(reason: string): void;
  /** Send a heartbeat ping. */
  ping(id: number): void;
}

/**
 * The verdict on one script: CPU budget over a sliding window, resident
 * memory, and the heartbeat. Ticked by a {@linkcode Watchdog}.
 */
export class ScriptGuard implements Watched {
  #limits: SandboxLimits;
  #act: GuardActions;
  /** CPU samples (time ms, cpu ms), oldest first; [0] is the window's base. */
  #cpu: { t: number; cpu: number }[] = [];
  #lastAnswer: number;
  #lastPing = -Infinity;
  #pingId = 0;
  #done = false;
  #peakRss = 0;

  /** `base`: a sample taken as the script starts (its process's start-up is not its CPU). */
  constructor(
    limits: SandboxLimits,
    act: GuardActions,
    base?: ProcSample,
    now = performance.now(),
  ) {
    this.#limits = limits;
    this.#act = act;
    this.#lastAnswer = now;
    if (base !== undefined) this.#cpu.push({ t: now, cpu: base.cpuMs });
  }

  /** Highest RSS seen, bytes. */
  get peakRss(): number {
    return this.#peakRss;
  }

  /** A `pong` arrived: the Worker's message loop is alive. */
  pong(now = performance.now()): void {
    this.#lastAnswer = now;
  }

  tick(now: number, sample: ProcSample | undefined, stalled: boolean): void {
    if (this.#done) return;
    const L = this.#limits;
    if (stalled) this.#lastAnswer = Math.max(this.#lastAnswer, now);
    if (sample !== undefined) {
      this.#peakRss = Math.max(this.#peakRss, sample.rssBytes);
      const rssMiB = sample.rssBytes / 2 ** 20;
      if (rssMiB > L.memory) {
        return this.#kill(
          `out of memory: the sandbox process used ${rssMiB.toFixed(0)} MiB ` +
            `(limit: memory = ${L.memory} MiB)`,
        );
      }
      const used = this.#cpuUsed(now, sample.cpuMs);
      if (used > L.cpu * 1000) {
        return this.#kill(
          `CPU budget exceeded: the script used ${(used / 1000).toFixed(2)} s of CPU ` +
            `within ${L.cpuWindow} s (limit: cpu = ${L.cpu} s per cpu_window = ${L.cpuWindow} s)`,
        );
      }
    }
    const silent = now - this.#lastAnswer;
    if (silent > L.heartbeat * 1000) {
      return this.#kill(
        `the script stopped answering the heartbeat: silent for ${(silent / 1000).toFixed(1)} s ` +
          `(limit: heartbeat = ${L.heartbeat} s)`,
      );
    }
    const every = Math.min(1000, (L.heartbeat * 1000) / 4);
    if (now - this.#lastPing >= every) {
      this.#lastPing = now;
      this.#act.ping(++this.#pingId);
    }
  }

  /** CPU used since the window's base, ms; keeps about 40 samples per window. */
  #cpuUsed(now: number, cpuMs: number): number {
    const windowMs = this.#limits.cpuWindow * 1000;
    const s = this.#cpu;
    const last = s[s.length - 1];
    if (last === undefined || now - last.t >= windowMs / 40) s.push({ t: now, cpu: cpuMs });
    // The base is the newest sample at least a window old (else the first).
    while (s.length > 1 && s[1]!.t <= now - windowMs) s.shift();
    return cpuMs - s[0]!.cpu;
  }

  #kill(reason: string): void {
    this.#done = true;
    this.#act.kill(reason);
  }
}
