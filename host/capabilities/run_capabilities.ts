/**
 * The one place that wires the capabilities of one run of a script: its
 * view of the tree (`ScriptView`), its use of the bus (`ScriptBus`) and the
 * method table the bridge calls (`hostMethods`), all bound to the run's
 * task, script, `running` token, lease and quotas. The task runner opens
 * them when a run starts and closes them when it ends, however it ends.
 *
 * @module
 */

import type { Store } from "../store/store.ts";
import type { WatchHub } from "../store/watch_hub.ts";
import type { Layout } from "../layout.ts";
import type { Clock } from "../time/clock.ts";
import type { Bus } from "../bus/bus.ts";
import type { MethodTable } from "../bridge/method_table.ts";
import type { DataEvent, Json, ScriptEvent } from "../../sandbox/protocol.ts";
import type { ErrorRecords } from "./error_records.ts";
import type { RpcNames } from "./rpc_names.ts";
import type { Quotas } from "./quotas.ts";
import { ScriptView } from "./script_view.ts";
import { ScriptBus } from "./script_bus.ts";
import { deniedRecorder, hostMethods } from "./methods.ts";
import { DebugObject } from "./debug_object.ts";
import { maskJson, maskText } from "./secret_mask.ts";
import { Schedules } from "./schedules.ts";
import { DeniedError, Grants, type Manifest } from "./manifest.ts";

/** A script ready to run: its name and the JavaScript to evaluate. */
export interface LoadedScript {
  /** The script's name. */
  script: string;
  /** Its code as JavaScript (TypeScript already transpiled). */
  js: string;
}

/** What every run on one host shares. */
export interface HostCapabilities {
  /** Where the tree lives. */
  store: Store;
  /** The keys below the root. */
  layout: Layout;
  /** The host's one watch on the tree. */
  hub: WatchHub;
  /** The clock of `moat.time_at` and `moat.wait`. */
  clock: Clock;
  /** The installation's time zone now (`/config/timezone`, else the host's). */
  zone(): string;
  /**
   * The installation's location now (`/config/location`, "LAT LON"), for
   * sun events in time specs.
   * @default read from the store and followed through `hub` (see {@linkcode followLocation})
   */
  location?(): string | undefined;
  /** Error records (`moat.set_error`). */
  errors: ErrorRecords;
  /** The bus scripts serve, call and alert on. */
  bus: Bus;
  /** Where runs claim the RPC names they serve (no squatting across scripts). */
  rpcNames?: RpcNames;
}

const followed = new WeakMap<WatchHub, Promise<() => string | undefined>>();

/**
 * `/config/location` of the installation, read once per host (per watch
 * hub) and followed through the hub's watch, as the host follows
 * `/config/timezone`: every run of the host sees the newest value.
 */
export function followLocation(
  host: Pick<HostCapabilities, "store" | "layout" | "hub">,
): Promise<() => string | undefined> {
  let found = followed.get(host.hub);
  if (found === undefined) {
    const key = `${host.layout.configPrefix}location`;
    let value: string | undefined;
    let changes = 0;
    host.hub.subscribe(key, (events) => {
      const mine = events.filter((e) => e.kv.key === key);
      const last = mine[mine.length - 1];
      if (last === undefined) return;
      changes++;
      value = last.type === "put" ? last.kv.value : undefined;
    }, {
      onResync: () => {
        const before = changes;
        void host.store.get(key).then((kv) => {
          // A later event already set the newest value.
          if (changes === before) value = kv?.value;
        }, () => {});
      },
    });
    const get = () => value;
    found = host.store.get(key).then((kv) => {
      if (changes === 0) value = kv?.value;
      return get;
    }, () => get);
    followed.set(host.hub, found);
  }
  return found;
}

/** One run: whose capabilities these are. */
export interface RunSpec {
  /** The task's path. */
  task: string;
  /** The running script's name. */
  script: string;
  /** The run's `running` value: the script's writes are made only while it stands. */
  token: string;
  /** The id of the lease of `running`: RPC name claims end with it. */
  lease: string;
  /** What the run may make the installation spend. */
  quotas: Quotas;
  /**
   * The script's capability manifest (manifest.ts), its `limits` applied to
   * `quotas` already. Libraries the run loads share it.
   * @default none: every capability as without a manifest
   */
  manifest?: Manifest | undefined;
  /** `moat.load`: fetch another script (and remember that this run uses it). */
  load(name: string): Promise<LoadedScript>;
  /**
   * Whether the run's lease is certainly still held (`Lease.held`): nothing
   * scheduled fires once it is not.
   * @default always held (a run without a lease to lose)
   */
  held?(): boolean;
  /** Report trouble the script cannot act on (a firing's record not written). */
  warn?(message: string): void;
  /** Trace what the script cannot see (each scheduled firing), at debug level. */
  debug?(message: string): void;
}

