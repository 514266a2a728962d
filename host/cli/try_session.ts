/**
 * The engine of `moat script try`: one script run by a real `Host` in a real
 * sandbox, on the embedded store and bus, with a `VirtualClock` that jumps
 * ahead whenever the script has nothing left to do at the current moment.
 *
 * How the clock moves: the script's Worker runs its own clock and timers on
 * virtual time (`Date`, `performance.now()`, `setTimeout`, `setInterval`;
 * see sandbox/_worker_timers.ts) and reports `settled` whenever it has
 * nothing left to run: its microtasks have drained and no timer is due. The
 * clock moves only while the latest such report is current (nothing was sent
 * to the script since), no bridge call other than a `wait` is in flight, and
 * the host's own promise chains have run without a change. Then it advances
 * to the earliest of: the script's next timer, the next pending `moat.wait`
 * or `moat.run_at`, the next injected event; the script's clock is told
 * first, then the waits due wake. When nothing is pending before the end,
 * the clock jumps to the end and the script is stopped. A script that
 * never yields never settles: virtual time stands still, and its CPU budget
 * stops it as on a host.
 *
 * What it prints, each line after the virtual time in the zone: log lines,
 * waits (`wait until …`), writes to the task's `data/` (`data KEY = VALUE`),
 * error records set and cleared, the injected events with RPC replies, and
 * at the end one `timer` line per kind and delay of timer that fired, with
 * its count. With `json`, each line is a JSON object instead.
 *
 * @module
 */

import { setImmediate } from "node:timers";
import { MemoryStore } from "../store/memory_store.ts";
import type { WatchEvent } from "../store/store.ts";
import { Layout, SCRIPT_KEYS, STATUS_KEYS, TASK_KEYS } from "../layout.ts";
import { type Manifest, manifestText } from "../capabilities/manifest.ts";
import type { Logger, LogLevel } from "../log.ts";
import {
  type Isolation,
  mapMethods,
  SandboxPool,
  type ScriptHandle,
  type Settled,
  type StartOptions,
} from "../bridge/sandbox.ts";
import type { TimerFiring } from "../../sandbox/protocol.ts";
import { Host } from "../tasks/host.ts";
import type { Transition } from "../tasks/task_runner.ts";
import { LocalBus } from "../bus/local_bus.ts";
import { VirtualClock } from "../time/virtual_clock.ts";
import { localIso } from "../time/zone.ts";
import type { Location } from "../time/sun.ts";
import { waitTarget } from "../time/wait.ts";
import { servicesOn } from "./services.ts";
import { escapeControl as esc, terminalJson } from "../text.ts";
import type { Language } from "../scripts/check.ts";

/** An alert or RPC call injected at a virtual time. */
export type TryEvent =
  | { atMs: number; kind: "alert"; topic: string; data: unknown }
  | { atMs: number; kind: "call"; name: string; args: unknown; timeoutMs: number }
  | { atMs: number; kind: "put"; path: string; value: string }
  | { atMs: number; kind: "delete"; path: string }
  /** Stop the script as its host would (on_stop runs), or start it again. */
  | { atMs: number; kind: "stop" }
  | { atMs: number; kind: "start" };

/** A script stored beside the one tried (a library for `moat.load`). */
export interface TryLibrary {
  name: string;
  code: string;
  language: Language;
}

/** Everything one `moat script try` run needs. */
export interface TryOptions {
  /** The script's name (its task is `try/<name>`). */
  name: string;
  code: string;
  language: Language;
  /** Where the code came from, for the first line. */
  source: string;
  /** Task data (`key=value` words). */
  data: [string, string][];
  /** Virtual start and end, ms since the epoch. */
  startMs: number;
  endMs: number;
  /** IANA zone of the installation (`/config/timezone`) and of the printed times. */
  zone: string;
  /** The installation's location (`/config/location`), for the waits on sun events it prints. */
  location?: Location;
  /** Extra keys, relative to the root, and their text values. */
  tree: [string, string][];
  events: TryEvent[];
  libraries: TryLibrary[];
  /** The script's capability manifest for the run (docs/security.md). @default none */
  caps?: Manifest;
  /** Print one line. */
  out(line: string): void;
  /** Print debug log lines too. @default false */
  verbose?: boolean;
  /** Print each line as a JSON object (`time`, `unix`, `kind`, `text`). @default false */
  json?: boolean;
  /** Where the zone came from, for the first line (e.g. `from /moat/config/timezone`). @default "" */
  zoneFrom?: string;
}

