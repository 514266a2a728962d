/**
 * The host: runs every script task below `/task/<host>/<path>` and follows
 * the tree live (a new task starts, a deleted one stops, a changed one
 * restarts; a changed script restarts its tasks).
 *
 * @module
 */

import type { KeyValue, RangeResult, Store, WatchEvent } from "../store/store.ts";
import { type ResyncGap, WatchFailedError, WatchHub } from "../store/watch_hub.ts";
import { CODE_TAG, inTree, Layout, SCRIPT_KEYS, STATUS_KEYS, TASK_KEYS } from "../layout.ts";
import type { Clock } from "../time/clock.ts";
import { SystemClock } from "../time/clock.ts";
import type { Logger } from "../log.ts";
import type { Isolation, ScriptEnd } from "../bridge/sandbox.ts";
import { readLimits } from "../bridge/limits.ts";
import { readQuotas } from "../capabilities/quotas.ts";
import { ErrorRecords } from "../capabilities/error_records.ts";
import { RpcNames } from "../capabilities/rpc_names.ts";
import type { Bus, Registration } from "../bus/bus.ts";
import { LocalBus } from "../bus/local_bus.ts";
import { ScriptDefs } from "../scripts/definitions.ts";
import { CodeVersions } from "../scripts/versions.ts";
import { SCRIPT_TASKDEF, TaskDefs, type TaskInfo, toTask } from "./task_defs.ts";
import { readGlobalSettings, readGroup, runConfig } from "./run_config.ts";
import { forgetTask } from "./status.ts";
import {
  type LoadedScript,
  type RunnerDeps,
  type RunSettings,
  type TaskRun,
  TaskRunner,
  type Transition,
} from "./task_runner.ts";

/** Options of a `Host`. */
export interface HostOptions {
  /** Where the tasks, scripts and status live. */
  store: Store;
  /** The keys below the root. */
  layout: Layout;
  /** This host's name: it runs the tasks below `/task/<hostName>/`. */
  hostName: string;
  /** What runs each script (a `SandboxPool`). */
  isolation: Isolation;
  /** Where the host and its scripts log. */
  logger: Logger;
  /** Task path prefixes below `/task/<hostName>/`; empty = all. */
  paths?: string[];
  /** The clock of every timer and timestamp. @default new SystemClock() */
  clock?: Clock;
  /** Run each task once, without restarts. */
  once?: boolean;
  /** The bus for scripts' RPC and alerts, and task state alerts. @default new LocalBus() */
  bus?: Bus;
  /** Called on every task state change (after it is published); must not throw. */
  onTransition?(t: Transition): void;
}

/** Runs a host's script tasks. */
export class Host {
  #o: HostOptions;
  #clock: Clock;
  #hub: WatchHub;
  #tasks: TaskDefs;
  #versions: CodeVersions;
  #errors: ErrorRecords;
  #rpcNames: RpcNames;
  #bus: Bus;
  #ownBus: boolean;
  #debugReg: Registration | undefined;
  #runners = new Map<string, TaskRunner>();
  /** The revision of the task read that started each runner. */
  #readAt = new Map<string, number>();
  /** Per-path chain of pending reconciliations, so they never overlap. */
  #pending = new Map<string, Promise<void>>();
  #prefixes: string[];
  /**
   * What the host read when it started, for the first start of each task:
   * every task (at `revision`, one range read per prefix) and every task's
   * status (one more), so that hundreds of starts need not read them one
   * by one. Each entry is used once; later starts read anew.
   */
  #initial:
    | {
      revision: number;
      tasks: Map<string, TaskInfo>;
      /** Undefined when that read failed. */
      status: Map<string, { started?: KeyValue; stopped?: KeyValue }> | undefined;
    }
    | undefined;
  #zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  #closed = false;

