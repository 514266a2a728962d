/**
 * moat-scripts: the user-scripts runtime of MoaT, embeddable.
 *
 * Everything `moat` does is available here: the store (etcd or the
 * embedded `MemoryStore`), script and task definitions, time
 * specifications, and the host that runs script tasks in sandboxes.
 *
 * @example
 * ```ts
 * import { timeAt } from "./mod.ts";
 * // Saturday 2003-04-05 06:07:08 UTC: the next "10 sec" is 06:07:10.
 * const t = timeAt("10 sec", { now: 1049522828, current: true, zone: "UTC" });
 * if (t !== 1049522830) throw new Error(`got ${t}`);
 * ```
 *
 * @module
 */

export type {
  Compare,
  KeyValue,
  Lease,
  LeaseOptions,
  RangeOptions,
  RangeResult,
  Store,
  TxnOp,
  TxnResponse,
  TxnResult,
  Watch,
  WatchEvent,
  WatchOptions,
} from "./host/store/store.ts";
export {
  RangeTooLargeError,
  StoreCompactedError,
  StoreUnavailableError,
} from "./host/store/store.ts";
export { MemoryStore, type MemoryStoreOptions } from "./host/store/memory_store.ts";
export { EtcdStore } from "./host/store/etcd_store.ts";
export { Layout, RUN_DEFAULTS } from "./host/layout.ts";
export { decodeTyped, decodeUntyped, encodeTyped, encodeUntyped } from "./host/codec.ts";
export { checkScript, type Language, ScriptCheckError } from "./host/scripts/check.ts";
export { DefinitionError, ScriptDefs, type ScriptInfo } from "./host/scripts/definitions.ts";
export { TaskDefs, type TaskInfo } from "./host/tasks/task_defs.ts";
export { readStatus, type StatusRow } from "./host/tasks/status.ts";
export { Host, type HostOptions } from "./host/tasks/host.ts";
export { timeAt, type TimeAtOptions } from "./host/time/time_at.ts";
export { TimeSpecError } from "./host/time/time_spec.ts";
export { type Clock, SystemClock } from "./host/time/clock.ts";
export { VirtualClock } from "./host/time/virtual_clock.ts";
export { runAt, waitUntilSpec } from "./host/time/wait.ts";
export {
  BridgeError,
  type Isolation,
  type MethodTable,
  SandboxPool,
  type ScriptEnd,
} from "./host/bridge/sandbox.ts";
export { hostMethods } from "./host/bridge/methods.ts";
export type { Bus, Registration } from "./host/bus/bus.ts";
export { BusError, BusUnavailableError, RpcRemoteError, RpcTimeoutError } from "./host/bus/bus.ts";
export { LocalBus } from "./host/bus/local_bus.ts";
export { AmqpBus } from "./host/bus/amqp_bus.ts";
export { type ErrorRecord, ErrorRecords } from "./host/tasks/errors.ts";
export { DEFAULT_QUOTAS, QUOTA_KEYS, type Quotas, readQuotas } from "./host/tasks/quotas.ts";
export { RpcNames } from "./host/tasks/rpc_names.ts";
export { LineLogger, type Logger, MemoryLogger } from "./host/log.ts";
