/**
 * A private etcd server for one test (or one test file): free loopback
 * ports, a temporary data dir, its log in that dir, and bounded start-up.
 *
 * @module
 */

/** The etcd binary (Debian's etcd-server). */
export const ETCD = "/usr/bin/etcd";
/** The etcdctl binary (Debian's etcd-client). */
export const ETCDCTL = "/usr/bin/etcdctl";
/** Generous: a busy machine starts a server slowly; this only catches one that never starts. */
const START_TIMEOUT_MS = 60_000;
const STOP_TIMEOUT_MS = 10_000;

/** A running private etcd server. */
export interface EtcdServer {
  /** The client URL, `http://127.0.0.1:PORT`. */
  readonly endpoint: string;
  /** The temporary directory holding `data/` and `etcd.log`. */
  readonly dataDir: string;
  /** SIGTERM, wait for the exit, remove the data dir. Safe to call twice. */
  stop(): Promise<void>;
  /** Send `signal` (default SIGKILL) and wait for the exit; the data dir stays. */
  kill(signal?: Deno.Signal): Promise<void>;
  /** Stop (keeping the data) and start again on the same ports and data. */
  restart(): Promise<void>;
  /** Freeze the server (SIGSTOP): connections stay open but nothing answers. */
  pause(): void;
  /** Let a paused server run on (SIGCONT). */
  resume(): void;
}

/** Options of `startEtcd`. */
export interface StartEtcdOptions {
  /**
   * The member name.
   * @default "test"
   */
  name?: string;
}

/**
 * Pick `n` distinct free loopback TCP ports by listening on port 0, all at
 * once: one at a time, the system may hand out the same port twice.
 */
export function freePorts(n: number): number[] {
  const listeners = Array.from(
    { length: n },
    () => Deno.listen({ hostname: "127.0.0.1", port: 0 }),
  );
  const ports = listeners.map((l) => (l.addr as Deno.NetAddr).port);
  for (const l of listeners) l.close();
  return ports;
}

/** The last `lines` lines of a log file, or why there is none. */
export async function logTail(path: string, lines = 20): Promise<string> {
  try {
    const text = await Deno.readTextFile(path);
    return text.trimEnd().split("\n").slice(-lines).join("\n");
  } catch (error) {
    return `(no log: ${error instanceof Error ? error.message : String(error)})`;
  }
}

/** Whether the etcd at `endpoint` answers its /health check as healthy (1 s at most). */
export async function isHealthy(endpoint: string): Promise<boolean> {
  try {
    const response = await fetch(`${endpoint}/health`, { signal: AbortSignal.timeout(1_000) });
    const body = await response.text();
    return response.ok && (JSON.parse(body) as { health?: unknown }).health === "true";
  } catch {
    return false;
  }
}

/**
 * The arguments of a single-member etcd `name` with its data and its log
 * (`etcd.log`) in `dir`, serving clients at `clientUrl` and its peer port at
 * `peerUrl`. Add flags (TLS, auth) after them.
 */
export function memberArgs(
  name: string,
  dir: string,
  clientUrl: string,
  peerUrl: string,
): string[] {
  return [
    "--name",
    name,
    "--data-dir",
    `${dir}/data`,
    "--listen-client-urls",
    clientUrl,
    "--advertise-client-urls",
    clientUrl,
    "--listen-peer-urls",
    peerUrl,
    "--initial-advertise-peer-urls",
    peerUrl,
    "--initial-cluster",
    `${name}=${peerUrl}`,
    "--initial-cluster-state",
    "new",
    // A single member: fast elections make start-up and restart quick.
    "--heartbeat-interval",
    "10",
    "--election-timeout",
    "100",
    "--logger",
    "zap",
    "--log-outputs",
    `${dir}/etcd.log`,
  ];
}

/** Options of `spawnReady`. */
export interface SpawnReadyOptions {
  /** Whether the process is ready: asked until it says so, the process exits, or 60 s pass. */
  ready(): Promise<boolean>;
  /** The process in an error message: `etcd at https://…`. */
  what: string;
  /** The process's log file, whose tail an error shows. */
  logPath: string;
  /**
   * Milliseconds between two readiness checks.
   * @default 20
   */
  intervalMs?: number;
}

/**
 * Spawn `command args` (a server: etcd, stunnel) and wait until
 * `options.ready()` says it serves; returns the running process. When it
 * exits first, or is not ready within 60 s (then it is killed), throws why,
 * with the tail of its log.
 */
