/**
 * The host side of the bridge: running one script in one sandbox process.
 *
 * Everything a task runner needs is behind {@linkcode Isolation}:
 * `start()` a script with a method table and a log sink, get a
 * {@linkcode ScriptHandle}, and await `ended` (or `stop()` / `kill()` it).
 * {@linkcode SandboxPool} is the implementation: one `deno run` per script,
 * no permissions, a V8 heap limit, a Deno cache that the pool's first
 * sandbox fills and the others only read, and a warm
 * spare process so that starting a script costs a message, not a spawn. A
 * script started with `group` runs as one Worker in its group's process
 * instead (host/bridge/_group.ts; docs/security.md, "Sandbox groups").
 *
 * @example
 * ```ts ignore
 * const pool = new SandboxPool();
 * const script = await pool.start({
 *   task: "home/porch", script: "porch", code: "moat.setup(); moat.end();",
 *   methods: { time_at: async ([spec, opts]) => …, wait: async ([spec, opts], { signal }) => … },
 *   onLog: (level, message) => console.log(level, message),
 * });
 * const end = await script.ended; // { state: "ok", message: "script called moat.end()", … }
 * await pool.close();
 * ```
 *
 * @module
 */

import {
  findBinary,
  makeSharedCache,
  removeTree,
  SandboxChild,
  sealSharedCache,
  sweepStaleDirs,
} from "./_child.ts";
import { DEFAULT_LIMITS, type SandboxLimits } from "./limits.ts";
import { procUnreadable, Watchdog } from "./_watchdog.ts";
import type { Isolation, ScriptHandle, StartOptions } from "./isolation.ts";
import { type Guarding, SandboxScript } from "./_sandbox_script.ts";
import { GroupProcess } from "./_group.ts";

export { BridgeError } from "./validate.ts";
// The flags a compiled sandbox is built with (scripts/compile.ts).
export { sandboxRunFlags } from "./_child.ts";
export {
  type CallContext,
  mapMethods,
  type MethodHandler,
  type MethodTable,
} from "./method_table.ts";
export { DEFAULT_LIMITS, type SandboxLimits } from "./limits.ts";
export type {
  Isolation,
  ScriptEnd,
  ScriptHandle,
  Settled,
  StartOptions,
  VirtualTimeLink,
} from "./isolation.ts";

/** Options of {@linkcode SandboxPool}. */
export interface SandboxPoolOptions {
  /** The `deno` binary. @default Deno.execPath() */
  denoPath?: string;
  /** V8 heap limit per sandbox process (each isolate), MiB. @default 64 */
  heapMb?: number;
  /** Sandbox processes kept spawned and ready. @default 1 */
  warm?: number;
  /**
   * Sandbox processes spawning at once (from spawn until ready), group
   * members' Workers starting included; more wait their turn. Hundreds of tasks starting together (a host's start)
   * then do not all share the CPU until each misses `readyTimeoutMs`, and
   * the first ones run sooner. @default 16 per CPU (measured: as fast as unbounded with 200 tasks)
   */
  spawnConcurrency?: number;
  /** The sandbox main module. @default sandbox/process.ts beside this tree */
  processModule?: string | URL;
  /**
   * A sandbox program to spawn instead of `deno run … processModule`: the
   * `moat-sandbox` that `deno task compile` builds, whose flags (those of a
   * sandbox's `deno run`, the heap limit included) are compiled in. It is
   * started without arguments, under `prlimit` and `nice` as `deno` is;
   * `denoPath`, `heapMb` and `processModule` do not apply to it. `null`:
   * none, whatever the environment says (docs/compile.md).
   * @default the `MOAT_SANDBOX_BIN` environment variable, if set and not
   * empty and neither `denoPath` nor `processModule` is given
   */
  sandboxBin?: string | null;
  /** A sandbox that is not ready after this long is killed. @default 10000 */
  readyTimeoutMs?: number;
  /** Default limits of every script (each may override them). @default DEFAULT_LIMITS */
  limits?: Partial<SandboxLimits>;
  /** How often each sandbox's CPU, memory and heartbeat are checked, ms. @default 250 */
  sampleMs?: number;
  /**
   * The util-linux `prlimit` binary that applies rlimits (file size, no core
   * dumps, data size); `null`: none (then only the RSS watch bounds memory).
   * @default found in /usr/bin, /bin or /usr/local/bin
   */
  prlimit?: string | null;
  /** Largest file a sandbox process may write (its Deno cache), MiB. @default 32 */
  fileSizeMb?: number;
  /**
   * The folder in which each sandbox process gets its own folder (its Deno
   * cache, home and temporary files), and in which folders left by hosts
   * that died are swept. Tests give each pool one of its own.
   * @default the system's temporary folder (`TMPDIR`, else /tmp)
   */
  tmpDir?: string;
  /**
   * Niceness of every sandbox process (through the coreutils `nice`
   * binary, found like `prlimit`); `null`: the host's own. Busy scripts
   * then take CPU from each other before they take it from the host.
   * @default 10
   */
  nice?: number | null;
}

