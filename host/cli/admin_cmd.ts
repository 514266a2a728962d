/**
 * `moat admin roles [HOST…] [--apply]`: the etcd roles of a least-privilege
 * installation, computed from the layout (docs/operations.md, "A secure
 * installation"), printed as etcdctl commands or created in etcd.
 *
 * @module
 */

import type { Command, Group } from "./command.ts";
import { Layout } from "../layout.ts";
import type { EtcdPermission, EtcdRole } from "../store/etcd_store.ts";
import { openEtcd } from "./services.ts";
import { UsageError } from "./io.ts";
import { terminalJson } from "../text.ts";

/** The roles of one installation: what each is for, and its permissions. */
export interface InstallRole extends EtcdRole {
  /** One line: who gets this role. */
  purpose: string;
}

/** The start of every role name of the tree at `root`: `/moat` → `moat`. */
export function roleBase(root: string): string {
  const base = root.replace(/^\/+/, "").replaceAll("/", "-");
  return base === "" ? "moat" : base;
}

/** The name of host `host`'s role. */
export function hostRoleName(root: string, host: string): string {
  return `${roleBase(root)}-host-${host}`;
}

/**
 * The roles an installation below `root` needs, for hosts `hosts`:
 *
 * - `<base>-admin`: read and write the whole tree (the moat command of an
 *   administrator: scripts, tasks, config);
 * - `<base>-reader`: read the whole tree (a status page, `moat status`);
 * - `<base>-host-<host>`, one per host: read the whole tree (a host watches
 *   it all, and scripts may look up any node); write its own tasks
 *   (`/task/<host>/`: the `data/` of each, which etcd cannot grant alone),
 *   its own status (`/status/run/<host>/`), and the two folders keyed by
 *   something other than a host: error records (`/status/errors/`, by tag
 *   and id) and RPC name claims (`/status/rpc/`, by RPC name).
 *
 * Nothing else: no host role may write `/config/`, `/meta/` (script code)
 * or another host's tasks and status.
 */
export function installRoles(root: string, hosts: string[]): InstallRole[] {
  const layout = new Layout(root);
  const base = roleBase(root);
  const all = `${layout.root}/`;
  const prefix = (type: EtcdPermission["type"], key: string): EtcdPermission => ({
    type,
    key,
    prefix: true,
  });
  return [
    {
      name: `${base}-admin`,
      purpose: "the moat command of an administrator: everything below the root",
      permissions: [prefix("readwrite", all)],
    },
    {
      name: `${base}-reader`,
      purpose: "a status page or monitor (moat status, moat errors): read only",
      permissions: [prefix("read", all)],
    },
    ...hosts.map((host) => ({
      name: hostRoleName(root, host),
      purpose: `moat run --host ${host}: its own tasks, status, error records and RPC names`,
      permissions: [
        prefix("read", all),
        prefix("readwrite", `${layout.tasksPrefix}${host}/`),
        prefix("readwrite", `${layout.statusPrefix}${host}/`),
        prefix("readwrite", layout.errorsPrefix),
        prefix("readwrite", layout.rpcPrefix),
      ],
    })),
  ];
}

/** A word quoted for a POSIX shell when it needs it. */
function shellWord(word: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(word) ? word : `'${word.replaceAll("'", `'\\''`)}'`;
}

/** The etcdctl commands that create `roles`, with comments. */
export function etcdctlLines(roles: InstallRole[]): string[] {
  const lines: string[] = [];
  for (const role of roles) {
    lines.push(`# ${role.name}: ${role.purpose}`);
    lines.push(`etcdctl role add ${shellWord(role.name)}`);
    for (const p of role.permissions) {
      lines.push(
        `etcdctl role grant-permission ${shellWord(role.name)} ${
          p.prefix ? "--prefix=true " : ""
        }${p.type} ${shellWord(p.key)}`,
      );
    }
  }
  return lines;
}

/** The first segments below `/task/`: the hosts that have tasks. */
async function hostsWithTasks(
  store: { range(prefix: string): Promise<{ kvs: { key: string }[] }> },
  layout: Layout,
): Promise<string[]> {
  const { kvs } = await store.range(layout.tasksPrefix);
  const hosts = new Set<string>();
  for (const kv of kvs) {
    const host = kv.key.slice(layout.tasksPrefix.length).split("/")[0];
    if (host) hosts.add(host);
  }
  return [...hosts].sort();
}

/** `moat admin roles [HOST…] [--apply]` */
const rolesCommand: Command = {
  kind: "command",
  name: "roles",
  summary: "print (or create) the etcd roles of a least-privilege install",
  args: "[HOST…]",
  help: [
    "Prints the etcd roles an installation needs, as etcdctl commands: an admin role",
    "(the moat command), a read-only reader role (status pages), and one role per",
    "host that may read the tree and write only its own tasks and status, error",
    "records and RPC name claims. Roles are named after the root: moat-admin,",
    "moat-reader, moat-host-HOST. HOST… default to the hosts that have tasks now.",
    "",
    "--apply creates the roles in etcd (as etcd's root user) and sets their",
    "permissions to exactly these; it prints what it changed. Users are yours to",
    'create and grant the roles (docs/operations.md, "A secure installation").',
    "",
    '--json prints {"root", "hosts", "roles": [{"name", "purpose", "permissions"}]}',
    'instead; with --apply, {"roles": [{"name", "changes": [TEXT…]}]}.',
  ].join("\n"),
  options: {
    apply: { type: "boolean", help: "create the roles in etcd (needs etcd's root role)" },
    json: { type: "boolean", help: "print JSON for machines" },
  },
  async run(ctx) {
    const hosts = ctx.positionals;
    for (const h of hosts) {
      if (h === "" || h.includes("/") || h.startsWith(":") || /\s/.test(h)) {
        throw new UsageError(`"${h}" is not a valid host name`);
      }
    }
    const layout = new Layout(ctx.globals.root);
    const store = await openEtcd(ctx.globals);
    try {
      const names = hosts.length > 0 ? [...new Set(hosts)] : await hostsWithTasks(store, layout);
      const roles = installRoles(ctx.globals.root, names);
      const json = ctx.values.json === true;
      if (ctx.values.apply !== true && json) {
        // Host names come from etcd keys: JSON escapes their controls.
        ctx.io.out(terminalJson({ root: layout.root || "/", hosts: names, roles }, 2));
        return 0;
      }
      if (ctx.values.apply !== true) {
        ctx.io.out(
          `# etcd roles for the tree at ${layout.root || "/"} (hosts: ${
            names.length ? names.join(", ") : "none"
          })`,
        );
        for (const line of etcdctlLines(roles)) ctx.io.out(line);
        return 0;
      }
      const applied: { name: string; changes: string[] }[] = [];
      for (const role of roles) {
        const changes = await store.applyRole(role);
        applied.push({ name: role.name, changes });
        if (json) continue;
        if (changes.length === 0) ctx.io.out(`role ${role.name}: unchanged`);
        for (const c of changes) ctx.io.out(c);
      }
      if (json) ctx.io.out(terminalJson({ roles: applied }, 2));
      return 0;
    } finally {
      await store.close();
    }
  },
};

/** The `moat admin` group. */
export const adminGroup: Group = {
  kind: "group",
  name: "admin",
  summary: "administer an installation (etcd roles)",
  commands: [rolesCommand],
};
