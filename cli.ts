/**
 * The `moat` command. This is the only module that reads `Deno.args` or
 * calls `Deno.exit`; everything else returns exit codes.
 *
 * @module
 */

import { type Command, dispatch, type Group, helpCommand } from "./host/cli/command.ts";
import { type CliIO, CommandError, UsageError, usageHint } from "./host/cli/io.ts";
import { scriptGroup } from "./host/cli/script_cmd.ts";
import { alertCommand, callCommand, listenCommand } from "./host/cli/bus_cmd.ts";
import { runCommand } from "./host/cli/run_cmd.ts";
import { statusCommand } from "./host/cli/status_cmd.ts";
import { errorsCommand } from "./host/cli/errors_cmd.ts";
import { debugCommand } from "./host/cli/debug_cmd.ts";
import { logCommand } from "./host/cli/log_cmd.ts";
import { webCommand } from "./host/cli/web_cmd.ts";
import { timeCommand } from "./host/cli/time_cmd.ts";
import { adminGroup } from "./host/cli/admin_cmd.ts";
import { formatDiagnostic, ScriptCheckError } from "./host/scripts/check.ts";
import { escapeControl } from "./host/text.ts";
// A static import: `deno compile` embeds it, so the binary knows its version too.
import config from "./deno.json" with { type: "json" };

/** moat's version: the `version` of deno.json. */
export const VERSION: string = config.version;

/**
 * The exit status of a `moat` whose output pipe was closed (`moat … | head`):
 * 128 + SIGPIPE, what a shell reports for a command SIGPIPE ended.
 */
export const BROKEN_PIPE_STATUS = 141;

/** `moat time`: parses its own arguments (time specs contain "-10"). */
const time: Command = {
  kind: "command",
  name: "time",
  summary: "preview when a time specification matches",
  args: "SPEC… [--now T] [--current true|false|none] [--tz ZONE] [--count N]",
  rawArgs: true,
  // The globals name the etcd that holds the installation's time zone.
  run: (ctx) => timeCommand(ctx.positionals, ctx.io, ctx.globals),
};

/** The whole command tree. */
export const moat: Group = {
  kind: "group",
  name: "moat",
  summary: "moat: the MoaT user-scripts runtime",
  commands: [
    scriptGroup,
    runCommand,
    statusCommand,
    errorsCommand,
    logCommand,
    webCommand,
    time,
    callCommand,
    alertCommand,
    listenCommand,
    debugCommand,
    adminGroup,
    helpCommand(() => moat),
  ],
  version: VERSION,
};

function causes(e: unknown): string[] {
  const out: string[] = [];
  let c = e instanceof Error ? e.cause : undefined;
  for (let i = 0; c !== undefined && i < 10; i++) {
    out.push(`  caused by: ${c instanceof Error ? `${c.name}: ${c.message}` : String(c)}`);
    c = c instanceof Error ? c.cause : undefined;
  }
  return out;
}

/**
 * Run the CLI with `args`; returns the exit code (0 success, 1 failure,
 * 2 usage error). Errors are printed as `error: …` on `io.err`; a usage
 * error adds one line, `Try "COMMAND --help" for more information.`, and a
 * script that fails its check one `SOURCE:LINE:COL: message` line per
 * problem before it.
 */
export async function main(
  args: string[],
  io: CliIO,
  env: Record<string, string | undefined>,
): Promise<number> {
  const verbose = args.includes("--verbose") || args.includes("-v");
  try {
    return await dispatch(moat, args, io, env, () => Deno.hostname());
  } catch (e) {
    // Messages may quote etcd values and names typed by hand: escaped.
    // dispatch turns every usage error (RangeError included) into a UsageError.
    if (e instanceof UsageError || e instanceof RangeError) {
      io.err(`error: ${escapeControl(e.message)}`);
      io.err(usageHint(e instanceof UsageError ? e.command : undefined));
      if (verbose) { for (const line of causes(e)) io.err(escapeControl(line)); }
      return 2;
    }
    if (e instanceof ScriptCheckError) {
      for (const d of e.diagnostics) io.err(formatDiagnostic(e.file, d));
      io.err(
        `error: "${e.file}" failed the check (${e.diagnostics.length} ${
          e.diagnostics.length === 1 ? "problem" : "problems"
        }); nothing was changed`,
      );
      return 1;
    }
    const msg = e instanceof Error ? e.message : String(e);
    io.err(`error: ${escapeControl(msg)}`);
    if (verbose) {
      for (const line of causes(e)) io.err(escapeControl(line));
      if (!(e instanceof CommandError) && e instanceof Error && e.stack) io.err(e.stack);
    }
    return 1;
  }
}

if (import.meta.main) {
  const enc = new TextEncoder();
  // writeSync may write part of a buffer to a pipe: loop until all is out.
  // A reader that went away (`moat … | head`) ends moat at once and
  // quietly, as SIGPIPE ends other commands: nobody reads what would follow,
  // an error message included.
  const writeAll = (w: { writeSync(b: Uint8Array): number }, line: string) => {
    let buf = enc.encode(line + "\n");
    try {
      while (buf.length > 0) buf = buf.subarray(w.writeSync(buf));
    } catch (e) {
      if (e instanceof Deno.errors.BrokenPipe) Deno.exit(BROKEN_PIPE_STATUS);
      throw e;
    }
  };
  const io: CliIO = {
    out: (line) => writeAll(Deno.stdout, line),
    err: (line) => writeAll(Deno.stderr, line),
  };
  const code = await main(Deno.args, io, Deno.env.toObject());
  Deno.exit(code);
}
