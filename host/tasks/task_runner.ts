/**
 * The run protocol for one task: take the `running` lease, run the script
 * in the sandbox, record how it ended, give the lease back, and restart or
 * retry as the run settings say. See design.md, "The run protocol".
 *
 * @module
 */

import type { Lease, Store } from "../store/store.ts";
import type { Layout } from "../layout.ts";
import type { Clock } from "../time/clock.ts";
import type { Logger } from "../log.ts";
import type { WatchHub } from "../store/watch_hub.ts";
import type {
  Isolation,
  MethodTable,
  SandboxLimits,
  ScriptEnd,
  ScriptHandle,
} from "../bridge/sandbox.ts";
import type { Json } from "../../sandbox/protocol.ts";
import { unixText } from "../scripts/definitions.ts";
import { nextDelay, QUICK_RUN_S, quickEndDelay, type RunConfig } from "./run_config.ts";
import type { TaskInfo } from "./task_defs.ts";
import { ScriptView } from "./script_view.ts";
import { type ErrorRecords, JOB_TAG } from "./errors.ts";
import { ScriptBus } from "./script_bus.ts";
import type { Bus } from "../bus/bus.ts";
import { DEFAULT_QUOTAS, type Quotas } from "./quotas.ts";

/** A script ready to run: its name and the JavaScript to evaluate. */
export interface LoadedScript {
  script: string;
  js: string;
}

/** A state transition of a task, as published (e.g. as an AMQP alert). */
export interface Transition {
  task: string;
  state: "start" | "ok" | "error" | "fail";
  message?: string;
  host: string;
  time: number;
}

/** What a runner needs from its host. */
export interface RunnerDeps {
  store: Store;
  layout: Layout;
  hub: WatchHub;
  isolation: Isolation;
  clock: Clock;
  logger: Logger;
  hostName: string;
  /** Read the task now; `undefined` when it is gone. */
  readTask(path: string): Promise<TaskInfo | undefined>;
  /** The task's effective run settings. */
  runConfig(task: TaskInfo): Promise<RunConfig>;
  /** Fetch and check a script by name; throws with a user-facing message. */
  loadScript(name: string): Promise<LoadedScript>;
  /** The bridge methods for one run of the task. */
  methods(run: RunContext): MethodTable;
  errors: ErrorRecords;
  /** The bus scripts serve, call and alert on. */
  bus: Bus;
  /** Where runs claim the RPC names they serve (no squatting across scripts). */
  rpcNames?: import("./rpc_names.ts").RpcNames;
  /** Called on every transition (best effort; must not throw). */
  onTransition?(t: Transition): void;
  /** The task's own sandbox limits (docs/security.md); unset ones are the pool's. */
  limits?(task: TaskInfo): Promise<Partial<SandboxLimits>>;
  /** The task's quotas (docs/security.md). @default DEFAULT_QUOTAS */
  quotas?(task: TaskInfo): Promise<Quotas>;
}

/** What the bridge methods of one run work with. */
export interface RunContext {
  task: TaskInfo;
  script: string;
  view: ScriptView;
  bus: ScriptBus;
  /** What this run may make the installation spend. */
  quotas: Quotas;
  signal: AbortSignal;
  /** `moat.load`: fetch another script and remember that this run uses it. */
  load(name: string): Promise<LoadedScript>;
}

/** Options of a runner. */
export interface RunnerOptions {
  /** Run once and do not restart or retry. */
  once?: boolean;
}

/** The first and the longest pause before trying again to reach an unreachable store, in s. */
const STORE_RETRY_MIN_S = 0.25;
const STORE_RETRY_MAX_S = 2;

/** The `running` key taken for one run. */
interface Held {
  lease: Lease;
  token: string;
  started: string;
}

/** Why a run ended, when the host ended it. */
interface StopRequest {
  reason: string;
}

/** Runs one task for as long as it exists (or once). */
export class TaskRunner {
  readonly path: string;
  #deps: RunnerDeps;
  #once: boolean;
  #stop: StopRequest | undefined;
  #stopAbort = new AbortController();
  #done: Promise<ScriptEnd | undefined>;
  #handle: ScriptHandle | undefined;
  #runs = 0;
  #loaded = new Set<string>();
  #script: string | undefined;
  #bus: ScriptBus | undefined;

