/**
 * One sandbox process as the host sees it: spawn, line I/O, kill, cleanup.
 * Private to `host/bridge/`; `sandbox.ts` builds scripts on top of it.
 *
 * @module
 */

import { builtinModules } from "node:module";
import { type HostMessage, MAX_LINE_BYTES, PROTOCOL_VERSION } from "../../sandbox/protocol.ts";
import { packLines } from "./_line_batch.ts";
import { readLines } from "./_lines.ts";

/** How a sandbox process went away. */
export interface ChildExit {
  code: number;
  signal: string | null;
  /** The last few KiB of its stderr, for the exit message. */
  stderrTail: string;
  /** Why a group's member ended with its process (host/bridge/_group.ts), for the end message. */
  message?: string;
}

/** Settings for {@linkcode SandboxChild.spawn}. */
export interface ChildOptions {
  denoPath: string;
  heapMb: number;
  /** The sandbox main module (`sandbox/process.ts`) as a URL or path. */
  processModule: string;
  /**
   * A sandbox program with the flags of {@linkcode sandboxRunFlags} built in
   * (the compiled `moat-sandbox`), spawned without arguments instead of
   * `denoPath run … processModule`; undefined: `deno run`.
   */
  sandboxBin: string | undefined;
  /** Give up if the sandbox is not ready after this long. */
  readyTimeoutMs: number;
  /** The `prlimit` binary (util-linux), or undefined to spawn without rlimits. */
  prlimit: string | undefined;
  /** RLIMIT_FSIZE of the sandbox process: largest file it may write, bytes. */
  fileSizeBytes: number;
  /** The coreutils `nice` binary and the niceness for every thread of the sandbox, if any. */
  nice: { path: string; value: number } | undefined;
  /** The folder to make the sandbox's own folder in; undefined: the system's temporary folder. */
  tmpDir: string | undefined;
  /** A group process (`--group`): many scripts, lines tagged by member (host/bridge/_group.ts). */
  group?: boolean;
  /**
   * The pool's shared Deno cache (see {@linkcode makeSharedCache}); undefined:
   * the sandbox's own folder is its `DENO_DIR`.
   */
  denoDir?: string | undefined;
}

/**
 * What a script's host side ({@linkcode SandboxScript}) talks to: a whole
 * sandbox process ({@linkcode SandboxChild}), or one member of a group
 * process (host/bridge/_group.ts).
 */
export interface ChildLink {
  /** The process id (a group's members share it). */
  readonly pid: number;
  /** Resolves once the script's side is gone. Never rejects. */
  readonly gone: Promise<ChildExit>;
  /** Called with each parsed JSON message of the script. */
  onMessage: (value: unknown) => void;
  /** Called with each line that is not protocol. */
  onNoise: (stream: "stdout" | "stderr", line: string) => void;
  /** Send one message to the script. */
  send(message: HostMessage): void;
  /** Send messages already written as JSON, in order, in as few writes as fit (_line_batch.ts). */
  sendJson(lines: readonly string[]): void;
  /** End the script's side: the process, or a member's Worker. */
  kill(): void;
  /**
   * Only on a member of a group: the process is shared, so a verdict of
   * the script's guard (heartbeat) ends every member; `reason` names the culprit.
   */
  abort?(reason: string): void;
}

/**
 * Every `node:` built-in, mapped to a module that throws. Dynamic `import()`
 * cannot be removed from the Worker; this makes it find nothing: `npm:` and
 * remote URLs are off (`--no-npm --no-remote`), files need read permission,
 * and `node:` modules (which could write to the process's stdout) are here.
 */
export const IMPORT_MAP: string = (() => {
  const deny =
    "data:text/javascript,throw new Error('node built-ins are not available to scripts')";
  const imports: Record<string, string> = {};
  for (const name of builtinModules) {
    imports[name.startsWith("node:") ? name : `node:${name}`] = deny;
  }
  return "data:application/json," + encodeURIComponent(JSON.stringify({ imports }));
})();

const STDERR_TAIL = 4096;

/**
 * The `deno run` flags of a sandbox process, before its main module. A
 * compiled sandbox (`deno task compile`) is built with the same flags.
 */
export function sandboxRunFlags(heapMb: number): string[] {
  return [
    "--quiet",
    "--no-prompt",
    "--no-npm",
    "--no-remote",
    "--no-config",
    "--no-lock",
    "--unstable-worker-options",
    // Nothing a sandbox runs needs V8's code cache: fewer writes to disk.
    "--no-code-cache",
    `--import-map=${IMPORT_MAP}`,
    `--v8-flags=--max-old-space-size=${heapMb}`,
  ];
}

