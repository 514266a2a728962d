/**
 * Opening the store and the objects the CLI works with, from the global
 * options, and closing them again.
 *
 * @module
 */

import { EtcdStore } from "../store/etcd_store.ts";
import type { Store } from "../store/store.ts";
import { Layout } from "../layout.ts";
import { ScriptDefs } from "../scripts/definitions.ts";
import { TaskDefs } from "../tasks/task_defs.ts";
import type { Globals } from "./command.ts";

/** What CLI commands work with. */
export interface Services {
  store: Store;
  layout: Layout;
  scripts: ScriptDefs;
  tasks: TaskDefs;
}

/** How long a CLI command waits for etcd before giving up, in ms. */
export const CLI_ETCD_TIMEOUT_MS = 5000;

/** Build the services over an open store. */
export function servicesOn(store: Store, root: string): Services {
  const layout = new Layout(root);
  const scripts = new ScriptDefs(store, layout);
  return { store, layout, scripts, tasks: new TaskDefs(store, layout, scripts) };
}

/** Open etcd as the globals say, run `fn`, and close it again. */
export async function withServices<T>(
  globals: Globals,
  fn: (s: Services) => Promise<T>,
): Promise<T> {
  const store = new EtcdStore({ endpoints: globals.etcd, timeoutMs: CLI_ETCD_TIMEOUT_MS });
  try {
    return await fn(servicesOn(store, globals.root));
  } finally {
    await store.close();
  }
}