/** The capabilities of one run; see the module doc. */
export class RunCapabilities {
  /** The run's view of the tree. */
  readonly view: ScriptView;
  /** The run's registrations and traffic on the bus. */
  readonly bus: ScriptBus;
  /** What the bridge calls for the script. */
  readonly methods: MethodTable;
  /** The task's `moat.data` as the script starts. */
  readonly initial: DataEvent;
  /** The run's schedules (records of firings, catch-up). */
  readonly schedules: Schedules;
  #debug: DebugObject;
  #debugRequests = 0;

  /**
   * Asked before each `moat.thread` starts: the `denied` message when the
   * manifest says `"thread": false` (recorded once per run), else `undefined`.
   */
  readonly threadRefusal: () => string | undefined;

  private constructor(
    view: ScriptView,
    bus: ScriptBus,
    methods: MethodTable,
    initial: DataEvent,
    debug: DebugObject,
    schedules: Schedules,
    threadRefusal: () => string | undefined,
  ) {
    this.threadRefusal = threadRefusal;
    this.view = view;
    this.bus = bus;
    this.methods = methods;
    this.initial = initial;
    this.#debug = debug;
    this.schedules = schedules;
  }

  /** Open the capabilities of `run`: read the task's data and follow its changes. */
  static async open(host: HostCapabilities, run: RunSpec): Promise<RunCapabilities> {
    const grants = new Grants(run.manifest);
    const view = new ScriptView(host, { ...run, grants });
    let initial: DataEvent;
    let schedules: Schedules;
    try {
      initial = await view.open();
      schedules = await Schedules.open({
        store: host.store,
        layout: host.layout,
        clock: host.clock,
        task: run.task,
        token: run.token,
        held: run.held ?? (() => true),
        ...(run.warn ? { warn: run.warn } : {}),
        ...(run.debug ? { debug: run.debug } : {}),
      });
    } catch (e) {
      view.close();
      throw e;
    }
    const { rpcNames } = host;
    const bus = new ScriptBus(host.bus, (e) => view.emit(e), {
      quotas: run.quotas,
      grants,
      ...(rpcNames
        ? { claims: { names: rpcNames, script: run.script, task: run.task, lease: run.lease } }
        : {}),
    });
    const location = host.location ?? await followLocation(host);
    const debug = new DebugObject();
    const recordDenied = deniedRecorder({
      errors: host.errors,
      task: run.task,
      quotas: run.quotas,
    });
    const methods = hostMethods({
      clock: host.clock,
      zone: host.zone,
      location,
      task: run.task,
      script: run.script,
      view,
      errors: host.errors,
      load: run.load,
      bus,
      quotas: run.quotas,
      debug,
      schedules,
      grants,
      recordDenied,
    });
    const threadRefusal = () => {
      try {
        grants.thread();
        return undefined;
      } catch (e) {
        if (!(e instanceof DeniedError)) throw e;
        void recordDenied(e);
        return e.message;
      }
    };
    return new RunCapabilities(view, bus, methods, initial, debug, schedules, threadRefusal);
  }

  /** The script's debug object (`moat.debug_obj`) as it last sent it, if it set one. */
  get debug(): Json | undefined {
    const v = this.#debug.value;
    return v === undefined ? undefined : maskJson(v, this.view.secretValues());
  }

  /** `text` with the task's secret values masked (secret_mask.ts): for what the run logs. */
  mask(text: string): string {
    return maskText(text, this.view.secretValues());
  }

  /**
   * The script's debug object (`moat.debug_obj`) as it is now, if it set
   * one: the script is asked for a fresh copy (see debug_object.ts).
   */
  debugNow(): Promise<Json | undefined> {
    return this.#debug.current(() =>
      this.view.emit({ event: "debug", data: { request: ++this.#debugRequests } })
    ).then((v) => v === undefined ? undefined : maskJson(v, this.view.secretValues()));
  }

  /** Start delivering events into the script through `send` (those queued first). */
  attach(send: (event: ScriptEvent) => void): void {
    this.view.attach(send);
  }

  /** Stop every delivery and drop every registration. Safe to call twice. */
  async close(): Promise<void> {
    this.view.close();
    await this.bus.close();
    // Records of firings that completed are written before the run's end is.
    await this.schedules.close();
  }
}