export async function spawnReady(
  command: string,
  args: string[],
  options: SpawnReadyOptions,
): Promise<Deno.ChildProcess> {
  const child = new Deno.Command(command, {
    args,
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  let exited = false;
  const status = child.status.then((s) => {
    exited = true;
    return s;
  });
  const interval = options.intervalMs ?? 20;
  const deadline = Date.now() + START_TIMEOUT_MS;
  while (Date.now() < deadline && !exited) {
    if (await options.ready()) return child;
    await new Promise((resolve) => setTimeout(resolve, interval));
  }
  const why = exited ? `exited with code ${(await status).code}` : "never became ready";
  if (!exited) {
    child.kill("SIGKILL");
    await status;
  }
  throw new Error(
    `${options.what} ${why} within ${START_TIMEOUT_MS} ms; log tail:\n` +
      (await logTail(options.logPath)),
  );
}

class LocalEtcd implements EtcdServer {
  readonly endpoint: string;
  readonly dataDir: string;
  #args: string[];
  #logPath: string;
  #child: Deno.ChildProcess | undefined;
  #removed = false;

  constructor(name: string, dir: string) {
    const [clientPort, peerPort] = freePorts(2) as [number, number];
    this.endpoint = `http://127.0.0.1:${clientPort}`;
    this.dataDir = dir;
    this.#logPath = `${dir}/etcd.log`;
    this.#args = memberArgs(name, dir, this.endpoint, `http://127.0.0.1:${peerPort}`);
  }

  async start(): Promise<void> {
    this.#child = await spawnReady(ETCD, this.#args, {
      ready: () => isHealthy(this.endpoint),
      what: `etcd at ${this.endpoint}`,
      logPath: this.#logPath,
    });
  }

  async #signalAndWait(signal: Deno.Signal): Promise<void> {
    const child = this.#child;
    if (!child) return;
    this.#child = undefined;
    await signalAndWait(child, signal, `etcd at ${this.endpoint}`);
  }

  kill(signal: Deno.Signal = "SIGKILL"): Promise<void> {
    return this.#signalAndWait(signal);
  }

  pause(): void {
    this.#child?.kill("SIGSTOP");
  }

  resume(): void {
    this.#child?.kill("SIGCONT");
  }

  async restart(): Promise<void> {
    await this.#signalAndWait("SIGTERM");
    await this.start();
  }

  async stop(): Promise<void> {
    await this.#signalAndWait("SIGTERM");
    if (this.#removed) return;
    this.#removed = true;
    await Deno.remove(this.dataDir, { recursive: true });
  }
}

/**
 * Start a private single-member etcd on free loopback ports with a
 * temporary data dir, and wait (at most 60 s) until `/health` says healthy.
 * Throws with the tail of the etcd log when it does not come up.
 */
export async function startEtcd(options: StartEtcdOptions = {}): Promise<EtcdServer> {
  const dir = await Deno.makeTempDir({ prefix: "moat-etcd-" });
  const server = new LocalEtcd(options.name ?? "test", dir);
  try {
    await server.start();
  } catch (error) {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    throw error;
  }
  return server;
}

/**
 * Run `etcdctl --endpoints=<endpoint> ...args` (API v3) and return its
 * stdout; throws with stderr when it fails.
 */
export async function etcdctl(endpoint: string, ...args: string[]): Promise<string> {
  const output = await new Deno.Command(ETCDCTL, {
    args: [`--endpoints=${endpoint}`, "--command-timeout=5s", ...args],
    env: { ETCDCTL_API: "3" },
    stdin: "null",
  }).output();
  const decoder = new TextDecoder();
  if (!output.success) {
    throw new Error(
      `etcdctl ${args.join(" ")} failed (code ${output.code}): ${decoder.decode(output.stderr)}`,
    );
  }
  return decoder.decode(output.stdout);
}

/**
 * Send `signal` to an etcd process (after SIGCONT: a paused one would not
 * act on it) and wait for its exit; SIGKILL and reject when it has not
 * exited within 10 s.
 */
export async function signalAndWait(
  child: Deno.ChildProcess,
  signal: Deno.Signal,
  what: string,
): Promise<void> {
  try {
    child.kill("SIGCONT");
    child.kill(signal);
  } catch {
    // Already gone: the status below resolves anyway.
  }
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    await Promise.race([
      child.status,
      new Promise((_, reject) => {
        timer = setTimeout(() => {
          try {
            child.kill("SIGKILL");
          } catch { /* gone */ }
          reject(new Error(`${what} did not exit on ${signal}`));
        }, STOP_TIMEOUT_MS);
      }),
    ]);
  } finally {
    clearTimeout(timer);
    await child.status;
  }
}
