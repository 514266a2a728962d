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
} as const;

/** Maps names to etcd keys below one root. */
export class Layout {
  readonly root: string;

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
    return `${this.scriptsPrefix}${checkName(name, "script")}/:code/`;
  }

  /** `/moat/task/` */
  get tasksPrefix(): string {
    return `${this.root}/task/`;
  }

  /** `/moat/task/<path>/:task/` */
  taskDir(path: string): string {
    return `${this.tasksPrefix}${checkName(path, "task")}/:task/`;
  }

  /** `/moat/status/run/` */
  get statusPrefix(): string {
    return `${this.root}/status/run/`;
  }

  /** `/moat/status/run/<path>/:task/` */
  statusDir(path: string): string {
    return `${this.statusPrefix}${checkName(path, "task")}/:task/`;
  }

  /** `/moat/status/rpc/`: who serves which RPC name (host/tasks/rpc_names.ts). */
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