  /** A host that starts nothing until `start()`. */
  constructor(options: HostOptions) {
    this.#o = options;
    this.#clock = options.clock ?? new SystemClock();
    const { store, layout } = options;
    this.#hub = new WatchHub(store, layout.root + "/", {
      onError: (e) => {
        if (e instanceof WatchFailedError) {
          // The hub re-opens its watch by itself; the subscribers re-read.
          const why = e.cause instanceof Error ? e.cause.message : String(e.cause);
          options.logger.log(
            "warn",
            "host",
            `watch on ${e.prefix} failed at revision ${e.revision}: ${why}; re-reading the tree`,
          );
        } else {
          options.logger.log("error", "host", `watch failed: ${e.message}`);
        }
      },
      onRecovered: (gap) =>
        options.logger.log(
          "info",
          "host",
          `watch on ${layout.root}/ recovered: watching again after revision ${gap.revision}`,
        ),
    });
    const scripts = new ScriptDefs(store, layout, { clock: this.#clock });
    this.#tasks = new TaskDefs(store, layout, scripts);
    this.#versions = new CodeVersions(store, layout, {
      clock: this.#clock,
      log: (level, m) => options.logger.log(level, "host", m),
    });
    this.#errors = new ErrorRecords(store, layout, this.#clock);
    this.#rpcNames = new RpcNames(store, layout);
    this.#ownBus = options.bus === undefined;
    this.#bus = options.bus ?? new LocalBus();
    const base = `${layout.tasksPrefix}${options.hostName}/`;
    this.#prefixes = (options.paths?.length ? options.paths : [""]).map((p) =>
      p === "" ? base : `${base}${p.replace(/\/+$/, "")}/`
    );
  }

  /** The task paths that have a runner now. */
  get running(): string[] {
    return [...this.#runners.keys()].sort();
  }

  /** The runner of a task, if any (for tests and `moat status`). */
  runner(path: string): TaskRun | undefined {
    return this.#runners.get(path);
  }

  /** Read the tree, start every task, and follow changes. */
  async start(): Promise<void> {
    const { store, layout } = this.#o;
    const tz = await store.get(layout.timezoneKey);
    if (tz) this.#setZone(tz.value);
    let revision = 0;
    const paths = new Set<string>();
    const taskKeys = new Map<string, Map<string, string>>();
    // Every task's status too, read beside the tasks: the first try of each
    // to take `running` judges from it (its transaction checks it still
    // holds), and the sweep of deleted tasks' status uses it. Best effort:
    // without it, each runner reads its own.
    const statusRead = Promise.all(this.#statusPrefixes().map((p) => store.range(p)))
      .catch(() => undefined);
    for (const prefix of this.#prefixes) {
      const res = await store.range(prefix);
      revision = Math.max(revision, res.revision);
      for (const kv of res.kvs) {
        const p = this.#taskPathOf(kv.key);
        if (!p) continue;
        paths.add(p);
        let keys = taskKeys.get(p);
        if (!keys) taskKeys.set(p, keys = new Map());
        keys.set(kv.key.slice(layout.taskDir(p).length), kv.value);
      }
    }
    const statusReads = await statusRead;
    const status = new Map<string, { started?: KeyValue; stopped?: KeyValue }>();
    for (const kv of statusReads?.flatMap((r) => r.kvs) ?? []) {
      const split = Layout.taskOf(kv.key, layout.statusPrefix);
      if (!split) continue;
      const field = split.rest === STATUS_KEYS.started
        ? "started"
        : split.rest === STATUS_KEYS.stopped
        ? "stopped"
        : undefined;
      if (field === undefined) continue;
      let s = status.get(split.path);
      if (!s) status.set(split.path, s = {});
      s[field] = kv;
    }
    this.#initial = {
      revision,
      tasks: new Map([...taskKeys].map(([p, keys]) => [p, toTask(p, keys)])),
      status: statusReads ? status : undefined,
    };
    // Everything after the snapshot arrives through the one watch.
    // After a failed watch the hub re-opens it and calls onResync with the
    // gap (since, revision]: each subscription re-reads what it follows and
    // acts on what changed in the gap, restarting nothing that did not.
    const missed = async (prefix: string, gap: ResyncGap) => {
      const { kvs } = await store.range(prefix);
      const changed = kvs.filter((kv) => kv.modRevision > gap.since);
      return { kvs, events: changed.map((kv): WatchEvent => ({ type: "put", kv })) };
    };
    const resyncFailed = (e: unknown) =>
      this.#o.logger.log("error", "host", `cannot re-read the tree: ${(e as Error).message}`);
    this.#hub.subscribe(layout.tasksPrefix, (events) => this.#onTaskEvents(events), {
      onResync: (gap) =>
        void Promise.all(this.#prefixes.map((p) => missed(p, gap))).then((reads) => {
          // Changed in the gap (new tasks too): as if their events had come.
          // Later changes come as events: those are left to them.
          this.#onTaskEvents(
            reads.flatMap((r) => r.events).filter((e) => e.kv.modRevision <= gap.revision),
          );
          const found = new Set<string>();
          for (const kv of reads.flatMap((r) => r.kvs)) {
            const p = this.#taskPathOf(kv.key);
            if (!p) continue;
            found.add(p);
            // A task there before the gap without a runner: start it.
            if (kv.modRevision <= gap.since && !this.#runners.has(p) && !this.#pending.has(p)) {
              this.#schedule(p, "watch resync");
            }
          }
          // Runners whose task was deleted in the gap: stop them.
          for (const p of [...this.#runners.keys()]) {
            if (!found.has(p)) this.#schedule(p, "watch resync");
          }
        }, resyncFailed),
    });
    this.#hub.subscribe(layout.scriptsPrefix, (events) => this.#onScriptEvents(events), {
      onResync: (gap) =>
        void missed(layout.scriptsPrefix, gap).then(
          ({ events }) =>
            this.#onScriptEvents(events.filter((e) => e.kv.modRevision <= gap.revision)),
          resyncFailed,
        ),
    });
    let zoneChanges = 0;
    this.#hub.subscribe(layout.timezoneKey, (events) => {
      zoneChanges++;
      const last = events[events.length - 1]!;
      this.#setZone(last.type === "put" ? last.kv.value : "");
    }, {
      onResync: () => {
        const before = zoneChanges;
        void store.get(layout.timezoneKey).then((tz) => {
          // A later event already set the newest zone.
          if (zoneChanges === before) this.#setZone(tz?.value ?? "");
        }, resyncFailed);
      },
    });
    await this.#hub.start(revision + 1);
    this.#debugReg = await this.#bus.serve(
      debugRpcName(this.#o.hostName),
      (args) => this.debugObjects(typeof args === "string" ? args : ""),
    );
    for (const p of [...paths].sort()) this.#schedule(p);
    // Best effort, in the background; a host shutting down meanwhile drops it.
    void this.#sweep(paths, statusReads).catch((e) => {
      if (this.#closed) return;
      this.#o.logger.log("warn", "host", `cannot sweep deleted tasks: ${(e as Error).message}`);
    });
  }

  #setZone(zone: string): void {
    const z = zone.trim();
    if (z === "") {
      this.#zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
      return;
    }
    try {
      new Intl.DateTimeFormat("en", { timeZone: z });
      this.#zone = z;
    } catch {
      this.#o.logger.log("warn", "host", `ignoring /config/timezone "${z}": not a known time zone`);
    }
  }

  /** The path of the task a key belongs to, when it is one of ours. */
  #taskPathOf(key: string): string | undefined {
    if (!this.#prefixes.some((p) => key.startsWith(p))) return undefined;
    return Layout.taskOf(key, this.#o.layout.tasksPrefix)?.path;
  }

  #onTaskEvents(events: WatchEvent[]): void {
    const changed = new Map<string, number>();
    for (const e of events) {
      const p = this.#taskPathOf(e.kv.key);
      if (!p) continue;
      // data/ and secret/ belong to the running script (moat.data): no restart.
      const rest = e.kv.key.slice(this.#o.layout.taskDir(p).length);
      const own = rest.startsWith(TASK_KEYS.data) || rest.startsWith(TASK_KEYS.secret);
      if (own && this.#runners.has(p)) continue;
      changed.set(p, Math.max(changed.get(p) ?? 0, e.kv.modRevision));
    }
    for (const [p, revision] of changed) this.#schedule(p, "task changed", revision);
  }

  #onScriptEvents(events: WatchEvent[]): void {
    const layout = this.#o.layout;
    const touched = new Map<string, Set<string>>();
    for (const e of events) {
      const split = Layout.splitTagged(e.kv.key, layout.scriptsPrefix, CODE_TAG);
      if (!split) continue;
      const { name, rest: field } = split;
      let s = touched.get(name);
      if (!s) touched.set(name, s = new Set());
      s.add(e.type === "delete" ? `-${field}` : field);
    }
    for (const [name, fields] of touched) {
      if (fields.has(SCRIPT_KEYS.newCode)) void this.#versions.promote(name);
      const relevant = [
        SCRIPT_KEYS.code,
        SCRIPT_KEYS.current,
        SCRIPT_KEYS.oldCode,
        SCRIPT_KEYS.language,
        SCRIPT_KEYS.caps,
      ]
        .some((f) => fields.has(f) || fields.has(`-${f}`));
      if (!relevant) continue;
      const deleted = fields.has(`-${SCRIPT_KEYS.code}`) && !fields.has(SCRIPT_KEYS.code);
      for (const [path, runner] of this.#runners) {
        if (runner.loaded.has(name)) {
          if (deleted) {
            void runner.stop(`loaded script ${name} was deleted`);
          } else {
            this.#schedule(path, `loaded script ${name} changed`);
          }
          continue;
        }
        // A runner that has not read its task yet loads the new code anyway.
        if (runner.script === name) this.#schedule(path, `script ${name} changed`);
      }
    }
  }

  /**
   * Queue a reconciliation of one task path behind any pending one;
   * `changedAt` is the revision of the change that asks for it, if any.
   */
  #schedule(path: string, reason = "new task", changedAt?: number): void {
    if (this.#closed) return;
    const prev = this.#pending.get(path) ?? Promise.resolve();
    const next = prev.then(() => this.#reconcile(path, reason, changedAt)).catch((e) =>
      this.#o.logger.log("error", path, `could not start or stop: ${(e as Error).message}`)
    );
    this.#pending.set(path, next);
    void next.finally(() => {
      if (this.#pending.get(path) === next) this.#pending.delete(path);
    });
  }

  async #reconcile(path: string, reason: string, changedAt?: number): Promise<void> {
    if (this.#closed) return;
    // A change that the read which started the current runner already saw
    // is no change to it (a task written key by key starts once, not once
    // per key whose event comes after that read).
    if (changedAt !== undefined && this.#runners.has(path)) {
      if (changedAt <= (this.#readAt.get(path) ?? 0)) return;
    }
    // A task's first start after the host's own start uses what the host
    // read then (the watch follows from that revision on: a later change
    // schedules another reconciliation); any other reads the task now.
    const initial = this.#initial;
    const first = initial?.tasks.get(path);
    initial?.tasks.delete(path);
    const status = initial?.status?.get(path) ?? (initial?.status ? {} : undefined);
    initial?.status?.delete(path);
    // Every task of the start has had its turn: what is left (the status
    // of deleted tasks) is the sweep's, which has its own copy.
    if (initial?.tasks.size === 0) this.#initial = undefined;
    const fromStart = first !== undefined && reason === "new task" && !this.#runners.has(path);
    const { task, revision } = fromStart
      ? { task: first, revision: initial!.revision }
      : await this.#tasks.read(path);
    const wanted = task !== undefined && task.taskdef === SCRIPT_TASKDEF;
    const current = this.#runners.get(path);
    if (current) {
      if (this.#o.once && wanted && reason !== "task changed") return;
      await current.stop(wanted ? `restarting: ${reason}` : "task deleted");
      this.#runners.delete(path);
      this.#readAt.delete(path);
      if (!wanted) this.#o.logger.log("info", path, "task deleted: stopped");
    }
    if (task === undefined) await this.#forget(path);
    if (!wanted || this.#closed) return;
    const runner = new TaskRunner(path, this.#deps(), {
      once: this.#o.once ?? false,
      // The run starts from this read (a later change restarts the runner).
      task,
      ...(fromStart && status !== undefined ? { status } : {}),
    });
    // A runner that finished by itself (once, or no restart) stays
    // registered until its task changes, so it is not started again.
    this.#runners.set(path, runner);
    this.#readAt.set(path, revision);
  }

  /**
   * A deleted task leaves no status or error records behind (docs/etcd-layout.md,
   * "Deleting a task"); best effort: a failure is logged, and the next start
   * of a host sweeps again.
   */
  async #forget(path: string): Promise<void> {
    try {
      if (await forgetTask(this.#o.store, this.#o.layout, path)) {
        this.#o.logger.log("info", path, "task deleted: removed its status and error records");
      }
    } catch (e) {
      if (this.#closed) return; // the store may be gone; the next start sweeps
      this.#o.logger.log(
        "warn",
        path,
        `could not remove the deleted task's status: ${(e as Error).message}`,
      );
    }
  }

  /**
   * Remove the status of tasks below our prefixes that were deleted while no
   * host watched (a hand deletion with every host down). A status whose
   * `running` key exists is left alone: some run still holds it.
   */
  async #sweep(tasks: ReadonlySet<string>, read?: RangeResult[]): Promise<void> {
    const { store, layout } = this.#o;
    const reads = read ??
      await Promise.all(this.#statusPrefixes().map((prefix) => store.range(prefix)));
    const orphans = new Map<string, boolean>();
    for (const kv of reads.flatMap((r) => r.kvs)) {
      const split = Layout.taskOf(kv.key, layout.statusPrefix);
      if (!split || tasks.has(split.path)) continue;
      const running = split.rest === STATUS_KEYS.running;
      orphans.set(split.path, (orphans.get(split.path) ?? false) || running);
    }
    for (const [path, running] of orphans) {
      if (running || this.#closed || this.#pending.has(path) || this.#runners.has(path)) continue;
      await this.#forget(path);
    }
  }

  /** The status prefixes of this host's task prefixes. */
  #statusPrefixes(): string[] {
    const { layout } = this.#o;
    return this.#prefixes.map((p) => layout.statusPrefix + p.slice(layout.tasksPrefix.length));
  }

  #deps(): RunnerDeps {
    const o = this.#o;
    return {
      store: o.store,
      layout: o.layout,
      hub: this.#hub,
      clock: this.#clock,
      zone: () => this.#zone,
      errors: this.#errors,
      bus: this.#bus,
      rpcNames: this.#rpcNames,
      isolation: o.isolation,
      logger: o.logger,
      hostName: o.hostName,
      readTask: (p: string) =>
        this.#tasks.get(p).then((t) => t?.taskdef === SCRIPT_TASKDEF ? t : undefined),
      settings: (t: TaskInfo) => this.#settings(t),
      loadScript: (name: string) => this.#loadScript(name),
      onTransition: (t: Transition) => {
        this.#publish(t);
        o.onTransition?.(t);
      },
    };
  }

  /**
   * A task's run settings, sandbox limits and quotas (docs/security.md):
   * `/config/run/<key>`, read once per start, under the task's own keys.
   */
  async #settings(task: TaskInfo): Promise<RunSettings> {
    const global = await this.#globalSettings();
    const warn = (m: string) => this.#o.logger.log("warn", task.path, m);
    return {
      config: runConfig(global, task.other, warn),
      limits: readLimits(global, task.other, warn),
      quotas: readQuotas(global, task.other, warn),
      group: readGroup(global, task.other, warn),
    };
  }

  /** The `/config/run` read that starts next, shared by every start that asks before it does. */
  #globalRead: Promise<Record<string, string>> | undefined;

  /**
   * `/config/run`, read after the call: starts that ask within the same
   * turn of the event loop (hundreds, when a host starts) share one range
   * read instead of one each. Each still sees every write made before it asked.
   */
  #globalSettings(): Promise<Record<string, string>> {
    this.#globalRead ??= new Promise((resolve) => setTimeout(resolve, 0)).then(() => {
      this.#globalRead = undefined;
      return readGlobalSettings(this.#o.store, this.#o.layout);
    });
    return this.#globalRead;
  }

  /** The load of each script that starts next, shared like the `/config/run` read. */
  #scriptLoads = new Map<string, Promise<LoadedScript>>();

  /**
   * A script's code, read after the call: the starts of its tasks that ask
   * within the same turn of the event loop (all of them, when a host
   * starts) share one read. Each still sees every write made before it asked.
   */
  #loadScript(name: string): Promise<LoadedScript> {
    let load = this.#scriptLoads.get(name);
    if (load === undefined) {
      load = new Promise((resolve) => setTimeout(resolve, 0)).then(() => {
        this.#scriptLoads.delete(name);
        return this.#versions.load(name);
      });
      this.#scriptLoads.set(name, load);
    }
    return load;
  }

  /** Resolves once every start, stop and restart queued so far has been carried out. */
  async reconciled(): Promise<void> {
    while (this.#pending.size > 0) await Promise.all([...this.#pending.values()]);
  }

  /**
   * Resolves once every task has finished and nothing is pending (for
   * `--once`): all runners done.
   */
  async settled(): Promise<Map<string, ScriptEnd | undefined>> {
    for (;;) {
      await Promise.all([...this.#pending.values()]);
      const runners = [...this.#runners];
      const ends = await Promise.all(runners.map(([, r]) => r.done));
      if (this.#pending.size === 0 && runners.length === this.#runners.size) {
        return new Map(runners.map(([p], i) => [p, ends[i]]));
      }
    }
  }

  /**
   * `{ task: { script: { <task path>: value } } }` for running scripts with
   * a debug object, each as it is now (every script is asked at once).
   */
  async debugObjects(prefix = ""): Promise<{ task: { script: Record<string, unknown> } }> {
    const runners = [...this.#runners].filter(([path]) => inTree(path, prefix));
    const values = await Promise.all(runners.map(([, runner]) => runner.debugNow()));
    const script: Record<string, unknown> = {};
    runners.forEach(([path], i) => {
      if (values[i] !== undefined) script[path] = values[i];
    });
    return { task: { script } };
  }

  #publish(t: Transition): void {
    const topic = taskTopic(t.task);
    this.#bus.alert(topic, { ...t }).catch((e) =>
      this.#o.logger.log("debug", t.task, `task alert ${topic} not sent: ${(e as Error).message}`)
    );
  }

  /** Stop every script (on_stop runs, status written, leases revoked). Safe twice. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await Promise.all([...this.#pending.values()]);
    await Promise.all(
      [...this.#runners.values()].map((r) => r.stop("host shutting down")),
    );
    this.#runners.clear();
    await this.#versions.close();
    await this.#hub.close();
    await this.#debugReg?.close();
    if (this.#ownBus) await this.#bus.close();
  }
}

/** A name as one word of an AMQP topic: letters, digits, "_" and "-". */
function word(s: string): string {
  return s.replace(/[^A-Za-z0-9_-]/g, "_") || "_";
}

/** The alert topic of a task's state changes: `moat.task.<dotted path>`. */
export function taskTopic(path: string): string {
  return `moat.task.${path.split("/").map(word).join(".")}`;
}

/** The host's debug RPC: `moat.debug.<host>`. */
export function debugRpcName(host: string): string {
  return `moat.debug.${word(host)}`;
}
