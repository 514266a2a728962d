/**
 * A small command tree for the `moat` CLI: groups of subcommands, each with
 * its own help text and options, parsed with `node:util` `parseArgs`.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { type CliIO, UsageError } from "./io.ts";

/** Files of TLS material, as given (read when a connection is made). */
export interface TlsFiles {
  /** The CA certificate file. */
  cacert: string | undefined;
  /** The client certificate file. */
  cert: string | undefined;
  /** The client certificate's key file. */
  key: string | undefined;
}

/** Options every command accepts (also before the command name). */
export interface Globals {
  /** etcd endpoints. */
  etcd: string[];
  root: string;
  host: string;
  amqp: string;
  verbose: boolean;
  /** `--etcd-cacert`, `--etcd-cert`, `--etcd-key` (env `MOAT_ETCD_CACERT`, …). */
  etcdTls: TlsFiles;
  /** `--etcd-user` (env `MOAT_ETCD_USER`). */
  etcdUser: string | undefined;
  /**
   * The etcd password: the first line of `--etcd-password-file` (env
   * `MOAT_ETCD_PASSWORD_FILE`) when given, else `MOAT_ETCD_PASSWORD`. Never
   * printed, never on the command line.
   */
  etcdPasswordFile: string | undefined;
  /** `MOAT_ETCD_PASSWORD`. */
  etcdPassword: string | undefined;
  /** `--amqp-cacert`, `--amqp-cert`, `--amqp-key` (env `MOAT_AMQP_CACERT`, …). */
  amqpTls: TlsFiles;
  /** `MOAT_AMQP_PASSWORD`: the broker password instead of the URL's. */
  amqpPassword: string | undefined;
}

/** An option of a command, as `parseArgs` takes it plus a help line. */
export interface OptionSpec {
  type: "string" | "boolean";
  short?: string;
  multiple?: boolean;
  help: string;
  /** Placeholder in help, e.g. "URL". */
  arg?: string;
}

/** What a command's `run` receives. */
export interface CommandContext {
  globals: Globals;
  io: CliIO;
  values: Record<string, string | boolean | (string | boolean)[] | undefined>;
  positionals: string[];
}

/** A leaf command. */
export interface Command {
  kind: "command";
  name: string;
  summary: string;
  /** The argument part of the usage line, e.g. "NAME FILE|- [DESCRIPTION…]". */
  args: string;
  /** Longer help, shown by --help. */
  help?: string;
  options?: Record<string, OptionSpec>;
  minArgs?: number;
  maxArgs?: number;
  /**
   * Whether positionals that look like negative numbers ("-1", "-") are
   * arguments rather than options (for time specs).
   */
  negativeArgs?: boolean;
  /**
   * Pass the arguments after the command name through unparsed (the
   * command parses them itself, help included).
   */
  rawArgs?: boolean;
  run(ctx: CommandContext): Promise<number>;
}

/** A group of subcommands. */
export interface Group {
  kind: "group";
  name: string;
  summary: string;
  help?: string;
  commands: (Command | Group)[];
}

/** The global options, for help and parsing. */
export const GLOBAL_OPTIONS: Record<string, OptionSpec> = {
  etcd: {
    type: "string",
    arg: "URL[,URL…]",
    help: "etcd endpoints (env MOAT_ETCD; default http://127.0.0.1:2379)",
  },
  root: {
    type: "string",
    arg: "PREFIX",
    help: "root prefix in etcd (env MOAT_ROOT; default /moat)",
  },
  host: {
    type: "string",
    arg: "NAME",
    help: "this host's name (env MOAT_HOST; default the hostname)",
  },
  amqp: {
    type: "string",
    arg: "URL",
    help:
      'AMQP broker (env MOAT_AMQP; default amqp://guest:guest@127.0.0.1:5672; "none" for moat run without a broker)',
  },
  "etcd-cacert": {
    type: "string",
    arg: "FILE",
    help: "CA certificate of etcd's TLS (env MOAT_ETCD_CACERT)",
  },
  "etcd-cert": {
    type: "string",
    arg: "FILE",
    help: "client certificate for etcd (env MOAT_ETCD_CERT)",
  },
  "etcd-key": {
    type: "string",
    arg: "FILE",
    help: "key of the client certificate for etcd (env MOAT_ETCD_KEY)",
  },
  "etcd-user": {
    type: "string",
    arg: "NAME",
    help: "etcd user (env MOAT_ETCD_USER); the password comes from MOAT_ETCD_PASSWORD",
  },
  "etcd-password-file": {
    type: "string",
    arg: "FILE",
    help: "read the etcd password from FILE's first line (env MOAT_ETCD_PASSWORD_FILE)",
  },
  "amqp-cacert": {
    type: "string",
    arg: "FILE",
    help: "CA certificate of the broker's TLS, amqps:// (env MOAT_AMQP_CACERT)",
  },
  "amqp-cert": {
    type: "string",
    arg: "FILE",
    help: "client certificate for the broker (env MOAT_AMQP_CERT)",
  },
  "amqp-key": {
    type: "string",
    arg: "FILE",
    help:
      "key of the client certificate for the broker (env MOAT_AMQP_KEY); the password may come from MOAT_AMQP_PASSWORD",
  },
  verbose: { type: "boolean", short: "v", help: "show the cause of errors" },
  help: { type: "boolean", short: "h", help: "show help" },
};

