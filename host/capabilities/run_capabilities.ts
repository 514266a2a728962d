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
import { hostMethods } from "./methods.ts";

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
  /** Error records (`moat.set_error`). */
  errors: ErrorRecords;
  /** The bus scripts serve, call and alert on. */
  bus: Bus;
  /** Where runs claim the RPC names they serve (no squatting across scripts). */
  rpcNames?: RpcNames;
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
  /** `moat.load`: fetch another script (and remember that this run uses it). */
  load(name: string): Promise<LoadedScript>;
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

  private constructor(view: ScriptView, bus: ScriptBus, methods: MethodTable, initial: DataEvent) {
    this.view = view;
    this.bus = bus;
    this.methods = methods;
    this.initial = initial;
  }

  /** Open the capabilities of `run`: read the task's data and follow its changes. */
  static async open(host: HostCapabilities, run: RunSpec): Promise<RunCapabilities> {
    const view = new ScriptView(host, run);
    let initial: DataEvent;
    try {
      initial = await view.open();
    } catch (e) {
      view.close();
      throw e;
    }
    const { rpcNames } = host;
    const bus = new ScriptBus(host.bus, (e) => view.emit(e), {
      quotas: run.quotas,
      ...(rpcNames
        ? { claims: { names: rpcNames, script: run.script, task: run.task, lease: run.lease } }
        : {}),
    });
    const methods = hostMethods({
      clock: host.clock,
      zone: host.zone,
      task: run.task,
      script: run.script,
      view,
      errors: host.errors,
      load: run.load,
      bus,
      quotas: run.quotas,
    });
    return new RunCapabilities(view, bus, methods, initial);
  }

  /** The script's debug object (`moat.debug_obj`), if it set one. */
  get debug(): Json | undefined {
    return this.bus.debug;
  }

  /** Start delivering events into the script through `send` (those queued first). */
  attach(send: (event: ScriptEvent) => void): void {
    this.view.attach(send);
  }

  /** Stop every delivery and drop every registration. Safe to call twice. */
  async close(): Promise<void> {
    this.view.close();
    await this.bus.close();
  }
}