  constructor(path: string, deps: RunnerDeps, options: RunnerOptions = {}) {
    this.path = path;
    this.#deps = deps;
    this.#once = options.once ?? false;
    this.#done = this.#loop().catch((e) => {
      this.#log("error", `task runner failed: ${(e as Error).message}`);
      return undefined;
    });
  }

  /** How the last run ended, once the runner has finished for good. */
  get done(): Promise<ScriptEnd | undefined> {
    return this.#done;
  }

  /** The current run's debug object (`moat.debug_obj`), if it set one. */
  get debug(): Json | undefined {
    return this.#bus?.debug;
  }

  /** The script the task named when the runner last read it (before loading its code). */
  get script(): string | undefined {
    return this.#script;
  }

  /** Scripts the current run loaded with `moat.load`. */
  get loaded(): ReadonlySet<string> {
    return this.#loaded;
  }

  /** Number of runs started so far. */
  get runs(): number {
    return this.#runs;
  }

  /** Stop the current run (on_stop runs) and do not run again. */
  async stop(reason: string): Promise<ScriptEnd | undefined> {
    if (!this.#stop) {
      this.#stop = { reason };
      this.#stopAbort.abort(new Error(reason));
    }
    return await this.#done;
  }

  #log(level: "debug" | "info" | "warn" | "error", message: string): void {
    this.#deps.logger.log(level, this.path, message);
  }

  async #loop(): Promise<ScriptEnd | undefined> {
    let failures = 0;
    let quickEnds = 0;
    let last: ScriptEnd | undefined;
    let unreachable = 0;
    while (!this.#stop) {
      let task: TaskInfo | undefined;
      let config: RunConfig;
      let held: Held | undefined;
      try {
        task = await this.#deps.readTask(this.path);
        this.#script = task?.script;
        if (!task) {
          this.#log("info", "task is gone; not running it");
          break;
        }
        config = await this.#deps.runConfig(task);
        held = await this.#acquire(config);
        unreachable = 0;
      } catch (e) {
        // The store is unreachable (etcd down, partitioned, electing): the
        // task still exists as far as we know, so keep trying, more slowly
        // each time, instead of giving it up for good.
        const delay = Math.min(STORE_RETRY_MIN_S * 2 ** unreachable++, STORE_RETRY_MAX_S);
        this.#log("warn", `cannot start: ${(e as Error).message}; trying again in ${delay} s`);
        if (!await this.#pause(delay)) break;
        continue;
      }
      if (!held) break;
      const began = this.#deps.clock.now();
      last = await this.#runOnce(task, held);
      if (this.#stop || this.#once) break;
      failures = last.state === "ok" ? 0 : failures + 1;
      // A run that ends at once, again and again (ok or not), backs off.
      quickEnds = this.#deps.clock.now() - began < QUICK_RUN_S * 1000 ? quickEnds + 1 : 0;
      let delay = nextDelay(config, last.state, failures);
      if (delay === undefined) {
        this.#log("info", `ended (${last.state}); not restarting`);
        break;
      }
      delay = quickEndDelay(config, delay, quickEnds);
      const again = last.state === "ok" ? "restart" : "retry";
      this.#log(
        "info",
        `ended (${last.state}); ${again} in ${+delay.toFixed(3)} s` +
          (quickEnds > 1 ? ` (ended within ${QUICK_RUN_S} s ${quickEnds} times in a row)` : ""),
      );
      if (!await this.#pause(delay)) break;
    }
    return last;
  }

  /** Wait `seconds` on the clock; false when the runner was stopped meanwhile. */
  async #pause(seconds: number): Promise<boolean> {
    try {
      await this.#deps.clock.sleepUntil(
        this.#deps.clock.now() + seconds * 1000,
        this.#stopAbort.signal,
      );
      return true;
    } catch {
      return false; // stopped while waiting
    }
  }

  /**
   * Take the `running` key under a new lease; wait while another host holds
   * it. A previous run that started but neither runs nor recorded its end
   * crashed (its host died, or lost etcd for good): taking over, we keep
   * that fact in `crashed` (the dead run's `started`) and in the task's
   * `job` error record, since our own `started` overwrites the evidence.
   */
  async #acquire(config: RunConfig): Promise<Held | undefined> {
    const dir = this.#deps.layout.statusDir(this.path);
    const running = dir + "running";
    while (!this.#stop) {
      // Subscribe before trying, so that a release between the try and the
      // wait is not missed.
      let release!: () => void;
      const released = new Promise<void>((r) => release = r);
      const sub = this.#deps.hub.subscribe(running, (events) => {
        if (events.some((e) => e.type === "delete" && e.kv.key === running)) release();
      }, { onResync: () => release() }); // a release may have been missed: judge again
      try {
        const before = await this.#deps.store.get(dir + "started");
        const ended = await this.#deps.store.get(dir + "stopped");
        const crashed = before !== undefined &&
          (ended === undefined || Number(ended.value) < Number(before.value));
        const lease = await this.#deps.store.grantLease(config.ttl, {
          keepAliveEvery: config.ttl / config.refresh,
        });
        const token = JSON.stringify({
          host: this.#deps.hostName,
          pid: Deno.pid,
          id: crypto.randomUUID(),
        });
        const started = unixText(this.#deps.clock.now());
        let res;
        try {
          res = await this.#deps.store.txn(
            [
              { key: running, target: "createRevision", op: "==", value: 0 },
              // What we judged above still holds: no run started meanwhile.
              {
                key: dir + "started",
                target: "modRevision",
                op: "==",
                value: before?.modRevision ?? 0,
              },
            ],
            [
              { type: "put", key: running, value: token, lease: lease.id },
              { type: "put", key: dir + "started", value: started },
              // The last crashed run stays on record (`moat status`).
              ...(crashed
                ? [{ type: "put" as const, key: dir + "crashed", value: before.value }]
                : []),
            ],
            [{ type: "get", key: running }],
          );
        } catch (e) {
          await lease.revoke().catch(() => {});
          throw e;
        }
        if (res.succeeded) {
          if (crashed) await this.#recordCrash(before.value);
          return { lease, token, started };
        }
        await lease.revoke().catch(() => {});
        const holder = res.responses[0]?.type === "get"
          ? res.responses[0].kvs[0]?.value
          : undefined;
        // Nobody runs it, but `started` moved under us: judge again at once.
        if (holder === undefined) continue;
        this.#log("info", `waiting: the task is running elsewhere (${holder})`);
        const stopped = new Promise<void>((r) =>
          this.#stopAbort.signal.addEventListener("abort", () => r(), { once: true })
        );
        await Promise.race([released, stopped]);
      } finally {
        sub.close();
      }
    }
    return undefined;
  }

  /** Record that the run started at `started` (Unix seconds text) crashed. */
  async #recordCrash(started: string): Promise<void> {
    const when = new Date(Number(started) * 1000).toISOString();
    const message = `the run started at ${when} crashed: it neither ran on nor recorded ` +
      "its end (its host died or lost etcd for longer than ttl)";
    this.#log("warn", `taking over: ${message}`);
    try {
      await this.#deps.errors.set(this.path, JOB_TAG, message);
    } catch (e) {
      this.#log("warn", `could not record the crash: ${(e as Error).message}`);
    }
  }

  async #runOnce(
    task: TaskInfo,
    held: Held,
  ): Promise<ScriptEnd> {
    const { lease, token, started } = held;
    this.#runs++;
    this.#loaded = new Set();
    const runAbort = new AbortController();
    let end: ScriptEnd;
    let leaseLost = false;
    let view: ScriptView | undefined;
    this.#transition("start");
    try {
      let loaded: LoadedScript | undefined;
      let initial: Awaited<ReturnType<ScriptView["open"]>> | undefined;
      let quotas: Quotas = DEFAULT_QUOTAS;
      try {
        quotas = await this.#deps.quotas?.(task) ?? DEFAULT_QUOTAS;
        loaded = await this.#deps.loadScript(task.script);
        view = new ScriptView(this.#deps, {
          task: this.path,
          script: task.script,
          token,
          quotas,
        });
        initial = await view.open();
      } catch (e) {
        loaded = undefined;
        end = { state: "error", message: (e as Error).message, debug: "" };
      }
      if (loaded && view && initial) {
        const v = view;
        const sbus = this.#bus = new ScriptBus(this.#deps.bus, (e, d) => v.emit(e, d), {
          quotas,
          claims: this.#deps.rpcNames &&
            { names: this.#deps.rpcNames, script: loaded.script, task: this.path, lease: lease.id },
        });
        let handle: ScriptHandle | undefined;
        try {
          const limits = await this.#deps.limits?.(task);
          handle = await this.#deps.isolation.start({
            ...(limits ? { limits } : {}),
            task: this.path,
            script: loaded.script,
            code: loaded.js,
            initial: { data: initial as unknown as Json },
            methods: this.#deps.methods({
              task,
              script: loaded.script,
              view: v,
              bus: sbus,
              quotas,
              signal: runAbort.signal,
              load: async (name) => {
                const lib = await this.#deps.loadScript(name);
                this.#loaded.add(name);
                return lib;
              },
            }),
            onLog: (level, message) => this.#deps.logger.log(level, this.path, message),
          });
        } catch (e) {
          // The store or the sandbox failed us before the script ran: an error, retried.
          end = { state: "error", message: (e as Error).message, debug: "" };
        }
        if (handle) {
          v.attach((event, data) => handle.sendEvent({ event, data }));
          this.#handle = handle;
          this.#log("info", `started script ${loaded.script} (sandbox pid ${handle.pid})`);
          const lost = lease.lost.then((e) => ({ lost: e }));
          const stop = new Promise<{ stop: string }>((resolve) => {
            const on = () => resolve({ stop: this.#stop?.reason ?? "stopped" });
            if (this.#stopAbort.signal.aborted) on();
            else this.#stopAbort.signal.addEventListener("abort", on, { once: true });
          });
          const first = await Promise.race([handle.ended.then((e) => ({ end: e })), lost, stop]);
          if ("end" in first) {
            end = first.end;
          } else if ("lost" in first) {
            // Another host may own the task already: stop at once, no on_stop.
            leaseLost = true;
            end = await handle.kill(`lease lost: ${first.lost.message}`);
          } else {
            end = await handle.stop(first.stop);
          }
          this.#handle = undefined;
        }
      }
    } finally {
      runAbort.abort();
      view?.close();
      await this.#bus?.close();
      this.#bus = undefined;
    }
    end = end!;
    const recorded = await this.#record(end, token, started, leaseLost);
    if (recorded) {
      try {
        if (end.state === "ok") await this.#deps.errors.clear(this.path, JOB_TAG);
        else await this.#deps.errors.set(this.path, JOB_TAG, end.message);
      } catch (e) {
        this.#log("warn", `could not update the job error record: ${(e as Error).message}`);
      }
    }
    await lease.revoke().catch(() => {});
    this.#log(
      end.state === "ok" ? "info" : "warn",
      `ended: ${end.state}${end.message ? `: ${end.message}` : ""}`,
    );
    this.#transition(end.state, end.message);
    return end;
  }

  /**
   * Write how the run ended, but only while nobody else has taken the task
   * over: guarded by our `running` token, or, once our lease is gone, by no
   * one running it and our `started` still standing.
   */
  async #record(
    end: ScriptEnd,
    token: string,
    started: string,
    leaseLost: boolean,
  ): Promise<boolean> {
    const dir = this.#deps.layout.statusDir(this.path);
    const ops = [
      { type: "put" as const, key: dir + "state", value: end.state },
      { type: "put" as const, key: dir + "message", value: end.message },
      { type: "put" as const, key: dir + "debug", value: end.debug },
      { type: "put" as const, key: dir + "stopped", value: unixText(this.#deps.clock.now()) },
    ];
    try {
      const mine = await this.#deps.store.txn(
        [{ key: dir + "running", target: "value", op: "==", value: token }],
        [...ops, { type: "delete", key: dir + "running" }],
      );
      if (mine.succeeded) return true;
      const orphan = await this.#deps.store.txn(
        [
          { key: dir + "running", target: "createRevision", op: "==", value: 0 },
          { key: dir + "started", target: "value", op: "==", value: started },
        ],
        ops,
      );
      if (!orphan.succeeded && !leaseLost) {
        this.#log("warn", "status not written: another host has taken the task over");
      }
      return orphan.succeeded;
    } catch (e) {
      this.#log("error", `could not write the task's status: ${(e as Error).message}`);
      return false;
    }
  }

  #transition(state: Transition["state"], message?: string): void {
    try {
      this.#deps.onTransition?.({
        task: this.path,
        state,
        ...(message !== undefined ? { message } : {}),
        host: this.#deps.hostName,
        time: this.#deps.clock.now() / 1000,
      });
    } catch {
      // Publishing is best effort.
    }
  }
}