/** How a try run ended. */
export interface TryResult {
  /** `end`: the virtual end was reached; else how the script ended. */
  state: "end" | "ok" | "error" | "fail";
  message: string;
  /** How many times the clock moved. */
  steps: number;
  /** The virtual time reached, ms since the epoch. */
  reachedMs: number;
}

const ROOT = "/moat";
const HOST = "try";
/** Ten years: lease keep-alives never come due within a try run. */
const TTL = String(10 * 365 * 86400);

/** "7d 3h 30m" for a span of ms. */
export function formatSpan(ms: number): string {
  let s = Math.round(ms / 1000);
  const parts: string[] = [];
  for (const [unit, size] of [["d", 86400], ["h", 3600], ["m", 60], ["s", 1]] as const) {
    if (s >= size) {
      parts.push(`${Math.floor(s / size)}${unit}`);
      s %= size;
    }
  }
  return parts.length ? parts.join(" ") : `${ms} ms`;
}

/**
 * An `Isolation` that runs its scripts on virtual time and reports what the
 * try loop needs: calls in flight (other than waits), when the script has
 * settled, the timers it fired.
 */
class TryIsolation implements Isolation {
  #inner: Isolation;
  #session: SessionState;
  #onWait: (spec: unknown, options: unknown) => void;
  #onFire: (id: string, due: number, late: boolean) => void;
  #startMs: () => number;

  constructor(
    inner: Isolation,
    session: SessionState,
    startMs: () => number,
    onWait: (s: unknown, o: unknown) => void,
    onFire: (id: string, due: number, late: boolean) => void,
  ) {
    this.#inner = inner;
    this.#session = session;
    this.#startMs = startMs;
    this.#onWait = onWait;
    this.#onFire = onFire;
  }

  async start(options: StartOptions): Promise<ScriptHandle> {
    const s = this.#session;
    const methods = mapMethods(options.methods, (name, fn) => async (args, ctx) => {
      // A wait rests on the clock; any other call is work the clock waits for.
      const clocked = name === "wait" || name === "run_at";
      if (clocked) {
        const [spec, opts] = args;
        this.#onWait(spec, opts);
      } else {
        s.busy++;
      }
      s.changed();
      const calledMs = this.#startMs();
      try {
        const result = await fn(args, ctx);
        // A firing of a schedule with an id: one trace line, marked when late.
        const id = clocked ? (args[1] as { id?: unknown } | undefined)?.id : undefined;
        if (typeof id === "string") {
          const firing = typeof result === "number"
            ? { due: result, late: result * 1000 < calledMs }
            : result as { due: number; late: boolean };
          this.#onFire(id, firing.due, firing.late);
        }
        return result;
      } finally {
        if (!clocked) s.busy--;
        s.changed();
      }
    });
    const handle = await this.#inner.start({
      ...options,
      methods,
      virtualTime: {
        startMs: this.#startMs(),
        onSettled: (settled) => {
          s.settled = settled;
          s.changed();
        },
        onFired: (fired) => s.onFired(fired),
        onSent: () => {
          s.settled = undefined;
          s.changed();
        },
      },
    });
    s.handle = handle;
    return handle;
  }

  close(): Promise<void> {
    return this.#inner.close();
  }
}

