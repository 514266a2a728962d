/**
 * One script in one sandbox process: the host's end of the line protocol
 * (validating and answering calls, relaying events and logs), the script's
 * limits (docs/security.md) and how it ends.
 *
 * @module
 */

import {
  type ErrorCode,
  type HostMessage,
  type LogLevel,
  MAX_THREADS,
  type MethodName,
  type Methods,
  type ReplyMessage,
  type ScriptEvent,
  THREAD_ROOM_BYTES,
} from "../../sandbox/protocol.ts";
import { type ChildExit, type ChildLink, describe, limitData } from "./_child.ts";
import { type SandboxLimits, TokenBucket } from "./limits.ts";
import { LineBatcher } from "./_line_batch.ts";
import { readProc, readVmData, ScriptGuard, type Watchdog } from "./_watchdog.ts";
import { argValidators, BridgeError, checkMessage } from "./validate.ts";
import type { CallContext } from "./method_table.ts";
import type { ScriptEnd, ScriptHandle, StartOptions } from "./isolation.ts";

/** What the pool watches each script with. */
export interface Guarding {
  watchdog: Watchdog;
  limits: SandboxLimits;
  prlimit: string | undefined;
}

/**
 * One script in one sandbox process, or in one Worker of a group's process
 * (`child` is then the member's link, host/bridge/_group.ts).
 */
export class SandboxScript implements ScriptHandle {
  readonly ended: Promise<ScriptEnd>;
  readonly pid: number;
  #child: ChildLink;
  #options: StartOptions;
  #inflight = new Map<number, AbortController>();
  #end: ScriptEnd | undefined;
  #stopTimer: ReturnType<typeof setTimeout> | undefined;
  #warnings = 0;
  #maxInFlight: number;
  // ---- limits (docs/security.md) ----
  #limits: SandboxLimits;
  #guard: ScriptGuard;
  #unwatch: () => void;
  #callBucket: TokenBucket;
  #logLines: TokenBucket;
  #logChars: TokenBucket;
  #logsDropped = 0;
  #floodCount = 0;
  #floodSecond = 0;
  /** Messages sent to the sandbox other than pings (what `settled.seen` counts). */
  #sent = 0;
  /** What is sent within one task goes out in one write (one wake of the process). */
  #batch: LineBatcher;
  // ---- room for thread Workers in the data-size rlimit ----
  #prlimit: string | undefined;
  /** The hard data-size limit, bytes (undefined: no rlimit set). */
  #dataHard: number | undefined;
  #roomBusy = false;
  #roomAgain = false;
  #roomWanted = 0;