function optionLines(opts: Record<string, OptionSpec>): string[] {
  const rows = Object.entries(opts).map(([name, o]) => [
    `${o.short ? `-${o.short}, ` : "    "}--${name}${o.arg ? ` ${o.arg}` : ""}`,
    o.help,
  ]);
  const w = Math.max(...rows.map(([a]) => a!.length));
  return rows.map(([a, b]) => `  ${a!.padEnd(w)}  ${b}`);
}

/** Help text of a group. */
export function groupHelp(path: string[], g: Group): string {
  const w = Math.max(...g.commands.map((c) => c.name.length));
  return [
    `${g.summary}`,
    "",
    `Usage: ${[...path].join(" ")} <command> [options]`,
    ...(g.help ? ["", g.help] : []),
    "",
    "Commands:",
    ...g.commands.map((c) => `  ${c.name.padEnd(w)}  ${c.summary}`),
    "",
    "Global options:",
    ...optionLines(GLOBAL_OPTIONS),
    "",
    `Run "${path.join(" ")} <command> --help" for a command's help.`,
  ].join("\n");
}

/** Help text of a leaf command. */
export function commandHelp(path: string[], c: Command): string {
  return [
    c.summary,
    "",
    `Usage: ${path.join(" ")}${
      c.options && Object.keys(c.options).length ? " [options]" : ""
    } ${c.args}`
      .trimEnd(),
    ...(c.help ? ["", c.help] : []),
    ...(c.options && Object.keys(c.options).length
      ? ["", "Options:", ...optionLines(c.options)]
      : []),
    "",
    "Global options:",
    ...optionLines(GLOBAL_OPTIONS),
  ].join("\n");
}

function parseConfig(opts: Record<string, OptionSpec>) {
  const out: Record<string, { type: "string" | "boolean"; short?: string; multiple?: boolean }> =
    {};
  for (const [k, o] of Object.entries(opts)) {
    out[k] = {
      type: o.type,
      ...(o.short ? { short: o.short } : {}),
      ...(o.multiple ? { multiple: true } : {}),
    };
  }
  return out;
}

/** Resolve globals from parsed values, the environment and defaults. */
export function resolveGlobals(
  values: Record<string, unknown>,
  env: Record<string, string | undefined>,
  hostname: () => string,
  base?: Globals,
): Globals {
  const str = (k: string) => typeof values[k] === "string" ? values[k] as string : undefined;
  const etcd = str("etcd") ?? base?.etcd.join(",") ?? env.MOAT_ETCD ?? "http://127.0.0.1:2379";
  const endpoints = etcd.split(",").map((s) => s.trim()).filter((s) => s !== "");
  if (endpoints.length === 0) throw new UsageError("--etcd needs at least one endpoint");
  for (const e of endpoints) {
    let u: URL;
    try {
      u = new URL(e);
    } catch {
      throw new UsageError(`--etcd: "${e}" is not a URL (e.g. http://127.0.0.1:2379)`);
    }
    if (u.protocol !== "http:" && u.protocol !== "https:") {
      throw new UsageError(`--etcd: "${e}" must be an http:// or https:// URL`);
    }
  }
  const root = str("root") ?? base?.root ?? env.MOAT_ROOT ?? "/moat";
  if (!root.startsWith("/") || (root.length > 1 && root.endsWith("/"))) {
    throw new UsageError(`--root: "${root}" must start with "/" and not end with "/"`);
  }
  const host = str("host") ?? base?.host ?? env.MOAT_HOST ?? hostname();
  if (host === "" || host.includes("/") || host.startsWith(":")) {
    throw new UsageError(`--host: "${host}" is not a valid host name`);
  }
  const amqp = str("amqp") ?? base?.amqp ?? env.MOAT_AMQP ?? "amqp://guest:guest@127.0.0.1:5672";
  /** An option, else what an earlier pass found, else the environment; "" counts as unset. */
  const pick = (option: string, earlier: string | undefined, name: string) => {
    const v = str(option) ?? earlier ?? env[name];
    return v === "" ? undefined : v;
  };
  const etcdUser = pick("etcd-user", base?.etcdUser, "MOAT_ETCD_USER");
  if (etcdUser !== undefined && etcdUser.includes(":")) {
    // etcdctl takes "user:password" here; we do not: a password on the
    // command line is visible to every user of the machine. The value is
    // not quoted, since it holds a password.
    throw new UsageError(
      "--etcd-user must be a user name only: give the password in MOAT_ETCD_PASSWORD " +
        "or --etcd-password-file, never on the command line",
    );
  }
  return {
    etcd: endpoints,
    root,
    host,
    amqp,
    verbose: values.verbose === true || (base?.verbose ?? false),
    etcdTls: {
      cacert: pick("etcd-cacert", base?.etcdTls.cacert, "MOAT_ETCD_CACERT"),
      cert: pick("etcd-cert", base?.etcdTls.cert, "MOAT_ETCD_CERT"),
      key: pick("etcd-key", base?.etcdTls.key, "MOAT_ETCD_KEY"),
    },
    etcdUser,
    etcdPasswordFile: pick(
      "etcd-password-file",
      base?.etcdPasswordFile,
      "MOAT_ETCD_PASSWORD_FILE",
    ),
    etcdPassword: env.MOAT_ETCD_PASSWORD === "" ? undefined : env.MOAT_ETCD_PASSWORD,
    amqpTls: {
      cacert: pick("amqp-cacert", base?.amqpTls.cacert, "MOAT_AMQP_CACERT"),
      cert: pick("amqp-cert", base?.amqpTls.cert, "MOAT_AMQP_CERT"),
      key: pick("amqp-key", base?.amqpTls.key, "MOAT_AMQP_KEY"),
    },
    amqpPassword: env.MOAT_AMQP_PASSWORD === "" ? undefined : env.MOAT_AMQP_PASSWORD,
  };
}

