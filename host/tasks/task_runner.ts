/**
 * The run protocol for one task: take the `running` lease, run the script
 * in the sandbox, record how it ended, give the lease back, and restart or
 * retry as the run settings say. See design.md, "The run protocol".
 *
 * @module
 */

import type { KeyValue, Lease } from "../store/store.ts";
import type { Logger } from "../log.ts";
import { STATUS_KEYS } from "../layout.ts";
import type { Isolation, SandboxLimits, ScriptEnd, ScriptHandle } from "../bridge/sandbox.ts";
import type { Json } from "../../sandbox/protocol.ts";
import { MissingScriptError, unixText } from "../scripts/definitions.ts";
import { nextDelay, QUICK_RUN_S, quickEndDelay, type RunConfig } from "./run_config.ts";
import type { TaskInfo } from "./task_defs.ts";
import { JOB_TAG } from "../capabilities/error_records.ts";
import type { Quotas } from "../capabilities/quotas.ts";
import {
  type HostCapabilities,
  type LoadedScript,
  RunCapabilities,
} from "../capabilities/run_capabilities.ts";
import {
  applyManifestLimits,
  type Manifest,
  ManifestError,
  readManifest,
} from "../capabilities/manifest.ts";

export type { LoadedScript };

/** A state transition of a task, as published (e.g. as an AMQP alert). */
export interface Transition {
  /** The task path. */
  task: string;
  /** `start`, or how the run ended. */
  state: "start" | "ok" | "error" | "fail";
  /** Why it ended, when it said. */
  message?: string;
  /** The host that runs the task. */
  host: string;
  /** When, in Unix seconds. */
  time: number;
}

/**
 * A task's settings for one start: its run settings, its sandbox limits
 * (unset ones are the pool's) and its quotas (docs/security.md), from one
 * read of `/config/run` and the task.
 */
export interface RunSettings {
  /** When to restart and retry, and the lease's ttl and refresh. */
  config: RunConfig;
  /** The sandbox limits set for the task; unset ones are the pool's. */
  limits: Partial<SandboxLimits>;
  /** What one run may make the installation spend. */
  quotas: Quotas;
  /** The task's sandbox group (key `group`); undefined: a process of its own. */
  group?: string | undefined;
}

/** What a runner needs from its host: what every run shares, and more. */
export interface RunnerDeps extends HostCapabilities {
  /** What runs the scripts. */
  isolation: Isolation;
  /** Where the runner and the script log. */
  logger: Logger;
  /** This host's name, in `running` tokens and transitions. */
  hostName: string;
  /** Read the task now; `undefined` when it is gone. */
  readTask(path: string): Promise<TaskInfo | undefined>;
  /** The task's settings, read once per start. */
  settings(task: TaskInfo): Promise<RunSettings>;
  /** Fetch and check a script by name; throws with a user-facing message. */
  loadScript(name: string): Promise<LoadedScript>;
  /** Called on every transition (best effort; must not throw). */
  onTransition?(t: Transition): void;
}

/** What others may see of a task's runner, and the one thing they may do to it: stop it. */
export interface TaskRun {
  /** The task's path below `/task/`. */
  readonly path: string;
  /** How the last run ended, once the runner has finished for good. */
  readonly done: Promise<ScriptEnd | undefined>;
  /** The current run's debug object (`moat.debug_obj`) as the script last sent it, if any. */
  readonly debug: Json | undefined;
  /** The current run's debug object as it is now (the script is asked), if it set one. */
  debugNow(): Promise<Json | undefined>;
  /** The script the task named when the runner last read it. */
  readonly script: string | undefined;
  /** Scripts the current run loaded with `moat.load`. */
  readonly loaded: ReadonlySet<string>;
  /** Number of runs started so far. */
  readonly runs: number;
  /** Stop the current run (on_stop runs) and do not run again. */
  stop(reason: string): Promise<ScriptEnd | undefined>;
}

/** Options of a runner. */
export interface RunnerOptions {
  /** Run once and do not restart or retry. */
  once?: boolean;
  /**
   * The task as the caller has just read it: the first run starts from it
   * instead of reading it again (later runs read it anew). A change after
   * that read is the caller's to act on (the host restarts the runner).
   */
  task?: TaskInfo;
  /**
   * The task's `started` and `stopped` status keys as read lately (a host
   * reads every task's status in one range read when it starts): the first
   * try to take `running` judges from them instead of reading them. The
   * transaction that takes it checks that neither moved since, so a stale
   * read costs a retry, never a wrong judgement.
   */
  status?: { started?: KeyValue | undefined; stopped?: KeyValue | undefined };
}

/** The first and the longest pause before trying again to reach an unreachable store, in s. */
const STORE_RETRY_MIN_S = 0.25;
const STORE_RETRY_MAX_S = 2;

/** The `running` key taken for one run, and the settings it was taken with. */
interface Held {
  lease: Lease;
  token: string;
  started: string;
  settings: RunSettings;
}

