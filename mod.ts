/**
 * moat-scripts: the user-scripts runtime of MoaT, embeddable.
 *
 * Everything `moat` does is available here: the store (etcd or the
 * embedded `MemoryStore`), script and task definitions, time
 * specifications, and the host that runs script tasks in sandboxes.
 *
 * ## The embedding API
 *
 * Stable (changed only with a new minor version while the version is 0.x,
 * and with a major one from 1.0 on): the {@linkcode Store} interface with
 * {@linkcode EtcdStore} and {@linkcode MemoryStore}; {@linkcode Layout} and
 * the value codec; {@linkcode ScriptDefs}, {@linkcode TaskDefs},
 * {@linkcode checkScript}, {@linkcode readStatus}, {@linkcode ErrorRecords};
 * {@linkcode timeAt}, {@linkcode runAt}, {@linkcode waitUntilSpec} and the
 * clocks; the {@linkcode Bus} interface with {@linkcode AmqpBus} and
 * {@linkcode LocalBus}; {@linkcode Host}, {@linkcode SandboxPool} and the
 * {@linkcode Isolation} interface; the loggers; the error classes.
 *
 * Internal, exported for test doubles and other {@linkcode Isolation}s,
 * and changed whenever the bridge's protocol changes: the wire types of
 * the bridge (`Methods`, `MethodName`, `Events`, `EventMessage` and the
 * other types of `sandbox/protocol.ts`), the method table
 * (`MethodTable`, `mapMethods`, `CallContext`) and virtual time's link
 * (`VirtualTimeLink`, `Settled`). Modules not exported here (files
 * starting with `_`, `host/cli/`) are internal too.
 *
 * Two parts read files beside this module at run time, so they need the
 * module on disk (a checkout, or a vendored copy), not loaded from a
 * registry's `https:` URL: {@linkcode SandboxPool} starts its sandboxes
 * with `deno run --no-remote …/sandbox/process.ts` (unless given
 * `sandboxBin`, a compiled `moat-sandbox`: docs/compile.md), and the type
 * check of {@linkcode checkScript} reads `types/moat.d.ts`.
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
  CompareOp,
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
export {
  type EtcdAuthOptions,
  type EtcdPermission,
  type EtcdRole,
  EtcdStore,
  type EtcdStoreOptions,
  type EtcdTlsOptions,
} from "./host/store/etcd_store.ts";
export {
  CODE_TAG,
  ERROR_RECORD_KEYS,
  Layout,
  RUN_DEFAULTS,
  SCRIPT_KEYS,
  STATUS_KEYS,
  TASK_KEYS,
  TASK_TAG,
} from "./host/layout.ts";
export {
  decodeTyped,
  decodeUntyped,
  encodeTyped,
  encodeUntyped,
  type Value,
  VALUE_TYPES,
  type ValueType,
} from "./host/codec.ts";
export {
  checkScript,
  type Diagnostic,
  type Language,
  ScriptCheckError,
} from "./host/scripts/check.ts";
export { DefinitionError, ScriptDefs, type ScriptInfo } from "./host/scripts/definitions.ts";
export { TaskDefs, type TaskInfo } from "./host/tasks/task_defs.ts";
export {
  readStatus,
  type ScheduleStatus,
  type ShownState,
  type StatusRow,
} from "./host/tasks/status.ts";
export { Host, type HostOptions } from "./host/tasks/host.ts";
export type { TaskRun, Transition } from "./host/tasks/task_runner.ts";
export { timeAt, type TimeAtOptions } from "./host/time/time_at.ts";
export type { Location } from "./host/time/sun.ts";
export { TimeSpecError, type TimeSpecInput } from "./host/time/time_spec.ts";
export { type Clock, SystemClock } from "./host/time/clock.ts";
export { type RunUntilIdleOptions, VirtualClock } from "./host/time/virtual_clock.ts";
export {
  runAt,
  type RunAtOptions,
  type RunAtTimer,
  type WaitOptions,
  waitUntilSpec,
} from "./host/time/wait.ts";
export {
  BridgeError,
  type CallContext,
  type Isolation,
  mapMethods,
  type MethodHandler,
  type MethodTable,
  type SandboxLimits,
  SandboxPool,
  type SandboxPoolOptions,
  type ScriptEnd,
  type ScriptHandle,
  type Settled,
  type StartOptions,
  type VirtualTimeLink,
} from "./host/bridge/sandbox.ts";
export {
  type AlertEvent,
  type DataEvent,
  type DebugEvent,
  ERROR_CODES,
  type ErrorCode,
  type EventMessage,
  type EventMessageOf,
  type EventName,
  type Events,
  type Firing,
  type Json,
  type MethodName,
  type Methods,
  type NodeSnapshot,
  type RpcEvent,
  type ScriptEvent,
  type ScriptEventOf,
  type TimeOptions,
  type TimerFiring,
  type TimeSpec,
  type TreeEvent,
} from "./sandbox/protocol.ts";
export type {
  AlertHandler,
  Bus,
  BusGroup,
  BusState,
  CallOptions,
  GroupOptions,
  Registration,
  RemoteErrorInfo,
  RpcHandler,
  RpcInfo,
  ServeOptions,
} from "./host/bus/bus.ts";
export { BusError, BusUnavailableError, RpcRemoteError, RpcTimeoutError } from "./host/bus/bus.ts";
export { LocalBus, type LocalBusOptions } from "./host/bus/local_bus.ts";
export {
  AmqpBus,
  type AmqpBusOptions,
  type AmqpExchanges,
  type AmqpTlsOptions,
} from "./host/bus/amqp_bus.ts";
export {
  type ErrorRecord,
  ErrorRecords,
  type SetErrorOptions,
} from "./host/capabilities/error_records.ts";
export { DEFAULT_QUOTAS, QUOTA_KEYS, type Quotas, readQuotas } from "./host/capabilities/quotas.ts";
export { RpcNames } from "./host/capabilities/rpc_names.ts";
export { LineLogger, type Logger, type LogLevel, MemoryLogger } from "./host/log.ts";
