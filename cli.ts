/**
 * The `moat` command. This is the only module that reads `Deno.args` or
 * calls `Deno.exit`; everything else returns exit codes.
 *
 * @module
 */

import { type Command, dispatch, type Group } from "./host/cli/command.ts";
import { type CliIO, CommandError, UsageError } from "./host/cli/io.ts";
import { scriptGroup } from "./host/cli/script_cmd.ts";
import { alertCommand, callCommand, listenCommand } from "./host/cli/bus_cmd.ts";
import { runCommand } from "./host/cli/run_cmd.ts";
import { statusCommand } from "./host/cli/status_cmd.ts";
import { errorsCommand } from "./host/cli/errors_cmd.ts";
import { debugCommand } from "./host/cli/debug_cmd.ts";
import { timeCommand } from "./host/cli/time_cmd.ts";
import { adminGroup } from "./host/cli/admin_cmd.ts";
import { ScriptCheckError } from "./host/scripts/check.ts";
import { escapeControl } from "./host/text.ts";

/** `moat time`: parses its own arguments (time specs contain "-10"). */
const time: Command = {
  kind: "command",
  name: "time",
  summary: "preview when a time specification matches",
  args: "SPEC… [--now T] [--current true|false|none] [--tz ZONE] [--count N]",
  rawArgs: true,
  run: (ctx) => timeCommand(ctx.positionals, ctx.io),
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
    time,
    callCommand,
    alertCommand,
    listenCommand,
    debugCommand,
    adminGroup,
  ],
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
 * 2 usage error). Errors are printed as `error: …` on `io.err`.
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
    if (e instanceof UsageError || e instanceof RangeError) {
      io.err(`error: ${escapeControl(e.message)}`);
      return 2;
    }
    if (e instanceof ScriptCheckError) {
      for (const line of e.message.split("\n")) io.err(escapeControl(line));
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
  const writeAll = (w: { writeSync(b: Uint8Array): number }, line: string) => {
    let buf = enc.encode(line + "\n");
    while (buf.length > 0) buf = buf.subarray(w.writeSync(buf));
  };
  const io: CliIO = {
    out: (line) => writeAll(Deno.stdout, line),
    err: (line) => writeAll(Deno.stderr, line),
  };
  const code = await main(Deno.args, io, Deno.env.toObject());
  Deno.exit(code);
}