/** Parse and run `args` against the tree rooted at `root`. */
export async function dispatch(
  root: Group,
  args: string[],
  io: CliIO,
  env: Record<string, string | undefined>,
  hostname: () => string,
): Promise<number> {
  const path = [root.name];
  let node: Command | Group = root;
  let rest = args;
  let globals: Globals | undefined;
  // Walk groups: global options may stand before any command name.
  while (node.kind === "group") {
    const { values, tokens } = parseArgs({
      args: rest,
      options: parseConfig(GLOBAL_OPTIONS),
      strict: false,
      allowPositionals: true,
      tokens: true,
    });
    const first = tokens.find((t) => t.kind === "positional");
    const unknown = tokens.find((t) =>
      t.kind === "option" && !Object.hasOwn(GLOBAL_OPTIONS, t.name) &&
      (first === undefined || t.index < first.index)
    );
    if (unknown && unknown.kind === "option") {
      throw new UsageError(`unknown option "${unknown.rawName}" for "${path.join(" ")}"`);
    }
    const before = first ? rest.slice(0, first.index) : rest;
    const { values: gv } = parseArgs({
      args: before,
      options: parseConfig(GLOBAL_OPTIONS),
      strict: true,
      allowPositionals: false,
    });
    globals = resolveGlobals(gv, env, hostname, globals);
    if (!first || first.kind !== "positional") {
      if (values.help || gv.help) {
        io.out(groupHelp(path, node));
        return 0;
      }
      throw new UsageError(`"${path.join(" ")}" needs a command; run "${path.join(" ")} --help"`);
    }
    const next: Command | Group | undefined = node.commands.find((c) => c.name === first.value);
    if (!next) {
      throw new UsageError(
        `unknown command "${first.value}" for "${path.join(" ")}"; run "${path.join(" ")} --help"`,
      );
    }
    path.push(next.name);
    rest = rest.slice(first.index + 1);
    node = next;
  }
  const cmd: Command = node;
  if (cmd.rawArgs) {
    return await cmd.run({ globals: globals!, io, values: {}, positionals: rest });
  }
  const options = { ...GLOBAL_OPTIONS, ...(cmd.options ?? {}) };
  let argv = rest;
  // Time specs contain "-10" or "-": keep such words as arguments.
  const protectedArgs: string[] = [];
  if (cmd.negativeArgs) {
    argv = rest.map((a, i) => {
      if (/^-(\d+(\.\d+)?)?$/.test(a)) {
        protectedArgs.push(a);
        return `\u0000${i}`;
      }
      return a;
    });
  }
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      options: parseConfig(options),
      strict: true,
      allowPositionals: true,
    });
  } catch (e) {
    throw new UsageError(`${(e as Error).message.replace(/\. To specify a positional.*$/s, "")}`, {
      cause: e,
    });
  }
  if (parsed.values.help) {
    io.out(commandHelp(path, cmd));
    return 0;
  }
  const positionals = parsed.positionals.map((p) =>
    p.startsWith("\u0000") ? rest[Number(p.slice(1))]! : p
  );
  globals = resolveGlobals(parsed.values, env, hostname, globals);
  if (cmd.minArgs !== undefined && positionals.length < cmd.minArgs) {
    throw new UsageError(`missing arguments: usage: ${path.join(" ")} ${cmd.args}`);
  }
  if (cmd.maxArgs !== undefined && positionals.length > cmd.maxArgs) {
    throw new UsageError(
      `too many arguments ("${positionals.slice(cmd.maxArgs).join(" ")}"): usage: ${
        path.join(" ")
      } ${cmd.args}`,
    );
  }
  return await cmd.run({ globals, io, values: parsed.values, positionals });
}