/** Why a run ended, when the host ended it. */
interface StopRequest {
  reason: string;
}

/** Runs one task for as long as it exists (or once). */
export class TaskRunner implements TaskRun {
  readonly path: string;
  #deps: RunnerDeps;
  #once: boolean;
  /** The first run's task and status reads, given by the caller; used once. */
  #firstTask: TaskInfo | undefined;
  #firstStatus: RunnerOptions["status"];
  #stop: StopRequest | undefined;
  #stopAbort = new AbortController();
  #done: Promise<ScriptEnd | undefined>;
  #handle: ScriptHandle | undefined;
  #runs = 0;
  #loaded = new Set<string>();
  #script: string | undefined;
  #caps: RunCapabilities | undefined;
  /** The script the last run needed did not exist: wait for it, do not retry. */
  #orphaned = false;
  /** What an orphaned run waits for (the host starts the task again when it changes). */
  #waitingFor = "";

  constructor(path: string, deps: RunnerDeps, options: RunnerOptions = {}) {
    this.path = path;
    this.#deps = deps;
    this.#once = options.once ?? false;
    this.#firstTask = options.task;
    this.#firstStatus = options.status;
    this.#done = this.#loop().catch((e) => {
      this.#log("error", `task runner failed: ${(e as Error).message}`);
      return undefined;
    });
  }

  /** How the last run ended, once the runner has finished for good. */
  get done(): Promise<ScriptEnd | undefined> {
    return this.#done;
  }

  /** The current run's debug object (`moat.debug_obj`) as the script last sent it, if any. */
  get debug(): Json | undefined {
    return this.#caps?.debug;
  }

  /** The current run's debug object as it is now (the script is asked), if it set one. */
  debugNow(): Promise<Json | undefined> {
    return this.#caps?.debugNow() ?? Promise.resolve(undefined);
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
      let settings: RunSettings;
      let held: Held | undefined;
      try {
        task = this.#firstTask ?? await this.#deps.readTask(this.path);
        this.#firstTask = undefined;
        this.#script = task?.script;
        if (!task) {
          this.#log("info", "task is gone; not running it");
          break;
        }
        settings = await this.#deps.settings(task);
        held = await this.#acquire(settings);
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
      if (this.#orphaned) {
        // Retrying cannot help: the host starts the task again when the
        // script is added (its watch on the scripts sees it).
        this.#log("info", `ended (${last.state}); not retrying until ${this.#waitingFor}`);
        break;
      }
      failures = last.state === "ok" ? 0 : failures + 1;
      // A run that ends at once, again and again (ok or not), backs off.
      quickEnds = this.#deps.clock.now() - began < QUICK_RUN_S * 1000 ? quickEnds + 1 : 0;
      const { config } = settings;
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
  async #acquire(settings: RunSettings): Promise<Held | undefined> {
    const { config } = settings;
    const dir = this.#deps.layout.statusDir(this.path);
    const running = dir + STATUS_KEYS.running;
    while (!this.#stop) {
      // Subscribe before trying, so that a release between the try and the
      // wait is not missed.
      let release!: () => void;
      const released = new Promise<void>((r) => release = r);
      const sub = this.#deps.hub.subscribe(running, (events) => {
        if (events.some((e) => e.type === "delete" && e.kv.key === running)) release();
      }, { onResync: () => release() }); // a release may have been missed: judge again
      try {
        // The caller's read, on the first try; else both keys in one read.
        const status = this.#firstStatus ?? await this.#readStatus(dir);
        this.#firstStatus = undefined;
        const before = status.started;
        const ended = status.stopped;
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
              // What we judged above still holds: no run started or
              // recorded its end meanwhile.
              {
                key: dir + STATUS_KEYS.started,
                target: "modRevision",
                op: "==",
                value: before?.modRevision ?? 0,
              },
              {
                key: dir + STATUS_KEYS.stopped,
                target: "modRevision",
                op: "==",
                value: ended?.modRevision ?? 0,
              },
            ],
            [
              { type: "put", key: running, value: token, lease: lease.id },
              { type: "put", key: dir + STATUS_KEYS.started, value: started },
              // The last crashed run stays on record (`moat status`) until
              // a start after a clean end clears the note.
              crashed
                ? { type: "put" as const, key: dir + STATUS_KEYS.crashed, value: before.value }
                : { type: "delete" as const, key: dir + STATUS_KEYS.crashed },
            ],
            [{ type: "get", key: running }],
          );
        } catch (e) {
          await lease.revoke().catch(() => {});
          throw e;
        }
        if (res.succeeded) {
          if (crashed) await this.#recordCrash(before.value);
          return { lease, token, started, settings };
        }
        await lease.revoke().catch(() => {});
        const holder = res.responses[0]?.type === "get"
          ? res.responses[0].kvs[0]?.value
          : undefined;
        // Nobody runs it, but `started` or `stopped` moved under us (or
        // the caller's read was stale): judge again at once.
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

  /** The task's `started` and `stopped` keys, in one range read of its status folder. */
  async #readStatus(dir: string): Promise<NonNullable<RunnerOptions["status"]>> {
    const { kvs } = await this.#deps.store.range(dir);
    const key = (k: string) => kvs.find((kv) => kv.key === dir + k);
    return { started: key(STATUS_KEYS.started), stopped: key(STATUS_KEYS.stopped) };
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
    let { settings } = held;
    this.#runs++;
    this.#loaded = new Set();
    this.#orphaned = false;
    let end: ScriptEnd;
    let leaseLost = false;
    let caps: RunCapabilities | undefined;
    this.#transition("start");
    try {
      let loaded: LoadedScript | undefined;
      let manifest: Manifest | undefined;
      try {
        loaded = await this.#deps.loadScript(task.script);
        // The capability manifest: the task's replaces the script's whole;
        // its limits win over the task's and /config/run's.
        manifest = await readManifest(this.#deps.store, this.#deps.layout, loaded.script, task);
        settings = { ...settings, ...applyManifestLimits(manifest, settings) };
        caps = this.#caps = await RunCapabilities.open(this.#deps, {
          task: this.path,
          script: loaded.script,
          token,
          lease: lease.id,
          quotas: settings.quotas,
          manifest,
          held: () => lease.held(),
          warn: (message) => this.#log("warn", message),
          debug: (message) => this.#log("debug", message),
          load: async (name) => {
            const lib = await this.#deps.loadScript(name);
            this.#loaded.add(name);
            return lib;
          },
        });
      } catch (e) {
        if (e instanceof MissingScriptError && e.script === task.script) {
          // The task's script was deleted (or never added): a clear end
          // that says what is missing, not an endless retry.
          this.#orphaned = true;
          this.#waitingFor = `script ${task.script} exists`;
          end = {
            state: "fail",
            message: `script "${task.script}" does not exist: the task is orphaned ` +
              "and waits until the script is added again",
            debug: "",
          };
        } else if (e instanceof ManifestError) {
          // A malformed manifest: running with more rights than meant is
          // not an option, and retrying cannot help until it is fixed.
          this.#orphaned = true;
          this.#waitingFor = "its capability manifest changes";
          end = {
            state: "fail",
            message: `${e.message}: the task does not run until the manifest is fixed`,
            debug: "",
          };
        } else {
          end = { state: "error", message: (e as Error).message, debug: "" };
        }
      }
      if (loaded && caps) {
        const c = caps;
        let handle: ScriptHandle | undefined;
        try {
          handle = await this.#deps.isolation.start({
            limits: settings.limits,
            ...(settings.group === undefined ? {} : { group: settings.group }),
            task: this.path,
            script: loaded.script,
            code: loaded.js,
            initial: [{ event: "data", data: c.initial }],
            methods: c.methods,
            threadRefusal: () => c.threadRefusal(),
            // The task's secret values never reach a log (secret_mask.ts).
            onLog: (level, message) => this.#deps.logger.log(level, this.path, c.mask(message)),
          });
        } catch (e) {
          // The sandbox failed us before the script ran: an error, retried.
          end = { state: "error", message: (e as Error).message, debug: "" };
        }
        if (handle) {
          c.attach((event) => handle.sendEvent(event));
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
            this.#log("warn", `killing the script: lease lost: ${first.lost.message}`);
            end = await handle.kill(`lease lost: ${first.lost.message}`);
          } else {
            end = await handle.stop(first.stop);
          }
          this.#handle = undefined;
        }
      }
    } finally {
      await caps?.close();
      this.#caps = undefined;
    }
    end = end!;
    // Nor the status a run ends with.
    if (caps) end = { ...end, message: caps.mask(end.message), debug: caps.mask(end.debug) };
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
      { type: "put" as const, key: dir + STATUS_KEYS.state, value: end.state },
      { type: "put" as const, key: dir + STATUS_KEYS.message, value: end.message },
      { type: "put" as const, key: dir + STATUS_KEYS.debug, value: end.debug },
      {
        type: "put" as const,
        key: dir + STATUS_KEYS.stopped,
        value: unixText(this.#deps.clock.now()),
      },
    ];
    try {
      const mine = await this.#deps.store.txn(
        [{ key: dir + STATUS_KEYS.running, target: "value", op: "==", value: token }],
        [...ops, { type: "delete", key: dir + STATUS_KEYS.running }],
      );
      if (mine.succeeded) return true;
      const orphan = await this.#deps.store.txn(
        [
          { key: dir + STATUS_KEYS.running, target: "createRevision", op: "==", value: 0 },
          { key: dir + STATUS_KEYS.started, target: "value", op: "==", value: started },
        ],
        ops,
      );
      if (!orphan.succeeded && !leaseLost) {
        this.#log(
          "warn",
          "status not written: the status changed under this run " +
            "(another host took the task over, or the task was deleted)",
        );
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