/** A spawned sandbox process. */
export class SandboxChild {
  readonly pid: number;
  /** Its temporary `DENO_DIR`. */
  readonly dir: string;
  /** Resolves when the sandbox reported `ready`; rejects if it died or timed out first. */
  readonly ready: Promise<void>;
  /** Resolves once the process is gone and its temporary folder removed. Never rejects. */
  readonly gone: Promise<ChildExit>;
  /** Called with each parsed JSON line after `ready`. Replaced by the owner. */
  onMessage: (value: unknown) => void = () => {};
  /**
   * A group process's lines after `ready`, raw (they are tagged, not JSON);
   * undefined: parse each as JSON for `onMessage`. Replaced by the owner.
   */
  onLine: ((line: string) => void) | undefined;
  /** Called with each stdout/stderr line that is not protocol. Replaced by the owner. */
  onNoise: (stream: "stdout" | "stderr", line: string) => void = () => {};

  #child: Deno.ChildProcess;
  #writer: WritableStreamDefaultWriter<Uint8Array>;
  #encoder = new TextEncoder();
  #exited = false;
  #stderrTail = "";

  private constructor(child: Deno.ChildProcess, dir: string, options: ChildOptions) {
    this.#child = child;
    this.pid = child.pid;
    this.dir = dir;
    const writer = child.stdin.getWriter();
    writer.closed.catch(() => {});
    this.#writer = writer;
    this.onLine = options.group ? () => {} : undefined;
    let setReady: () => void = () => {};
    let failReady: (e: Error) => void = () => {};
    this.ready = new Promise<void>((res, rej) => {
      setReady = res;
      failReady = rej;
    });
    this.ready.catch(() => {}); // a spare that dies unused is not an error
    const timer = setTimeout(() => {
      failReady(new Error(`sandbox process not ready after ${options.readyTimeoutMs} ms`));
      this.kill();
    }, options.readyTimeoutMs);
    let isReady = false;

    const stdout = (async () => {
      for await (const item of readLines(child.stdout, MAX_LINE_BYTES)) {
        if (!("line" in item)) {
          this.#noise("stdout", `[a line of ${item.tooLong} bytes was dropped]`);
          continue;
        }
        if (isReady && this.onLine !== undefined) {
          const onLine = this.onLine;
          this.#safe(() => onLine(item.line));
          continue;
        }
        let value: unknown;
        try {
          value = item.line.startsWith("{") ? JSON.parse(item.line) : undefined;
        } catch {
          value = undefined;
        }
        if (value === undefined) {
          this.#noise("stdout", item.line);
        } else if (!isReady) {
          const v = value as { kind?: unknown; version?: unknown };
          if (v.kind === "ready" && v.version === PROTOCOL_VERSION) {
            isReady = true;
            clearTimeout(timer);
            setReady();
          } else if (v.kind === "ready") {
            failReady(
              new Error(`sandbox speaks protocol ${String(v.version)}, not ${PROTOCOL_VERSION}`),
            );
            this.kill();
          } else {
            this.#noise("stdout", item.line.slice(0, 200));
          }
        } else {
          this.#safe(() => this.onMessage(value));
        }
      }
    })().catch(() => {});
    const stderr = (async () => {
      for await (const item of readLines(child.stderr, 64 * 1024)) {
        const line = "line" in item ? item.line : `[a line of ${item.tooLong} bytes was dropped]`;
        this.#stderrTail = (this.#stderrTail + line + "\n").slice(-STDERR_TAIL);
        this.#noise("stderr", line);
      }
    })().catch(() => {});

    this.gone = (async () => {
      const status = await child.status;
      this.#exited = true;
      clearTimeout(timer);
      failReady(new Error(`sandbox process exited before it was ready (${describe(status)})`));
      await Promise.allSettled([stdout, stderr, writer.close().catch(() => {})]);
      await Deno.remove(dir, { recursive: true }).catch(() => {});
      return { code: status.code, signal: status.signal, stderrTail: this.#stderrTail };
    })();
  }

  /** Spawn a sandbox process with a fresh `DENO_DIR`, removed when it exits. */
  static async spawn(options: ChildOptions): Promise<SandboxChild> {
    // The name says which host made it, so that a later host can remove it
    // if this one dies without cleaning up (see sweepStaleDirs).
    const dir = await Deno.makeTempDir({
      prefix: `${DIR_PREFIX}${hostTag()}-`,
      ...(options.tmpDir === undefined ? {} : { dir: options.tmpDir }),
    });
    // Rlimits, applied by prlimit before it execs deno: no file (Deno's
    // cache included) larger than fileSizeBytes, and no core dumps.
    // Then nice, so that every thread Deno starts has the lower priority.
    const wrap = [
      ...(options.prlimit === undefined
        ? []
        : [options.prlimit, `--fsize=${options.fileSizeBytes}`, "--core=0", "--"]),
      ...(options.nice === undefined ? [] : [options.nice.path, "-n", String(options.nice.value)]),
    ];
    try {
      // A compiled sandbox has its flags built in: no arguments.
      const command = options.sandboxBin === undefined
        ? [options.denoPath, "run", ...sandboxRunFlags(options.heapMb), options.processModule]
        : [options.sandboxBin];
      if (options.group) command.push("--group");
      const child = new Deno.Command(wrap[0] ?? command[0]!, {
        args: [...wrap.slice(1), ...(wrap.length > 0 ? command : command.slice(1))],
        clearEnv: true,
        env: {
          ...await privateHome(dir),
          DENO_DIR: options.denoDir ?? dir,
          NO_COLOR: "1",
          DENO_NO_UPDATE_CHECK: "1",
        },
        // A session and process group of its own (setsid): Ctrl-C in a
        // terminal and a SIGTERM to the host's group (systemd's stop) reach
        // the host only, which then stops each script cleanly (on_stop
        // runs) instead of finding its sandboxes killed under it. No orphan
        // follows: the sandbox exits when its stdin closes, and the kernel
        // closes it when the host dies, however it dies (sandbox/process.ts).
        detached: true,
        stdin: "piped",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      return new SandboxChild(child, dir, options);
    } catch (err) {
      await Deno.remove(dir, { recursive: true }).catch(() => {});
      throw err;
    }
  }

  /** True once the process has exited. */
  get exited(): boolean {
    return this.#exited;
  }

  /** Send one message; silently dropped once the process is gone. */
  send(message: HostMessage): void {
    if (this.#exited) return;
    const bytes = this.#encoder.encode(JSON.stringify(message) + "\n");
    this.#writer.write(bytes).catch(() => {});
  }

  /** Send lines as they are, in order, in as few writes as fit; dropped once the process is gone. */
  sendLines(lines: readonly string[]): void {
    if (this.#exited) return;
    for (const chunk of packLines(lines, MAX_LINE_BYTES)) this.#writer.write(chunk).catch(() => {});
  }

  /** Send messages already written as JSON (ChildLink). */
  sendJson(lines: readonly string[]): void {
    this.sendLines(lines);
  }

  /** Send one line as it is (a group's tagged line); dropped once the process is gone. */
  sendLine(line: string): void {
    if (this.#exited) return;
    this.#writer.write(this.#encoder.encode(line + "\n")).catch(() => {});
  }

  /** SIGKILL, if still running. */
  kill(): void {
    if (this.#exited) return;
    try {
      this.#child.kill("SIGKILL");
    } catch { /* already gone */ }
  }

  #noise(stream: "stdout" | "stderr", line: string): void {
    this.#safe(() => this.onNoise(stream, line));
  }

  #safe(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      console.error("moat: sandbox message handler threw:", err);
    }
  }
}

/**
 * The variables that tell libraries where a user's home, caches, settings
 * and temporary files are, each pointing to a folder inside `dir` (made
 * here). Nothing a script can reach should write outside its sandbox's
 * folder, but Deno or a system library it loads may keep a cache (Mesa's
 * shader cache, measured with WebGPU before the Worker lost it): with these
 * it lands in `dir` and goes with it. Mesa finds the home folder in the
 * password database, not in HOME, so its own variable and XDG_CACHE_HOME
 * matter more than HOME does.
 */
async function privateHome(dir: string): Promise<Record<string, string>> {
  const folders = {
    HOME: "home",
    TMPDIR: "tmp",
    XDG_CACHE_HOME: "cache",
    XDG_CONFIG_HOME: "config",
    XDG_DATA_HOME: "data",
    XDG_STATE_HOME: "state",
    XDG_RUNTIME_DIR: "run",
  };
  const env: Record<string, string> = {};
  for (const [name, sub] of Object.entries(folders)) {
    const path = `${dir}/${sub}`;
    await Deno.mkdir(path, { mode: 0o700 });
    env[name] = path;
  }
  // Shader caches of the GL/Vulkan drivers (Mesa; NVIDIA's), should one load.
  env.MESA_SHADER_CACHE_DIR = `${dir}/cache`;
  env.__GL_SHADER_DISK_CACHE_PATH = `${dir}/cache`;
  return env;
}

/** "exit code 1" / "signal SIGKILL". */
export function describe(status: { code: number; signal: string | null }): string {
  return status.signal ? `signal ${status.signal}` : `exit code ${status.code}`;
}

// ---------------------------------------------------------------------------
// Operating-system limits and leftovers

const DIR_PREFIX = "moat-sandbox-";

/** This process's tag, once read: its start time never changes. */
let tag: string | undefined;

/**
 * This host process as `<pid>.<start time>`: a pid alone may be reused.
 * Without its start time the folder would look stale to every other host
 * (see sweepStaleDirs), so there is no fallback.
 */
function hostTag(): string {
  if (tag === undefined) {
    const start = startTime(Deno.pid);
    if (start === undefined) throw new Error(`Cannot read /proc/${Deno.pid}/stat`);
    tag = `${Deno.pid}.${start}`;
  }
  return tag;
}

/** Field 22 of `/proc/<pid>/stat` (start time in ticks since boot), if the process exists. */
function startTime(pid: number): string | undefined {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19];
  } catch {
    return undefined;
  }
}

/**
 * Remove the sandbox cache folders in `parent` left by hosts that died
 * without cleaning up (SIGKILL, power loss): those whose host process
 * (pid and start time in the name) is gone. Their sandbox processes are
 * gone too: a sandbox exits when its stdin closes. Returns how many it
 * removed. Never throws.
 */
export async function sweepStaleDirs(parent: string): Promise<number> {
  let removed = 0;
  try {
    for await (const e of Deno.readDir(parent)) {
      const m = /^moat-sandbox-(\d+)\.(\d+)-/.exec(e.name);
      if (!e.isDirectory || m === null) continue;
      if (startTime(Number(m[1])) === m[2]) continue; // its host is alive
      if (await removeTree(`${parent}/${e.name}`)) removed++;
    }
  } catch { /* no such folder, or not ours to read */ }
  return removed;
}

/**
 * A new folder for the Deno cache that a pool's sandboxes share, named like
 * a sandbox's own folder (so that {@linkcode sweepStaleDirs} removes it if
 * the host dies). The pool's first sandbox fills it, then
 * {@linkcode sealSharedCache} makes it read-only.
 */
export function makeSharedCache(tmpDir: string | undefined): Promise<string> {
  return Deno.makeTempDir({
    prefix: `${DIR_PREFIX}${hostTag()}-cache-`,
    ...(tmpDir === undefined ? {} : { dir: tmpDir }),
  });
}

/**
 * Make a shared cache read-only (folders 0555, files 0444): later sandboxes
 * read the transpiled sandbox modules from it and write nothing. Resolves
 * false if a part could not be sealed.
 */
export async function sealSharedCache(dir: string): Promise<boolean> {
  try {
    for await (const e of Deno.readDir(dir)) {
      const path = `${dir}/${e.name}`;
      if (e.isDirectory) {
        if (!await sealSharedCache(path)) return false;
      } else if (e.isFile) await Deno.chmod(path, 0o444);
    }
    await Deno.chmod(dir, 0o555);
    return true;
  } catch {
    return false;
  }
}

/** Remove a folder, a sealed one too (its folders are made writable first). Never throws. */
export async function removeTree(path: string): Promise<boolean> {
  try {
    await Deno.remove(path, { recursive: true });
    return true;
  } catch { /* perhaps sealed */ }
  const unseal = async (dir: string): Promise<void> => {
    await Deno.chmod(dir, 0o755).catch(() => {});
    for await (const e of Deno.readDir(dir)) if (e.isDirectory) await unseal(`${dir}/${e.name}`);
  };
  try {
    await unseal(path);
    await Deno.remove(path, { recursive: true });
    return true;
  } catch {
    return false;
  }
}

/** A system binary (`prlimit`, `nice`), if installed in a usual place. */
export function findBinary(name: string): string | undefined {
  for (const dir of ["/usr/bin", "/bin", "/usr/local/bin"]) {
    try {
      if (Deno.statSync(`${dir}/${name}`).isFile) return `${dir}/${name}`;
    } catch { /* not here */ }
  }
  return undefined;
}

/**
 * Set RLIMIT_DATA of a running process (`soft`, and `hard`, which defaults
 * to `soft`): allocations beyond it (ArrayBuffers above all, which no V8
 * heap limit covers) fail at once instead of growing the process until the
 * next RSS sample. Lowering a limit of one's own processes, and moving the
 * soft limit below the hard one, need no privilege; raising a hard limit
 * does. Resolves false if it could not be applied.
 */
export async function limitData(
  prlimit: string,
  pid: number,
  soft: number,
  hard = soft,
): Promise<boolean> {
  const s = Math.floor(soft);
  const h = Math.max(s, Math.floor(hard));
  try {
    const out = await new Deno.Command(prlimit, {
      args: [`--pid=${pid}`, `--data=${s}:${h}`],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).output();
    return out.success;
  } catch {
    return false;
  }
}