/** What a pool gives each of its scripts for guarding it. */
/** One script per sandbox process (or one Worker per script in a group's), with warm spares. */
export class SandboxPool implements Isolation {
  #options: {
    denoPath: string;
    heapMb: number;
    processModule: string;
    sandboxBin: string | undefined;
    readyTimeoutMs: number;
    prlimit: string | undefined;
    fileSizeBytes: number;
    tmpDir: string | undefined;
    nice: { path: string; value: number } | undefined;
  };
  #guarding: Guarding;
  #sweep: Promise<unknown> | undefined;
  #warmTarget: number;
  #warm: SandboxChild[] = [];
  #spawning = 0;
  #children = new Set<SandboxChild>();
  #spawns = new Set<Promise<unknown>>();
  #scripts = new Set<SandboxScript>();
  /** The process of each sandbox group, by name (being spawned, or running). */
  #groups = new Map<string, Promise<GroupProcess>>();
  #closed = false;
  /**
   * The Deno cache the sandboxes share, once the first one filled and the
   * pool sealed it; undefined (each its own): a compiled sandbox, or the
   * first one failed. Absent until the first spawn.
   */
  #cache: Promise<string | undefined> | undefined;
  /** The shared cache's folder, removed at close. */
  #cacheDir: string | undefined;
  /** Spawns allowed to start now, and those waiting for a turn. */
  #spawnSlots: number;
  #spawnQueue: (() => void)[] = [];

  /** A pool that starts its first sandbox process on first use; refuses without `/proc` access. */
  constructor(options: SandboxPoolOptions = {}) {
    // The watchdog is what stops a script that spins or grows, and it reads
    // each sandbox's CPU time and memory from /proc: a host that cannot
    // would run scripts unguarded. Refuse instead.
    const why = procUnreadable();
    if (why !== undefined) {
      throw new Error(
        `Cannot run sandboxes: the host watches their CPU time and memory in /proc, ` +
          `which it cannot read (${why}); Deno grants /proc only with --allow-all ` +
          `(deno run --allow-all cli.ts, as deno task moat does)`,
      );
    }
    this.#options = {
      denoPath: options.denoPath ?? Deno.execPath(),
      heapMb: options.heapMb ?? 64,
      processModule: String(
        options.processModule ?? new URL("../../sandbox/process.ts", import.meta.url),
      ),
      // A pool told which deno or module to run runs that: the environment
      // names the sandbox of a pool that was told nothing.
      sandboxBin: options.sandboxBin !== undefined
        ? options.sandboxBin ?? undefined
        : options.denoPath === undefined && options.processModule === undefined
        ? Deno.env.get("MOAT_SANDBOX_BIN") || undefined
        : undefined,
      readyTimeoutMs: options.readyTimeoutMs ?? 10_000,
      prlimit: options.prlimit === undefined ? findBinary("prlimit") : options.prlimit ?? undefined,
      fileSizeBytes: (options.fileSizeMb ?? 32) * 2 ** 20,
      tmpDir: options.tmpDir,
      nice: niceOf(options.nice === undefined ? 10 : options.nice),
    };
    this.#guarding = {
      watchdog: new Watchdog(options.sampleMs ?? 250),
      limits: { ...DEFAULT_LIMITS, ...options.limits },
      prlimit: this.#options.prlimit,
    };
    this.#warmTarget = options.warm ?? 1;
    this.#spawnSlots = Math.max(1, options.spawnConcurrency ?? 16 * navigator.hardwareConcurrency);
    this.#refill();
  }

  /**
   * Start a script. Resolves once the script has been handed to a ready
   * sandbox; rejects only if no sandbox could be started.
   */
  async start(options: StartOptions): Promise<ScriptHandle> {
    if (this.#closed) throw new Error("Cannot start a script: the sandbox pool is closed");
    if (options.group !== undefined) return this.#startMember(options, options.group);
    let child: SandboxChild | undefined;
    while (this.#warm.length > 0 && child === undefined) {
      const c = this.#warm.shift()!;
      if (!c.exited) child = c;
    }
    this.#refill();
    child ??= await this.#spawn();
    try {
      await child.ready;
    } catch (err) {
      child.kill();
      throw new Error(`Cannot start script "${options.script}": ${(err as Error).message}`, {
        cause: err,
      });
    }
    if (this.#closed) {
      child.kill();
      throw new Error("Cannot start a script: the sandbox pool is closed");
    }
    const script = new SandboxScript(child, options, this.#guarding);
    this.#scripts.add(script);
    script.ended.then(() => this.#scripts.delete(script));
    return script;
  }

  /** Start a script as a member of sandbox group `name`, spawning its process if need be. */
  async #startMember(options: StartOptions, name: string): Promise<ScriptHandle> {
    const limits = { ...this.#guarding.limits, ...options.limits };
    let group: GroupProcess | undefined;
    // A group whose process is ending takes no members: wait for a new one.
    for (let i = 0; i < 3 && group === undefined; i++) {
      let p = this.#groups.get(name);
      if (p === undefined) {
        p = this.#spawnGroup(name);
        this.#groups.set(name, p);
      }
      const spawning = p;
      const g = await spawning.catch((err) => {
        if (this.#groups.get(name) === spawning) this.#groups.delete(name);
        throw new Error(`Cannot start script "${options.script}": ${(err as Error).message}`, {
          cause: err,
        });
      });
      if (!g.closing) group = g;
      else if (this.#groups.get(name) === spawning) this.#groups.delete(name);
    }
    if (group === undefined) {
      throw new Error(
        `Cannot start script "${options.script}": sandbox group "${name}" keeps ending`,
      );
    }
    // A turn, like a spawn's: a group's members all start at once when a
    // host starts, and their Workers sharing the CPU with every other start
    // would each miss `readyTimeoutMs` rather than each start in turn.
    const done = await this.#turn();
    let link;
    try {
      if (this.#closed) throw new Error("Cannot start a script: the sandbox pool is closed");
      link = await group.add(options.script, options.task, limits);
    } finally {
      done();
    }
    if (this.#closed) {
      link.kill();
      throw new Error("Cannot start a script: the sandbox pool is closed");
    }
    const script = new SandboxScript(link, options, this.#guarding);
    this.#scripts.add(script);
    script.ended.then(() => this.#scripts.delete(script));
    return script;
  }

  async #spawnGroup(name: string): Promise<GroupProcess> {
    const child = await this.#spawn(true);
    try {
      await child.ready;
    } catch (err) {
      child.kill();
      throw new Error(`sandbox group "${name}": ${(err as Error).message}`, { cause: err });
    }
    const group = new GroupProcess(
      name,
      child,
      this.#guarding.watchdog,
      this.#options.readyTimeoutMs,
    );
    child.gone.then(() => {
      const p = this.#groups.get(name);
      p?.then((g) => {
        if (g === group && this.#groups.get(name) === p) this.#groups.delete(name);
      }, () => {});
    });
    return group;
  }

  /**
   * Resolves once the warm spares being spawned now are ready, so that the
   * next `start()` costs a message, not a spawn. Never rejects.
   */
  async ready(): Promise<void> {
    await Promise.allSettled([...this.#spawns]);
    await Promise.allSettled(this.#warm.map((c) => c.ready));
  }

  async close(): Promise<void> {
    this.#closed = true;
    await Promise.allSettled([...this.#spawns]);
    const ends = [...this.#scripts].map((s) => s.kill("sandbox pool closed"));
    for (const c of this.#children) c.kill();
    await Promise.allSettled([...ends, ...[...this.#children].map((c) => c.gone)]);
    await this.#sweep;
    if (this.#cacheDir !== undefined) await removeTree(this.#cacheDir);
    this.#guarding.watchdog.close();
    this.#warm = [];
  }

  #refill(): void {
    while (!this.#closed && this.#warm.length + this.#spawning < this.#warmTarget) {
      this.#spawning++;
      const p = this.#spawn().then(
        (c) => {
          if (this.#closed) c.kill();
          else this.#warm.push(c);
        },
        (err) => console.error("moat: cannot spawn a spare sandbox process:", err),
      ).finally(() => {
        this.#spawning--;
        this.#spawns.delete(p);
      });
      this.#spawns.add(p);
    }
  }

  /**
   * Wait for a turn to start a sandbox process or a group member's Worker
   * (`spawnConcurrency` at once); returns the function that ends it.
   */
  async #turn(): Promise<() => void> {
    if (this.#spawnSlots > 0) this.#spawnSlots--;
    else await new Promise<void>((resolve) => this.#spawnQueue.push(resolve));
    let ended = false;
    return () => {
      if (ended) return;
      ended = true;
      const waiting = this.#spawnQueue.shift();
      if (waiting) waiting();
      else this.#spawnSlots++;
    };
  }

  async #spawn(group = false): Promise<SandboxChild> {
    // The first spawn fills the shared cache; the others wait for it, so
    // that none transpiles the sandbox's modules again (about 20 ms of CPU
    // and 2 MiB a process, measured on Deno 2.9.6).
    const first = this.#cache === undefined && this.#options.sandboxBin === undefined;
    let filled: (dir: string | undefined) => void = () => {};
    if (first) this.#cache = new Promise((resolve) => (filled = resolve));
    const denoDir = first ? undefined : await this.#cache;
    // A turn, held until the process is ready (or failed).
    const next = await this.#turn();
    let child: SandboxChild;
    try {
      if (this.#closed) throw new Error("Cannot start a script: the sandbox pool is closed");
      if (first) this.#cacheDir = await makeSharedCache(this.#options.tmpDir);
      child = await SandboxChild.spawn({
        ...this.#options,
        group,
        denoDir: first ? this.#cacheDir : denoDir,
      });
    } catch (err) {
      next();
      if (first) this.#fallBack(filled);
      throw err;
    }
    child.ready.then(next, next);
    const dir = this.#cacheDir;
    if (first && dir !== undefined) {
      child.ready.then(() => sealSharedCache(dir)).then(
        (sealed) => sealed ? filled(dir) : this.#fallBack(filled),
        () => this.#fallBack(filled),
      );
    }
    // Once per pool: remove the cache folders of hosts that died uncleanly.
    this.#sweep ??= sweepStaleDirs(child.dir.slice(0, child.dir.lastIndexOf("/")));
    this.#children.add(child);
    child.gone.then(() => {
      this.#children.delete(child);
      const i = this.#warm.indexOf(child);
      if (i >= 0) this.#warm.splice(i, 1);
    });
    return child;
  }

  /**
   * The shared cache could not be filled or sealed: every sandbox gets a
   * cache of its own, as a compiled one does. The next pool tries again.
   */
  #fallBack(filled: (dir: string | undefined) => void): void {
    const dir = this.#cacheDir;
    this.#cacheDir = undefined;
    filled(undefined);
    if (dir !== undefined) void removeTree(dir);
  }
}

/** The `nice` wrapper for a niceness (1–19), or none for `null`, 0 or a missing binary. */
function niceOf(value: number | null): { path: string; value: number } | undefined {
  if (value === null || value === 0) return undefined;
  if (!Number.isInteger(value) || value < 1 || value > 19) {
    throw new RangeError(`Cannot run sandboxes at niceness ${value}: give an integer from 1 to 19`);
  }
  const path = findBinary("nice");
  return path === undefined ? undefined : { path, value };
}
