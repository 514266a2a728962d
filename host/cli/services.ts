/**
 * Opening the store and the objects the CLI works with, from the global
 * options, and closing them again; and the connection options (TLS files,
 * users, passwords) of etcd and the broker that every command shares.
 *
 * @module
 */

import { EtcdStore, type EtcdStoreOptions } from "../store/etcd_store.ts";
import type { Store } from "../store/store.ts";
import type { AmqpBusOptions } from "../bus/amqp_bus.ts";
import { Layout } from "../layout.ts";
import { ScriptDefs } from "../scripts/definitions.ts";
import { TaskDefs } from "../tasks/task_defs.ts";
import type { Globals, TlsFiles } from "./command.ts";
import { UsageError } from "./io.ts";

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

/** Read one PEM file named by option `option`; a usage error says why it cannot be used. */
async function readPem(path: string, option: string): Promise<Uint8Array> {
  let data: Uint8Array;
  try {
    data = await Deno.readFile(path);
  } catch (e) {
    throw new UsageError(`cannot read ${option} "${path}": ${(e as Error).message}`, { cause: e });
  }
  // Say so now, rather than as a handshake failure later.
  if (!new TextDecoder().decode(data).includes("-----BEGIN ")) {
    throw new UsageError(`${option} "${path}" is not a PEM file (it has no "-----BEGIN" line)`);
  }
  return data;
}

/** Read the TLS files of `--PREFIX-cacert`, `--PREFIX-cert`, `--PREFIX-key`. */
async function readTls(
  files: TlsFiles,
  prefix: "etcd" | "amqp",
): Promise<{ ca?: Uint8Array; cert?: Uint8Array; key?: Uint8Array } | undefined> {
  if (files.cacert === undefined && files.cert === undefined && files.key === undefined) {
    return undefined;
  }
  if ((files.cert === undefined) !== (files.key === undefined)) {
    const [given, missing] = files.cert === undefined ? ["key", "cert"] : ["cert", "key"];
    throw new UsageError(
      `--${prefix}-${given} needs --${prefix}-${missing} too (env MOAT_${prefix.toUpperCase()}_${missing.toUpperCase()})`,
    );
  }
  return {
    ...(files.cacert !== undefined
      ? { ca: await readPem(files.cacert, `--${prefix}-cacert`) }
      : {}),
    ...(files.cert !== undefined ? { cert: await readPem(files.cert, `--${prefix}-cert`) } : {}),
    ...(files.key !== undefined ? { key: await readPem(files.key, `--${prefix}-key`) } : {}),
  };
}

/** The etcd password: `--etcd-password-file`'s first line, else `MOAT_ETCD_PASSWORD`. */
async function etcdPassword(globals: Globals): Promise<string | undefined> {
  const file = globals.etcdPasswordFile;
  if (file === undefined) return globals.etcdPassword;
  let text: string;
  try {
    text = await Deno.readTextFile(file);
  } catch (e) {
    throw new UsageError(`cannot read --etcd-password-file "${file}": ${(e as Error).message}`, {
      cause: e,
    });
  }
  const password = text.split(/\r?\n/)[0] ?? "";
  if (password === "") {
    throw new UsageError(`--etcd-password-file "${file}" holds no password on its first line`);
  }
  return password;
}

/**
 * The options of an `EtcdStore` as the globals say: endpoints, TLS files
 * (read now), user and password. Throws `UsageError` for files that cannot
 * be read, a user without a password and the like.
 */
export async function etcdOptions(
  globals: Globals,
  options: { timeoutMs?: number } = {},
): Promise<EtcdStoreOptions> {
  const tls = await readTls(globals.etcdTls, "etcd");
  if (tls && globals.etcd.some((e) => !e.startsWith("https://"))) {
    throw new UsageError(
      `--etcd-cacert, --etcd-cert and --etcd-key need https:// endpoints, not "${
        globals.etcd.find((e) => !e.startsWith("https://"))
      }"`,
    );
  }
  const password = await etcdPassword(globals);
  const user = globals.etcdUser;
  if (user === undefined && password !== undefined) {
    throw new UsageError(
      "an etcd password was given (MOAT_ETCD_PASSWORD or --etcd-password-file) " +
        "but no user: add --etcd-user NAME",
    );
  }
  if (user !== undefined && password === undefined) {
    throw new UsageError(
      `--etcd-user "${user}" needs a password: set MOAT_ETCD_PASSWORD or give --etcd-password-file FILE`,
    );
  }
  return {
    endpoints: globals.etcd,
    timeoutMs: options.timeoutMs ?? CLI_ETCD_TIMEOUT_MS,
    ...(tls ? { tls } : {}),
    ...(user !== undefined && password !== undefined ? { auth: { user, password } } : {}),
  };
}

/** Open the `EtcdStore` the globals name (see `etcdOptions`). */
export async function openEtcd(
  globals: Globals,
  options: { timeoutMs?: number } = {},
): Promise<EtcdStore> {
  const opts = await etcdOptions(globals, options);
  try {
    return new EtcdStore(opts);
  } catch (e) {
    // Bad combinations (mixed http/https endpoints) are the user's to fix.
    if (e instanceof TypeError) throw new UsageError(e.message, { cause: e });
    throw e;
  }
}

/**
 * The connection options of an `AmqpBus` as the globals say: URL, TLS
 * files (read now) and the password of `MOAT_AMQP_PASSWORD`.
 */
export async function amqpOptions(
  globals: Globals,
): Promise<Pick<AmqpBusOptions, "url" | "tls" | "password">> {
  const tls = await readTls(globals.amqpTls, "amqp");
  if (tls && !/^amqps:\/\//i.test(globals.amqp)) {
    throw new UsageError(
      "--amqp-cacert, --amqp-cert and --amqp-key need an amqps:// broker URL (--amqp)",
    );
  }
  return {
    url: globals.amqp,
    ...(tls ? { tls } : {}),
    ...(globals.amqpPassword !== undefined ? { password: globals.amqpPassword } : {}),
  };
}

/** Open etcd as the globals say, run `fn`, and close it again. */
export async function withServices<T>(
  globals: Globals,
  fn: (s: Services) => Promise<T>,
): Promise<T> {
  const store = await openEtcd(globals);
  try {
    return await fn(servicesOn(store, globals.root));
  } finally {
    await store.close();
  }
}
