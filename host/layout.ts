/**
 * The etcd layout: where every object of moat-scripts lives under the root
 * prefix (default `/moat`). docs/etcd-layout.md describes it for people.
 *
 * @module
 */

import { checkName } from "./names.ts";

/** Run-protocol defaults, in seconds (`/config/run/…`). */
export const RUN_DEFAULTS = {
  ttl: 30,
  refresh: 2,
  restart: 2,
  retry: 1,
  max_retry: 600,
} as const;

/** Names of the run settings. */
export type RunSetting = keyof typeof RUN_DEFAULTS;

/** The keys of one script definition, relative to its `:code/` directory. */
export const SCRIPT_KEYS = {
  code: "code",
  newCode: "new_code",
  oldCode: "old_code",
  language: "language",
  descr: "descr",
  created: "created",
  timestamp: "timestamp",
  current: "current",
  /** The script's capability manifest, as JSON (host/capabilities/manifest.ts). */
  caps: "caps",
  /** `types/<var>`: declared types of the script's variables. */
  types: "types/",
  /** `values/<var>`: default values of the script's variables. */
  values: "values/",
  /** `error/<tag>`: errors of the script itself (e.g. its `new_code` failed its check). */
  errors: "error/",
} as const;

/** The keys of one task, relative to its `:task/` directory. */
export const TASK_KEYS = {
  taskdef: "taskdef",
  script: "script",
  scriptLoc: "script_loc",
  descr: "descr",
  /** The task's capability manifest: replaces the script's whole (host/capabilities/manifest.ts). */
  caps: "caps",
  /** `data/<var>`: the task's own values (`moat.data`). */
  data: "data/",
  /** `values/<var>`: per-task script variables over the script's `values/`. */
  values: "values/",
  /**
   * `secret/<var>`: the task's values of variables its script declares as
   * `secret`; no script's tree view has them (`isSecretKey`), only the
   * task's own `moat.data`.
   */
  secret: "secret/",
} as const;

/** The keys of a task's run status, relative to its `:task/` directory below `statusPrefix`. */
export const STATUS_KEYS = {
  /** Lease-bound; exists exactly while the task runs. */
  running: "running",
  started: "started",
  stopped: "stopped",
  /** How the last run ended: ok, error or fail. */
  state: "state",
  message: "message",
  debug: "debug",
  /** `started` of the last run that crashed (kept by the host that took over). */
  crashed: "crashed",
  /** `error/<tag>`: pointers to the task's error records. */
  errors: "error/",
  /** `schedule/<id>`: the last completed firing of the script's schedule `id` (schedules.ts). */
  schedules: "schedule/",
} as const;

/** The keys of one error record, relative to `errorsPrefix` + `<tag>/<id>/`. */
export const ERROR_RECORD_KEYS = {
  loc: "loc",
  msg: "msg",
  counter: "counter",
  created: "created",
  timestamp: "timestamp",
} as const;

/** The tag segment of a task's directory (`<path>/:task/`). */
export const TASK_TAG = ":task";

/** The tag segment of a script's directory (`<name>/:code/`). */
export const CODE_TAG = ":code";

/**
 * Whether a root-relative key (`task/<path>/:task/secret/…`) or node is a
 * task's secret value or their directory. This is a rule on the key alone:
 * it holds whatever a script's `types/` say, so that hiding a secret cannot
 * race with its type declaration.
 */
export function isSecretKey(rel: string): boolean {
  return /^task\/.+\/:task\/secret(\/|$)/.test(rel);
}

/** Maps names to etcd keys below one root. */
export class Layout {
  /** The root prefix, e.g. `/moat`. */
  readonly root: string;

  /** Keys below `root`; throws a `RangeError` for a root that does not start with `/` or ends with one. */
  constructor(root = "/moat") {
    if (!root.startsWith("/") || root.endsWith("/") && root !== "/") {
      throw new RangeError(`root "${root}" must start with "/" and not end with "/"`);
    }
    this.root = root === "/" ? "" : root;
  }