  constructor(child: ChildLink, options: StartOptions, guarding: Guarding) {
    this.#child = child;
    this.#options = options;
    this.pid = child.pid;
    const limits = { ...guarding.limits, ...options.limits };
    this.#limits = limits;
    this.#batch = new LineBatcher((lines) => child.sendJson(lines));
    this.#maxInFlight = options.maxCallsInFlight ?? limits.callsInFlight;
    this.#callBucket = new TokenBucket(limits.callRate, { burst: 5 });
    this.#logLines = new TokenBucket(limits.logRate);
    this.#logChars = new TokenBucket(limits.logVolume * 1024);
    // A member of a group has the heartbeat of its own; the process's CPU
    // and memory are the group's to watch (host/bridge/_group.ts).
    const shared = child.abort !== undefined;
    this.#guard = new ScriptGuard(limits, {
      kill: (reason) => {
        child.abort?.(reason);
        this.#finish({ state: "fail", message: reason, debug: "" });
      },
      ping: (id) => this.#child.send({ kind: "ping", id }),
    }, shared ? undefined : readProc(child.pid));
    const guard = this.#guard;
    this.#unwatch = guarding.watchdog.watch(
      child.pid,
      shared ? { tick: (now, _sample, stalled) => guard.tick(now, undefined, stalled) } : guard,
    );
    if (guarding.prlimit !== undefined && !shared) {
      // A cap on memory the process may map beyond what it has now, so
      // that a burst of ArrayBuffers fails at once; the RSS watch is the
      // finer limit. The soft limit is the cap; the hard one leaves room
      // for the address space that `moat.thread` Workers reserve, which
      // the host grants one start at a time (#room). The sandbox cannot
      // raise its own soft limit: it has no way to call setrlimit.
      const now = readVmData(child.pid);
      if (now !== undefined) {
        this.#prlimit = guarding.prlimit;
        this.#dataHard = now + limits.memory * 2 ** 20 + MAX_THREADS * THREAD_ROOM_BYTES;
        void limitData(guarding.prlimit, child.pid, now + limits.memory * 2 ** 20, this.#dataHard);
      }
    }
    child.onMessage = (v) => this.#onMessage(v);
    child.onNoise = (stream, line) => this.#warn(`sandbox ${stream}: ${line.slice(0, 1000)}`);
    this.ended = child.gone.then((exit) => {
      clearTimeout(this.#stopTimer);
      this.#unwatch();
      this.#finish({ state: "fail", message: exitMessage(exit, options), debug: "" });
      return this.#end!;
    });
    this.#send({
      kind: "start",
      task: options.task,
      script: options.script,
      code: options.code,
      ...(options.initial ? { initial: options.initial } : {}),
      options: {
        onStopBudgetMs: options.onStopBudgetMs ?? 3000,
        // The Worker refuses extra calls itself; the host refuses them too.
        maxCallsInFlight: this.#maxInFlight,
        ...(options.virtualTime ? { virtualTime: { startMs: options.virtualTime.startMs } } : {}),
      },
    });
  }

  stop(reason: string): Promise<ScriptEnd> {
    if (this.#end === undefined && this.#stopTimer === undefined) {
      const grace = this.#options.stopGraceMs ?? 4000;
      this.#send({ kind: "stop", reason });
      this.#stopTimer = setTimeout(() => {
        this.#finish({
          state: "fail",
          message: `script did not end within ${grace} ms of being stopped (${reason})`,
          debug: "",
        });
      }, grace);
    }
    return this.ended;
  }

  kill(reason: string): Promise<ScriptEnd> {
    this.#finish({ state: "fail", message: reason, debug: "" });
    return this.ended;
  }

  sendEvent(event: ScriptEvent): void {
    if (this.#end !== undefined) return;
    this.#send({ kind: "event", ...event });
  }

  setVirtualTime(nowMs: number): void {
    if (this.#end !== undefined || this.#options.virtualTime === undefined) return;
    this.#send({ kind: "clock", nowMs });
  }

  /**
   * Send to the sandbox, counting what `settled.seen` counts. Sent at the
   * end of the current task, with whatever else was sent in it: the events
   * of one watch response wake the process once, in order, as lines of
   * their own (each within the bridge's line limit, as ever).
   */
  #send(msg: HostMessage): void {
    this.#batch.add(JSON.stringify(msg)); // throws (before queueing) for a value that is not JSON
    this.#sent++;
    try {
      this.#options.virtualTime?.onSent();
    } catch { /* must not throw; if it does, the sandbox is not to blame */ }
  }

  /**
   * Set the soft data-size limit to what the process maps now plus
   * `memory`, and plus room for one thread Worker's isolate when a start
   * asked for it (then answer `thread_room`). One `prlimit` at a time, at
   * most 50 a second, however often the sandbox asks.
   */
  #room(): void {
    if (this.#roomBusy) {
      this.#roomAgain = true;
      return;
    }
    this.#roomBusy = true;
    void (async () => {
      do {
        this.#roomAgain = false;
        const wanted = this.#roomWanted;
        this.#roomWanted = 0;
        const vm = readVmData(this.pid);
        if (this.#prlimit !== undefined && this.#dataHard !== undefined && vm !== undefined) {
          const soft = vm + this.#limits.memory * 2 ** 20 + (wanted > 0 ? THREAD_ROOM_BYTES : 0);
          await limitData(this.#prlimit, this.pid, Math.min(soft, this.#dataHard), this.#dataHard);
        }
        if (this.#end !== undefined) break;
        // Not counted in #sent: the sandbox process answers it itself; the
        // script's Worker never sees it.
        for (let i = 0; i < wanted; i++) this.#child.send({ kind: "thread_room" });
        await new Promise((r) => setTimeout(r, 20));
      } while (this.#roomAgain && this.#end === undefined);
      this.#roomBusy = false;
    })();
  }

  /** Record the first end, drop every call in flight, kill the process. */
  #finish(end: ScriptEnd): void {
    if (this.#end !== undefined) return;
    this.#end = end;
    this.#unwatch();
    this.#noteDroppedLogs();
    for (const ac of this.#inflight.values()) ac.abort(new BridgeError("ended", "script ended"));
    this.#inflight.clear();
    this.#child.kill();
  }

  // The sandbox is untrusted: validate before dispatch; never throw.
  #onMessage(value: unknown): void {
    if (this.#end !== undefined) return;
    if (this.#flooding()) return;
    const checked = checkMessage(value);
    if (!checked.ok) {
      this.#warn(`refused a message from the sandbox: ${checked.why}`);
      if (checked.id !== undefined && !this.#inflight.has(checked.id)) {
        this.#reply({
          kind: "reply",
          id: checked.id,
          ok: false,
          error: { code: "bad_message", message: checked.why },
        });
      }
      return;
    }
    const msg = checked.message;
    switch (msg.kind) {
      case "call":
        this.#call(msg.id, msg.method, msg.args as unknown[]);
        return;
      case "cancel": {
        const ac = this.#inflight.get(msg.id);
        if (ac === undefined) return; // answered already, or never asked
        this.#inflight.delete(msg.id);
        ac.abort(new BridgeError("cancelled", "call cancelled"));
        this.#reply({
          kind: "reply",
          id: msg.id,
          ok: false,
          error: { code: "cancelled", message: "call cancelled" },
        });
        return;
      }
      case "log":
        this.#scriptLog(msg.level, msg.message);
        return;
      case "pong":
        this.#guard.pong();
        return;
      case "ended":
        clearTimeout(this.#stopTimer);
        this.#finish({ state: msg.state, message: msg.message, debug: msg.debug });
        return;
      case "ready":
        this.#warn("refused a message from the sandbox: second ready");
        return;
      case "threads": {
        const refusal = msg.need ? this.#options.threadRefusal?.() : undefined;
        if (refusal !== undefined) {
          // Not counted in #sent, like `thread_room`: the sandbox process
          // answers the script itself.
          this.#child.send({ kind: "thread_room", denied: refusal });
          return;
        }
        if (msg.need) this.#roomWanted++;
        this.#room();
        return;
      }
      case "settled": {
        const link = this.#options.virtualTime;
        if (link === undefined) {
          this.#warn("refused a message from the sandbox: settled without virtual time");
          return;
        }
        try {
          if (msg.ending) {
            // Not at rest: only its timers' count.
            if (msg.fired.length > 0) link.onFired(msg.fired);
            return;
          }
          // Stale when the host has sent something since: the script may have work again.
          if (msg.seen !== this.#sent) return;
          link.onFired(msg.fired);
          link.onSettled({ nextMs: msg.nextMs });
        } catch { /* must not throw */ }
        return;
      }
    }
  }

  #call(id: number, method: string, args: unknown[]): void {
    const refuse = (code: ErrorCode, message: string) =>
      this.#reply({ kind: "reply", id, ok: false, error: { code, message } });
    if (this.#inflight.has(id)) {
      // Answering would confuse the call already in flight under this id.
      this.#warn(`refused a message from the sandbox: call id ${id} is already in flight`);
      return;
    }
    if (this.#inflight.size >= this.#maxInFlight) {
      return refuse("limit", `too many calls in flight (limit ${this.#maxInFlight})`);
    }
    if (!this.#callBucket.take()) {
      return refuse(
        "limit",
        `too many calls: more than ${this.#limits.callRate} per second (limit: call_rate)`,
      );
    }
    // A closed table: own properties only, so "__proto__", "constructor",
    // "toString" and friends are unknown methods.
    const methods = this.#options.methods;
    if (!Object.hasOwn(argValidators, method) || !Object.hasOwn(methods, method)) {
      return refuse("unknown_method", `unknown method ${JSON.stringify(method.slice(0, 100))}`);
    }
    const name = method as MethodName;
    let valid: Methods[MethodName]["args"];
    try {
      valid = argValidators[name](args);
    } catch (err) {
      return this.#replyError(id, name, err);
    }
    const ac = new AbortController();
    this.#inflight.set(id, ac);
    const handler = methods[name] as (
      a: typeof valid,
      c: CallContext,
    ) => Promise<Methods[MethodName]["result"]>;
    let result: Promise<unknown>;
    try {
      result = Promise.resolve(handler(valid, { signal: ac.signal, task: this.#options.task }));
    } catch (err) {
      result = Promise.reject(err);
    }
    result.then(
      (value) => {
        if (this.#inflight.get(id) !== ac) return; // cancelled or ended meanwhile
        this.#inflight.delete(id);
        this.#reply({ kind: "reply", id, ok: true, value: (value ?? null) as never });
      },
      (err) => {
        if (this.#inflight.get(id) !== ac) return;
        this.#inflight.delete(id);
        this.#replyError(id, name, err);
      },
    );
  }

  #replyError(id: number, method: string, err: unknown): void {
    if (err instanceof BridgeError) {
      this.#reply({
        kind: "reply",
        id,
        ok: false,
        error: { code: err.code, message: String(err.message) },
      });
      return;
    }
    // Never the host's stack or message: they may name files, hosts, keys.
    try {
      (this.#options.onInternalError ?? defaultInternalError)(err, method);
    } catch { /* the report must not break the reply */ }
    this.#reply({
      kind: "reply",
      id,
      ok: false,
      error: { code: "internal", message: "internal error" },
    });
  }

  #reply(reply: ReplyMessage): void {
    if (this.#end !== undefined) return;
    try {
      this.#send(reply);
    } catch (err) {
      // A handler result that is not JSON (a BigInt, a cycle): still one reply.
      this.#send({
        kind: "reply",
        id: reply.id,
        ok: false,
        error: { code: "internal", message: "internal error" },
      });
      try {
        (this.#options.onInternalError ?? defaultInternalError)(err, "reply");
      } catch { /* ignore */ }
    }
  }

  /**
   * Count a message from the sandbox; past `flood` in one second, kill the
   * script: even refusing costs the host, and a flood delays other scripts.
   */
  #flooding(): boolean {
    const second = Math.floor(performance.now() / 1000);
    if (second !== this.#floodSecond) {
      this.#floodSecond = second;
      this.#floodCount = 0;
    }
    if (++this.#floodCount <= this.#limits.flood) return false;
    this.#finish({
      state: "fail",
      message: `bridge flood: more than ${this.#limits.flood} messages in one second ` +
        `(limit: flood = ${this.#limits.flood})`,
      debug: "",
    });
    return true;
  }

  /** Script output, within `log_rate` and `log_volume`; the rest is counted and dropped. */
  #scriptLog(level: LogLevel, message: string): void {
    if (!this.#logLines.take() || !this.#logChars.take(Math.min(message.length, 1024 * 1024))) {
      this.#logsDropped++;
      return;
    }
    this.#noteDroppedLogs();
    this.#log(level, message);
  }

  #noteDroppedLogs(): void {
    if (this.#logsDropped === 0) return;
    const n = this.#logsDropped;
    this.#logsDropped = 0;
    this.#log(
      "warn",
      `${n} log line${n === 1 ? "" : "s"} of the script dropped (limits: log_rate = ` +
        `${this.#limits.logRate} lines and log_volume = ${this.#limits.logVolume} KiB per second)`,
    );
  }

  #log(level: LogLevel, message: string): void {
    try {
      this.#options.onLog(level, message);
    } catch { /* onLog must not throw; if it does, the sandbox is not to blame */ }
  }

  #warn(message: string): void {
    const max = this.#options.maxWarnings ?? 100;
    if (this.#warnings > max) return;
    this.#warnings++;
    this.#log("warn", this.#warnings > max ? "further sandbox warnings suppressed" : message);
  }
}

function defaultInternalError(error: unknown, method: string): void {
  console.error(`moat: bridge method ${method} failed:`, error);
}

function exitMessage(exit: ChildExit, options: StartOptions): string {
  if (exit.message !== undefined) return exit.message; // a group's member: the group says why
  const how = describe(exit);
  if (/out of memory|heap limit/i.test(exit.stderrTail)) {
    return `sandbox process of script "${options.script}" ran out of memory (${how})`;
  }
  return `sandbox process of script "${options.script}" exited unexpectedly (${how})`;
}
