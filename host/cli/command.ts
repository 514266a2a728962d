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
  /** The version `--version` prints (the root group only): `NAME VERSION`. */
  version?: string;
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
    ...(g.version !== undefined ? ["Options:", ...optionLines(VERSION_OPTION), ""] : []),
    "Global options:",
    ...optionLines(GLOBAL_OPTIONS),
    "",
    g.commands.some((c) => c.name === "help")
      ? `Run "${path.join(" ")} help <command>" or "${
        path.join(" ")
      } <command> --help" for a command's help.`
      : `Run "${path.join(" ")} <command> --help" for a command's help.`,
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

/** The message of an unknown option, the same at every level. */
function unknownOption(option: string, command: string): string {
  return `unknown option "${option}" for "${command}"`;
}

/** The message of an unknown command name. */
function unknownCommand(name: string, group: string): string {
  return `unknown command "${name}" for "${group}"`;
}

/**
 * A usage message for an error of `node:util` `parseArgs` (an unknown
 * option, a missing or unwanted value), in the words of every other moat
 * usage error; `undefined` when `e` is not such an error. Commands that parse
 * their own arguments (`moat time`) get the same messages through
 * `dispatch`, which passes the `UsageError`s they wrap around these through
 * here.
 *
 * @param command the command the options were given to, e.g. "moat status"
 */
export function parseArgsMessage(e: unknown, command: string): string | undefined {
  if (!(e instanceof Error)) return undefined;
  const code = (e as { code?: unknown }).code;
  if (typeof code !== "string" || !code.startsWith("ERR_PARSE_ARGS_")) return undefined;
  // "Option '-t, --timeout <value>' argument missing": the long name.
  const option = /^Option '(?:-[^,' ]+, )?([^' ]+)/.exec(e.message)?.[1];
  if (code === "ERR_PARSE_ARGS_UNKNOWN_OPTION") {
    const name = /^Unknown option '([^']*)'/.exec(e.message)?.[1];
    if (name !== undefined) return unknownOption(name, command);
  } else if (code === "ERR_PARSE_ARGS_INVALID_OPTION_VALUE" && option !== undefined) {
    if (/argument missing/.test(e.message)) return `option "${option}" needs a value`;
    if (/does not take an argument/.test(e.message)) return `option "${option}" takes no value`;
  } else if (code === "ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL") {
    const arg = /^Unexpected argument '([^']*)'/.exec(e.message)?.[1];
    if (arg !== undefined) return `unexpected argument "${arg}" for "${command}"`;
  }
  return e.message.replace(/\. To specify a positional.*$/s, "");
}

/**
 * `e` as the usage error of `command` (every usage error names the command
 * whose `--help` the hint points at), or `undefined` when it is none:
 * `UsageError`, `parseArgs` errors, and `RangeError` (bad names and values,
 * e.g. an RPC name with a blank) are usage errors.
 */
function asUsageError(e: unknown, command: string): UsageError | undefined {
  const named = e instanceof UsageError ? e.command ?? command : command;
  const parsed = parseArgsMessage(e instanceof UsageError ? e.cause : e, named);
  if (parsed !== undefined) {
    return new UsageError(parsed, {
      cause: e instanceof UsageError ? e.cause : e,
      command: named,
    });
  }
  if (e instanceof UsageError) {
    e.command = named;
    return e;
  }
  if (e instanceof RangeError) return new UsageError(e.message, { cause: e, command });
  return undefined;
}

/** `--version`, known to the root group when it has a version. */
const VERSION_OPTION: Record<string, OptionSpec> = {
  version: { type: "boolean", help: "print the version and exit" },
};

/**
 * `moat help [COMMAND…]`: prints what `moat [COMMAND…] --help` prints.
 *
 * @param root the tree whose help it shows (a function: the tree holds this command)
 */
export function helpCommand(root: () => Group): Command {
  return {
    kind: "command",
    name: "help",
    summary: "show the help of moat or of a command (as --help does)",
    args: "[COMMAND…]",
    async run(ctx) {
      const top = root();
      const path = [top.name];
      let node: Command | Group = top;
      for (const word of ctx.positionals) {
        if (node.kind !== "group") {
          throw new UsageError(`"${path.join(" ")}" has no subcommands (no "${word}")`, {
            command: path.join(" "),
          });
        }
        const next: Command | Group | undefined = node.commands.find((c) => c.name === word);
        if (next === undefined) {
          throw new UsageError(unknownCommand(word, path.join(" ")), { command: path.join(" ") });
        }
        path.push(next.name);
        node = next;
      }
      if (node.kind === "group") {
        ctx.io.out(groupHelp(path, node));
        return 0;
      }
      // A command that parses its own arguments prints its own help.
      if (node.rawArgs) return await node.run({ ...ctx, values: {}, positionals: ["--help"] });
      ctx.io.out(commandHelp(path, node));
      return 0;
    },
  };
}

/**
 * Parse and run `args` against the tree rooted at `root`. Every usage error
 * (bad options, arguments, names; also those a command throws while it
 * runs) comes out as a `UsageError` naming the command it was given to.
 */
export async function dispatch(
  root: Group,
  args: string[],
  io: CliIO,
  env: Record<string, string | undefined>,
  hostname: () => string,
): Promise<number> {
  const path = [root.name];
  try {
    return await walk(root, path, args, io, env, hostname);
  } catch (e) {
    throw asUsageError(e, path.join(" ")) ?? e;
  }
}

/** `dispatch`, with `path` growing as the walk goes down (for messages). */
async function walk(
  root: Group,
  path: string[],
  args: string[],
  io: CliIO,
  env: Record<string, string | undefined>,
  hostname: () => string,
): Promise<number> {
  let node: Command | Group = root;
  let rest = args;
  let globals: Globals | undefined;
  // Walk groups: global options may stand before any command name.
  while (node.kind === "group") {
    const here = path.join(" ");
    const known: Record<string, OptionSpec> = node === root && root.version !== undefined
      ? { ...GLOBAL_OPTIONS, ...VERSION_OPTION }
      : GLOBAL_OPTIONS;
    const { tokens } = parseArgs({
      args: rest,
      options: parseConfig(known),
      strict: false,
      allowPositionals: true,
      tokens: true,
    });
    const first = tokens.find((t) => t.kind === "positional");
    const unknown = tokens.find((t) =>
      t.kind === "option" && !Object.hasOwn(known, t.name) &&
      (first === undefined || t.index < first.index)
    );
    if (unknown && unknown.kind === "option") {
      throw new UsageError(unknownOption(unknown.rawName, here));
    }
    const before = first ? rest.slice(0, first.index) : rest;
    const { values: gv } = parseArgs({
      args: before,
      options: parseConfig(known),
      strict: true,
      allowPositionals: false,
    });
    // --version and --help answer whatever the environment holds.
    if (gv.version === true) {
      io.out(`${root.name} ${root.version}`);
      return 0;
    }
    if (!first || first.kind !== "positional") {
      if (gv.help) {
        io.out(groupHelp(path, node));
        return 0;
      }
      globals = resolveGlobals(gv, env, hostname, globals);
      throw new UsageError(`"${here}" needs a command`);
    }
    globals = resolveGlobals(gv, env, hostname, globals);
    const next: Command | Group | undefined = node.commands.find((c) => c.name === first.value);
    if (!next) throw new UsageError(unknownCommand(first.value, here));
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
  // Errors of parseArgs become usage errors in dispatch (parseArgsMessage).
  const parsed = parseArgs({
    args: argv,
    options: parseConfig(options),
    strict: true,
    allowPositionals: true,
  });
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