  /** `/moat/meta/script/` */
  get scriptsPrefix(): string {
    return `${this.root}/meta/script/`;
  }

  /** `/moat/meta/script/<name>/:code/` */
  scriptDir(name: string): string {
    return `${this.scriptsPrefix}${checkName(name, "script")}/${CODE_TAG}/`;
  }

  /** `/moat/task/` */
  get tasksPrefix(): string {
    return `${this.root}/task/`;
  }

  /** `/moat/task/<path>/:task/` */
  taskDir(path: string): string {
    return `${this.tasksPrefix}${checkName(path, "task")}/${TASK_TAG}/`;
  }

  /** `/moat/status/run/` */
  get statusPrefix(): string {
    return `${this.root}/status/run/`;
  }

  /** `/moat/status/run/<path>/:task/` */
  statusDir(path: string): string {
    return `${this.statusPrefix}${checkName(path, "task")}/${TASK_TAG}/`;
  }

  /** One status key of a task: `/moat/status/run/<path>/:task/<key>`. */
  statusKey(path: string, key: Exclude<keyof typeof STATUS_KEYS, "errors" | "schedules">): string {
    return this.statusDir(path) + STATUS_KEYS[key];
  }

  /** The pointer to a task's error record `tag`: `/moat/status/run/<path>/:task/error/<tag>`. */
  errorPointer(path: string, tag: string): string {
    return this.statusDir(path) + STATUS_KEYS.errors + tag;
  }

  /** The records of a task's schedules: `/moat/status/run/<path>/:task/schedule/`. */
  schedulesDir(path: string): string {
    return this.statusDir(path) + STATUS_KEYS.schedules;
  }

  /** The record of a task's schedule `id`: `/moat/status/run/<path>/:task/schedule/<id>`. */
  scheduleKey(path: string, id: string): string {
    return this.schedulesDir(path) + id;
  }

  /**
   * The task path and the rest of a key below `prefix` (`tasksPrefix` or
   * `statusPrefix`), or undefined when the key is not in a `:task/`.
   */
  static taskOf(key: string, prefix: string): { path: string; rest: string } | undefined {
    const split = Layout.splitTagged(key, prefix, TASK_TAG);
    return split && { path: split.name, rest: split.rest };
  }

  /** `/moat/status/rpc/`: who serves which RPC name (host/capabilities/rpc_names.ts). */
  get rpcPrefix(): string {
    return `${this.root}/status/rpc/`;
  }

  /** `/moat/status/errors/` */
  get errorsPrefix(): string {
    return `${this.root}/status/errors/`;
  }

  /** `/moat/config/` */
  get configPrefix(): string {
    return `${this.root}/config/`;
  }

  /** `/moat/config/run/` */
  get runConfigPrefix(): string {
    return `${this.root}/config/run/`;
  }

  /** `/moat/config/timezone` */
  get timezoneKey(): string {
    return `${this.root}/config/timezone`;
  }

  /**
   * Split a key below `prefix` at its `tag` segment (e.g. `:task`): returns
   * the object's name and the rest of the key after `tag/`, or undefined
   * when the key has no such segment.
   */
  static splitTagged(
    key: string,
    prefix: string,
    tag: string,
  ): { name: string; rest: string } | undefined {
    if (!key.startsWith(prefix)) return undefined;
    const tail = key.slice(prefix.length);
    const marker = `/${tag}/`;
    const at = tail.indexOf(marker);
    if (at <= 0) return undefined;
    return { name: tail.slice(0, at), rest: tail.slice(at + marker.length) };
  }
}

/**
 * Whether `path` lies in the tree below `prefix`, a tree path: the node
 * itself or anything below it (`h1/porch` holds `h1/porch` and
 * `h1/porch/light`, not `h1/porchsvc`). An empty prefix holds every path; a
 * trailing `/` on the prefix is ignored.
 */
export function inTree(path: string, prefix: string): boolean {
  const p = prefix.replace(/\/+$/, "");
  return p === "" || path === p || path.startsWith(`${p}/`);
}
