/**
 * The engine of `moat script try`: one script run by a real `Host` in a real
 * sandbox, on the embedded store and bus, with a `VirtualClock` that jumps
 * ahead whenever the script has nothing left to do at the current moment.
 *
 * How the clock moves: every sign of life is watched — a bridge call
 * starting or ending, an event sent into the sandbox, a log line, a change
 * in the store. When none has happened for a short real-time quiet period
 * (and no call other than a `wait` is in flight), the script is waiting:
 * the clock advances to the earliest pending sleep (a `moat.wait`,
 * `moat.run_at`) or injected event, whichever comes first, and the loop
 * starts over. When nothing is pending before the end, the clock jumps to
 * the end and the script is stopped.
 *
 * What it prints, each line after the virtual time in the zone: log lines,
 * waits (`wait until …`), writes to the task's `data/` (`data KEY = VALUE`),
 * error records set and cleared, and the injected events with RPC replies.
 *
 * @module
 */

import { MemoryStore } from "../store/memory_store.ts";
import type { WatchEvent } from "../store/store.ts";
import { Layout, STATUS_KEYS, TASK_KEYS } from "../layout.ts";
import type { Logger, LogLevel } from "../log.ts";
import {
  type Isolation,
  mapMethods,
  SandboxPool,
  type ScriptHandle,
  type StartOptions,
} from "../bridge/sandbox.ts";
import { Host } from "../tasks/host.ts";
import type { Transition } from "../tasks/task_runner.ts";
import { LocalBus } from "../bus/local_bus.ts";
import { VirtualClock } from "../time/virtual_clock.ts";
import { localIso } from "../time/zone.ts";
import { waitTarget } from "../time/wait.ts";
import { servicesOn } from "./services.ts";
import { escapeControl as esc, terminalJson } from "../text.ts";
import type { Language } from "../scripts/check.ts";

/** An alert or RPC call injected at a virtual time. */
export type TryEvent =
  | { atMs: number; kind: "alert"; topic: string; data: unknown }
  | { atMs: number; kind: "call"; name: string; args: unknown; timeoutMs: number }
  | { atMs: number; kind: "put"; path: string; value: string }
  | { atMs: number; kind: "delete"; path: string };

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
  /** Extra keys, relative to the root, and their text values. */
  tree: [string, string][];
  events: TryEvent[];
  libraries: TryLibrary[];
  /** Print one line. */
  out(line: string): void;
  /** Print debug log lines too. @default false */
  verbose?: boolean;
  /** Real ms without any activity before the clock may move. @default 20 */
  quietMs?: number;
  /** Real ms without activity before deciding that nothing more will happen. @default 250 */
  idleMs?: number;
  /** Give up when the script never rests for this long, real ms. @default 30000 */
  busyLimitMs?: number;
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

/** The log line that says the script's code starts to run (never shown). */
const START_MARK = "[moat script try: the script starts]";

/** Real ms of quiet after the script went to sleep in a `wait` call. */
const SLEEP_QUIET_MS = 5;

/** Tracks signs of life, in real time. */
class Activity {
  last = performance.now();
  /** Bridge calls in flight that do not wait on the clock. */
  busy = 0;

  /** Whether the latest sign of life was a `wait` call starting (the script went to sleep). */
  asleep = false;

  /** Wakes a pending `quiet` early (when the script went to sleep). */
  #poke: (() => void) | undefined;

  bump(asleep = false): void {
    this.last = performance.now();
    this.asleep = asleep;
    if (asleep) this.#poke?.();
  }

  /**
   * Resolve once nothing has happened for `ms` and no call is busy; false
   * when that did not happen within `limitMs` or `stop()` says so.
   */
  async quiet(ms: number, limitMs: number, stop: () => boolean): Promise<boolean> {
    const began = performance.now();
    for (;;) {
      if (stop()) return true;
      const now = performance.now();
      // A script that has just gone to sleep rests sooner than one that is working.
      const need = this.asleep ? Math.min(ms, SLEEP_QUIET_MS) : ms;
      if (this.busy === 0 && now - this.last >= need) return true;
      if (now - began > limitMs) return false;
      const left = this.busy > 0 ? need : need - (now - this.last);
      // A sign of life meanwhile only moves the end of the quiet period.
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, Math.max(1, left));
        function done() {
          clearTimeout(timer);
          resolve();
        }
        this.#poke = done;
      });
      this.#poke = undefined;
    }
  }
}

/** An `Isolation` that reports every call, event and log line of its scripts. */
class WatchedIsolation implements Isolation {
  #inner: Isolation;
  #activity: Activity;
  #onWait: (spec: unknown, options: unknown) => void;
  /** Called when a script's first line is about to run. */
  onStarted: () => void = () => {};

  constructor(inner: Isolation, activity: Activity, onWait: (s: unknown, o: unknown) => void) {
    this.#inner = inner;
    this.#activity = activity;
    this.#onWait = onWait;
  }

