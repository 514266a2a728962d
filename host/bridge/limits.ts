/**
 * The resource limits of one script's sandbox, their defaults, and how they
 * are read from the tree: `/config/run/<key>` for the whole install,
 * `/task/<host>/<name…>/:task/<key>` per task (the task wins). See
 * docs/security.md for what each one guards against.
 *
 * @module
 */

/** Limits of one sandbox process and its bridge traffic. */
export interface SandboxLimits {
  /** Key `cpu`: seconds of CPU the sandbox process may use per `cpuWindow`. @default 5 */
  cpu: number;
  /** Key `cpu_window`: the sliding window of the CPU budget, seconds. @default 10 */
  cpuWindow: number;
  /** Key `memory`: resident memory (RSS) of the sandbox process, MiB. @default 128 */
  memory: number;
  /** Key `heartbeat`: longest silence of the script's Worker before it is killed, s. @default 10 */
  heartbeat: number;
  /** Key `calls_in_flight`: calls the script may have unanswered. @default 1000 */
  callsInFlight: number;
  /**
   * Key `call_rate`: bridge calls per second, averaged over 5 s (a token
   * bucket holding 5 s worth). @default 1000
   */
  callRate: number;
  /** Key `log_rate`: log lines per second (token bucket of one second). @default 50 */
  logRate: number;
  /** Key `log_volume`: log text per second, KiB (token bucket of one second). @default 64 */
  logVolume: number;
  /**
   * Key `flood`: messages per second from the sandbox beyond which the
   * script is killed (whatever their kind, refused ones included). @default 20000
   */
  flood: number;
}

/** The defaults. */
export const DEFAULT_LIMITS: Readonly<SandboxLimits> = Object.freeze({
  cpu: 5,
  cpuWindow: 10,
  memory: 128,
  heartbeat: 10,
  callsInFlight: 1000,
  callRate: 1000,
  logRate: 50,
  logVolume: 64,
  flood: 20000,
});

/** Tree key of each limit. */
export const LIMIT_KEYS: Readonly<Record<keyof SandboxLimits, string>> = Object.freeze({
  cpu: "cpu",
  cpuWindow: "cpu_window",
  memory: "memory",
  heartbeat: "heartbeat",
  callsInFlight: "calls_in_flight",
  callRate: "call_rate",
  logRate: "log_rate",
  logVolume: "log_volume",
  flood: "flood",
});

/** Smallest accepted value of each limit (a 0 would make a script unrunnable). */
const MINIMUM: Readonly<Record<keyof SandboxLimits, number>> = {
  cpu: 0.05,
  cpuWindow: 0.25,
  memory: 32,
  heartbeat: 0.5,
  callsInFlight: 1,
  callRate: 1,
  logRate: 1,
  logVolume: 1,
  flood: 10,
};

/**
 * The limits set in the tree: `/config/run/<key>` values (`global`), then
 * the task's own keys (`task`), which win. Only limits set somewhere are
 * returned; the sandbox pool's defaults fill in the rest. A value that is
 * not a number at or above the limit's minimum is ignored and reported
 * through `warn` (a value typed by hand must not stop the host).
 */
export function readLimits(
  global: Record<string, string>,
  task: Record<string, string>,
  warn: (message: string) => void = () => {},
): Partial<SandboxLimits> {
  return readSettings(LIMIT_KEYS, MINIMUM, global, task, warn);
}

/**
 * Numeric settings named by `keys` (field → tree key) from `/config/run`
 * (`global`), then from the task (`task`, which wins), each at least its
 * `minimum`. Bad values and task values of `installWide` fields are left
 * out and reported through `warn`. Shared by the sandbox limits and the
 * quotas (host/capabilities/quotas.ts).
 */
export function readSettings<N extends string>(
  keys: Readonly<Record<N, string>>,
  minimum: Readonly<Record<N, number>>,
  global: Record<string, string>,
  task: Record<string, string>,
  warn: (message: string) => void,
  installWide: ReadonlySet<N> = new Set(),
): Partial<Record<N, number>> {
  const out: Partial<Record<N, number>> = {};
  for (const [where, src] of [["/config/run", global], ["task", task]] as const) {
    for (const name of Object.keys(keys) as N[]) {
      const key = keys[name];
      const text = src[key];
      if (text === undefined) continue;
      if (where === "task" && installWide.has(name)) {
        warn(`ignoring task ${key} = "${text}": ${key} can only be set in /config/run`);
        continue;
      }
      const n = Number(text.trim());
      if (text.trim() === "" || !Number.isFinite(n) || n < minimum[name]) {
        warn(`ignoring ${where} ${key} = "${text}": not a number >= ${minimum[name]}`);
        continue;
      }
      out[name] = n;
    }
  }
  return out;
}

/**
 * A token bucket: `rate` tokens per second, holding at most `rate × burst`.
 * Time comes from `now()` (ms) so that tests can drive it.
 */
export class TokenBucket {
  #rate: number;
  #size: number;
  #tokens: number;
  #at: number;
  #now: () => number;

  constructor(rate: number, options: { burst?: number; now?: () => number } = {}) {
    this.#rate = rate;
    this.#size = rate * (options.burst ?? 1);
    this.#tokens = this.#size;
    this.#now = options.now ?? performance.now.bind(performance);
    this.#at = this.#now();
  }

  /** Take `n` tokens if there are that many; false (and nothing taken) if not. */
  take(n = 1): boolean {
    const now = this.#now();
    this.#tokens = Math.min(this.#size, this.#tokens + ((now - this.#at) / 1000) * this.#rate);
    this.#at = now;
    if (this.#tokens < n) return false;
    this.#tokens -= n;
    return true;
  }
}