/** What the try loop and its isolation share. */
class SessionState {
  /** Bridge calls in flight that do not wait on the clock, and injected RPC calls. */
  busy = 0;
  /** The script's latest report that it has settled, while it is current. */
  settled: Settled | undefined;
  /** The running script, once started. */
  handle: ScriptHandle | undefined;
  /** Counts every change, so that a quiet spell can be told from a busy one. */
  version = 0;
  onFired: (fired: TimerFiring[]) => void = () => {};
  #wake: (() => void) | undefined;

  changed(): void {
    this.version++;
    const w = this.#wake;
    this.#wake = undefined;
    w?.();
  }

  /** Resolves at the next change. */
  next(): Promise<void> {
    return new Promise<void>((resolve) => {
      const prev = this.#wake;
      this.#wake = () => {
        prev?.();
        resolve();
      };
    });
  }
}

/**
 * One macrotask turn of the host: its own promise chains (store watches,
 * bus deliveries) run. Not `setTimeout(…, 0)`, which nested is clamped to 4 ms.
 */
function turn(): Promise<void> {
  return new Promise<void>((resolve) => setImmediate(resolve));
}

/** Run one script through virtual time; see the module doc. */
export async function trySession(o: TryOptions): Promise<TryResult> {
  const clock = new VirtualClock(o.startMs);
  const store = new MemoryStore({ clock });
  const bus = new LocalBus();
  const pool = new SandboxPool({ warm: 0 });
  const layout = new Layout(ROOT);
  const services = servicesOn(store, ROOT);
  const task = `${HOST}/${o.name}`;
  const session = new SessionState();
  const time = () => localIso(clock.now() / 1000, o.zone);
  const timerTally = new TimerTally();
  // Every piece of `text` that comes from the script, the store or the input
  // files is escaped (esc, terminalJson) by the caller: one line per entry.
  const say = (what: string, text: string) => {
    if (o.json) {
      o.out(terminalJson({ time: time(), unix: clock.now() / 1000, kind: what, text }));
    } else {
      o.out(`${time()} ${what.padEnd(5)} ${text}`);
    }
  };
  const sayTimers = () => {
    for (const line of timerTally.flush((ms) => localIso(ms / 1000, o.zone))) say("timer", line);
  };
  session.onFired = (fired) => timerTally.add(fired, clock.now());

  const logger: Logger = {
    log(level: LogLevel, source: string, message: string) {
      session.changed();
      if (level === "debug" && !o.verbose) return;
      const text = esc(message);
      say(level, source === task ? text : `[${esc(source)}] ${text}`);
    },
  };

  let ended: Transition | undefined;
  /** Between a `stop` and a `start` event: no host runs the script. */
  let stopped = false;
  const onTransition = (t: Transition) => {
    if (t.task !== task || t.state === "start" || stopped) return;
    ended = t;
    session.changed();
  };

  const isolation = new TryIsolation(pool, session, () => clock.now(), (spec, opts) => {
    const options = (opts ?? {}) as { now?: number; current?: boolean | null };
    try {
      const target = waitTarget(spec as string, {
        clock,
        zone: o.zone,
        ...(o.location !== undefined ? { location: o.location } : {}),
        ...(options.now !== undefined ? { now: options.now } : {}),
        current: options.current ?? null,
      });
      const shown = Array.isArray(spec) ? spec.join(" ") : String(spec ?? "");
      const span = target * 1000 - clock.now();
      say(
        "wait",
        `until ${localIso(target, o.zone)}${span > 0 ? ` (in ${formatSpan(span)})` : ""}${
          shown.trim() ? ` for "${esc(shown)}"` : ""
        }`,
      );
    } catch {
      // A bad spec: the wait itself fails and the script sees why.
    }
  }, (id, due, late) => {
    say("fire", `${esc(id)} due ${localIso(due, o.zone)}${late ? " late (catch-up)" : ""}`);
  });

  let host: Host | undefined;
  const dataPrefix = layout.taskDir(task) + TASK_KEYS.data;
  const errorPointers = layout.statusDir(task) + STATUS_KEYS.errors;
  const errorMsg = new RegExp(`^${ROOT}/status/errors/([^/]+)/[^/]+/msg$`);
  const watch = await store.watch(ROOT + "/", (events: WatchEvent[]) => {
    session.changed();
    for (const e of events) {
      const m = errorMsg.exec(e.kv.key);
      if (m && e.type === "put") say("error", `${esc(m[1]!)} set: ${esc(e.kv.value)}`);
      if (e.kv.key.startsWith(errorPointers) && e.type === "delete") {
        say("error", `${esc(e.kv.key.slice(errorPointers.length))} cleared`);
      }
      if (!e.kv.key.startsWith(dataPrefix)) continue;
      const key = e.kv.key.slice(dataPrefix.length);
      say("data", e.type === "put" ? `${esc(key)} = ${esc(e.kv.value)}` : `${esc(key)} deleted`);
    }
  });

  /**
   * Resolves once the script rests: it has settled since the last message
   * sent to it, no call other than a wait is in flight, and the host's own
   * promise chains (store watches, bus deliveries, a wait arming its timer)
   * have run without any change. Or once it has ended. No real-time bound:
   * a script that never yields is stopped by its CPU budget.
   */
  const rest = async (): Promise<void> => {
    for (;;) {
      if (ended) return;
      if (stopped && session.busy === 0) return;
      if (session.settled !== undefined && session.busy === 0) {
        const version = session.version;
        await turn();
        await turn();
        if (session.version === version) return;
        continue;
      }
      await session.next();
    }
  };

  const calls = new Set<Promise<void>>();
  let steps = 0;
  try {
    say(
      "try",
      `${esc(o.source)} as task ${esc(task)}, zone ${esc(o.zone)}${
        o.zoneFrom ? ` (${esc(o.zoneFrom)})` : ""
      }, until ${localIso(o.endMs / 1000, o.zone)}`,
    );
    await store.put(`${ROOT}/config/run/ttl`, TTL);
    await store.put(`${ROOT}/config/run/restart`, "0");
    await store.put(`${ROOT}/config/run/max_retry`, "0");
    // Virtual time packs a week of a script's traffic into seconds: the
    // per-second limits of calls, log lines and store reads and writes
    // (quotas) would refuse some.
    for (
      const limit of [
        "call_rate",
        "log_rate",
        "log_volume",
        "write_rate",
        "write_volume",
        "read_rate",
      ]
    ) {
      await store.put(`${ROOT}/config/run/${limit}`, "1000000");
    }
    await store.put(`${ROOT}/config/timezone`, o.zone);
    for (const [key, value] of o.tree) await store.put(`${ROOT}/${key}`, value);
    for (const lib of o.libraries) {
      await services.scripts.add(lib.name, lib.code, { language: lib.language });
    }
    await services.scripts.add(o.name, o.code, { language: o.language, descr: o.source });
    if (o.caps !== undefined) {
      await store.put(layout.scriptDir(o.name) + SCRIPT_KEYS.caps, manifestText(o.caps));
    }
    await services.tasks.add(o.name, task, { data: o.data });
    const newHost = () =>
      new Host({
        store,
        layout,
        hostName: HOST,
        isolation,
        logger,
        clock,
        once: true,
        bus,
        onTransition,
      });
    host = newHost();
    await host.start();
    const events = [...o.events].sort((a, b) => a.atMs - b.atMs);
    while (!ended) {
      // Nothing moves the clock before the script has started and rests.
      await rest();
      if (ended) break;
      const due = [clock.nextDue, session.settled?.nextMs ?? undefined, events[0]?.atMs]
        .filter((t): t is number => t !== undefined);
      const at = due.length > 0 ? Math.max(clock.now(), Math.min(...due)) : undefined;
      if (at === undefined || at > o.endMs) {
        if (clock.now() < o.endMs) {
          steps++;
          session.handle?.setVirtualTime?.(o.endMs);
          await clock.set(o.endMs);
        }
        break;
      }
      if (at > clock.now()) steps++;
      if (clock.nextDue === at) {
        // The script's clock first (its timers due then fire), then the
        // waits due then wake: what they resume reads the new time.
        session.handle?.setVirtualTime?.(at);
        await clock.advance(at - clock.now());
      } else {
        // Nothing of the host's wakes: its clock first, so that what the
        // script's timers print carries the new time.
        await clock.advance(at - clock.now());
        session.handle?.setVirtualTime?.(at);
      }
      while (events.length > 0 && events[0]!.atMs <= clock.now()) {
        const ev = events.shift()!;
        if (ev.kind === "stop") {
          if (stopped) continue;
          say("stop", "stopping the script (as its host would)");
          stopped = true;
          await host?.close();
          host = undefined;
          session.settled = undefined;
          session.handle = undefined;
        } else if (ev.kind === "start") {
          if (!stopped) continue;
          say("start", "starting the script again");
          stopped = false;
          host = newHost();
          await host.start();
        } else if (ev.kind === "put") {
          say("put", `${esc(ev.path)} = ${esc(ev.value)}`);
          await store.put(`${ROOT}/${ev.path}`, ev.value);
        } else if (ev.kind === "delete") {
          say("del", `${esc(ev.path)} (and below)`);
          await store.delete(`${ROOT}/${ev.path}`);
          await store.delete(`${ROOT}/${ev.path}/`, { prefix: true });
        } else if (ev.kind === "alert") {
          say("alert", `${esc(ev.topic)} ${terminalJson(ev.data)}`);
          await bus.alert(ev.topic, ev.data);
        } else {
          say("call", `${esc(ev.name)} ${terminalJson(ev.args)}`);
          session.busy++;
          const p = bus.call(ev.name, ev.args, { timeoutMs: ev.timeoutMs }).then(
            (r) => say("reply", `${esc(ev.name)} → ${terminalJson(r)}`),
            (e) => say("reply", `${esc(ev.name)} failed: ${esc((e as Error).message)}`),
          ).finally(() => {
            session.busy--;
            session.changed();
            calls.delete(p);
          });
          calls.add(p);
        }
        session.changed();
      }
    }
    await Promise.allSettled([...calls]);
    sayTimers();
    if (ended) {
      const e = ended as Transition;
      return {
        state: e.state as TryResult["state"],
        message: e.message ?? "",
        steps,
        reachedMs: clock.now(),
      };
    }
    say("end", `reached ${localIso(o.endMs / 1000, o.zone)}; stopping the script`);
    return {
      state: "end",
      message: "the end of the run was reached",
      steps,
      reachedMs: clock.now(),
    };
  } finally {
    await host?.close();
    await pool.close();
    await watch.close();
    await bus.close();
    await store.close();
  }
}

/** Counts the script's timer firings by kind and delay, for one compact line each. */
class TimerTally {
  #groups = new Map<string, { what: string; count: number; firstMs: number; lastMs: number }>();

  add(fired: TimerFiring[], atMs: number): void {
    for (const f of fired) {
      const what = `${f.repeat ? "setInterval" : "setTimeout"} ${
        f.delayMs >= 1000 ? formatSpan(f.delayMs) : `${f.delayMs} ms`
      }`;
      const g = this.#groups.get(what);
      if (g === undefined) {
        this.#groups.set(what, { what, count: f.count, firstMs: atMs, lastMs: atMs });
      } else {
        g.count += f.count;
        g.lastMs = atMs;
      }
    }
  }

  /** One line per kind and delay, then forget them. */
  flush(show: (ms: number) => string): string[] {
    const lines = [...this.#groups.values()].map((g) =>
      `${g.what}: fired ${g.count} ${g.count === 1 ? "time" : "times"}` +
      (g.firstMs === g.lastMs
        ? ` at ${show(g.firstMs)}`
        : `, first at ${show(g.firstMs)}, last at ${show(g.lastMs)}`)
    );
    this.#groups.clear();
    return lines;
  }
}