  async start(options: StartOptions): Promise<ScriptHandle> {
    const act = this.#activity;
    const methods = mapMethods(options.methods, (name, fn) => async (args, ctx) => {
      const clocked = name === "wait";
      act.bump(clocked);
      if (clocked) {
        const [spec, opts] = args;
        this.#onWait(spec, opts);
      } else {
        act.busy++;
      }
      try {
        return await fn(args, ctx);
      } finally {
        if (!clocked) act.busy--;
        act.bump();
      }
    });
    const handle = await this.#inner.start({
      ...options,
      // The sandbox gives no sign when the script's code begins to run (its
      // Worker may take a moment to boot): this line, on the script's first
      // line so that line numbers stay, is that sign.
      code: `console.debug(${JSON.stringify(START_MARK)});${options.code}`,
      methods,
      onLog: (level, message) => {
        act.bump();
        if (message === START_MARK) this.onStarted();
        else options.onLog(level, message);
      },
    });
    return {
      ended: handle.ended,
      pid: handle.pid,
      stop: (reason) => handle.stop(reason),
      kill: (reason) => handle.kill(reason),
      sendEvent: (event) => {
        act.bump();
        handle.sendEvent(event);
      },
    };
  }

  close(): Promise<void> {
    return this.#inner.close();
  }
}

/** Run one script through virtual time; see the module doc. */
export async function trySession(o: TryOptions): Promise<TryResult> {
  const quietMs = o.quietMs ?? 20;
  const idleMs = o.idleMs ?? 250;
  const busyLimitMs = o.busyLimitMs ?? 30_000;
  const clock = new VirtualClock(o.startMs);
  const store = new MemoryStore({ clock });
  const bus = new LocalBus();
  const pool = new SandboxPool({ warm: 0 });
  const layout = new Layout(ROOT);
  const services = servicesOn(store, ROOT);
  const task = `${HOST}/${o.name}`;
  const activity = new Activity();
  const time = () => localIso(clock.now() / 1000, o.zone);
  // Every piece of `text` that comes from the script, the store or the input
  // files is escaped (esc, terminalJson) by the caller: one line per entry.
  const say = (what: string, text: string) => o.out(`${time()} ${what.padEnd(5)} ${text}`);

  const logger: Logger = {
    log(level: LogLevel, source: string, message: string) {
      activity.bump();
      if (level === "debug" && !o.verbose) return;
      const text = esc(message);
      say(level, source === task ? text : `[${esc(source)}] ${text}`);
    },
  };

  let ended: Transition | undefined;
  let started = false;
  let onChange: () => void = () => {};
  const onTransition = (t: Transition) => {
    if (t.task !== task || t.state === "start") return;
    ended = t;
    onChange();
  };

  const isolation = new WatchedIsolation(pool, activity, (spec, opts) => {
    const options = (opts ?? {}) as { now?: number; current?: boolean | null };
    try {
      const target = waitTarget(spec as string, {
        clock,
        zone: o.zone,
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
  });

  isolation.onStarted = () => {
    started = true;
    onChange();
  };
  let host: Host | undefined;
  const dataPrefix = layout.taskDir(task) + TASK_KEYS.data;
  const errorPointers = layout.statusDir(task) + STATUS_KEYS.errors;
  const errorMsg = new RegExp(`^${ROOT}/status/errors/([^/]+)/[^/]+/msg$`);
  const watch = await store.watch(ROOT + "/", (events: WatchEvent[]) => {
    activity.bump();
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
  const calls = new Set<Promise<void>>();
  let steps = 0;
  try {
    say(
      "try",
      `${esc(o.source)} as task ${esc(task)}, zone ${esc(o.zone)}, until ${
        localIso(o.endMs / 1000, o.zone)
      }`,
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
    await services.tasks.add(o.name, task, { data: o.data });
    host = new Host({
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
    await host.start();
    // The sandbox takes a moment to start; nothing moves the clock before it has.
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error("the script did not start within 30 s")),
        30_000,
      );
      onChange = () => {
        if (started || ended) {
          clearTimeout(timer);
          resolve();
        }
      };
      onChange();
    });
    let firstRest = true;
    const events = [...o.events].sort((a, b) => a.atMs - b.atMs);
    while (!ended) {
      const rested = await activity.quiet(
        firstRest ? idleMs : quietMs,
        busyLimitMs,
        () => ended !== undefined,
      );
      firstRest = false;
      if (ended) break;
      if (!rested) {
        throw new Error(
          `the script kept busy for ${busyLimitMs / 1000} s of real time at ${time()} ` +
            "without waiting: is it in a loop that never waits?",
        );
      }
      const next = (): number | undefined => {
        const due = clock.nextDue;
        const ev = events[0]?.atMs;
        const t = due === undefined ? ev : ev === undefined ? due : Math.min(due, ev);
        return t !== undefined && t <= o.endMs ? t : undefined;
      };
      let at = next();
      if (at === undefined) {
        // Nothing due before the end: make sure the script is really done.
        await activity.quiet(idleMs, busyLimitMs, () => ended !== undefined);
        if (ended) break;
        at = next();
      }
      if (at === undefined) {
        if (clock.now() < o.endMs) {
          steps++;
          await clock.set(o.endMs);
        }
        break;
      }
      if (at > clock.now()) {
        steps++;
        const from = clock.now();
        await clock.advance(at - from);
      } else {
        await clock.advance(0);
      }
      while (events.length > 0 && events[0]!.atMs <= clock.now()) {
        const ev = events.shift()!;
        if (ev.kind === "put") {
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
          activity.busy++;
          const p = bus.call(ev.name, ev.args, { timeoutMs: ev.timeoutMs }).then(
            (r) => say("reply", `${esc(ev.name)} → ${terminalJson(r)}`),
            (e) => say("reply", `${esc(ev.name)} failed: ${esc((e as Error).message)}`),
          ).finally(() => {
            activity.busy--;
            activity.bump();
            calls.delete(p);
          });
          calls.add(p);
        }
        activity.bump();
      }
    }
    await Promise.allSettled([...calls]);
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
