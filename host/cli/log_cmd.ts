/**
 * `moat log [TASK] [--lines N] [--follow] [--json]`: the recent log lines of
 * tasks, from every host that runs them, read over the bus wherever the
 * command runs (host/logs/log_reader.ts).
 *
 * @module
 */

import type { Command } from "./command.ts";
import { withBus } from "./bus_cmd.ts";
import { withServices } from "./services.ts";
import { noMatch } from "./status_cmd.ts";
import { CommandError, UsageError } from "./io.ts";
import { readStatus } from "../tasks/status.ts";
import { checkName } from "../names.ts";
import { escapeControl, terminalJson } from "../text.ts";
import { LogReader } from "../logs/log_reader.ts";
import type { LogLine } from "../logs/log_line.ts";
import { expectedHosts } from "../logs/log_reader.ts";

/** How many lines `moat log` prints by default. */
export const DEFAULT_LOG_LINES = 50;

/** One line as `moat log` prints it: `TIME LEVEL [task] message`, escaped. */
export function formatLogLine(l: LogLine): string {
  // Task paths and messages come from scripts and etcd: escaped, one line each.
  return `${new Date(l.time).toISOString()} ${l.level.toUpperCase().padEnd(5)} [${
    escapeControl(l.task)
  }] ${escapeControl(l.message)}`;
}

/** The `moat log` command. */
export const logCommand: Command = {
  kind: "command",
  name: "log",
  summary: "show the recent log lines of tasks, from every host",
  args: "[TASK]",
  help: [
    "Prints the last --lines log lines (default 50) of TASK and the tasks below it (a tree",
    "path; default: every task), merged by time across hosts and runs, as",
    "TIME LEVEL [TASK] MESSAGE with control characters escaped; --json prints one",
    '{"time", "level", "task", "message", "host", "pid"} object per line instead.',
    "Every host keeps the recent lines of each task it runs (moat run --log-lines) and",
    "publishes each line on the bus (moat.log.<path>); moat log asks every host for the",
    "lines it keeps and waits for the hosts that hold tasks below TASK (at most --timeout",
    "seconds; hosts that did not answer are named on standard error). --follow then prints",
    "new lines as they are logged, until interrupted. It needs the broker (not --amqp none).",
  ].join("\n"),
  options: {
    lines: { type: "string", arg: "N", help: "how many lines (default 50)" },
    follow: { type: "boolean", help: "print new lines as they come, until interrupted" },
    json: { type: "boolean", help: "print one JSON object per line, for machines" },
    timeout: { type: "string", arg: "S", help: "seconds to wait for the hosts (default 5)" },
  },
  maxArgs: 1,
  async run(ctx) {
    const path = (ctx.positionals[0] ?? "").replace(/\/+$/, "");
    if (path !== "") {
      try {
        checkName(path, "task path");
      } catch (e) {
        throw new UsageError((e as Error).message);
      }
    }
    const linesText = ctx.values.lines;
    let max = DEFAULT_LOG_LINES;
    if (linesText !== undefined) {
      if (typeof linesText !== "string" || !/^[1-9][0-9]*$/.test(linesText)) {
        throw new UsageError(`--lines must be a positive whole number, not "${String(linesText)}"`);
      }
      max = Number(linesText);
    }
    const t = ctx.values.timeout === undefined ? 5 : Number(ctx.values.timeout);
    if (!(t > 0)) throw new UsageError("--timeout must be positive seconds");
    if (ctx.globals.amqp === "none") {
      throw new CommandError(
        "moat log reads the task logs over the broker, and --amqp none names none",
      );
    }
    const rows = await withServices(ctx.globals, (s) => readStatus(s.store, s.layout, path));
    const print = (l: LogLine) =>
      ctx.io.out(
        ctx.values.json === true
          ? terminalJson({
            time: new Date(l.time).toISOString(),
            level: l.level,
            task: l.task,
            message: l.message,
            host: l.host,
            pid: l.pid,
          })
          : formatLogLine(l),
      );
    let found = 0;
    await withBus(ctx, async (bus) => {
      const reader = await LogReader.open(bus, path);
      try {
        const h = await reader.history(expectedHosts(rows), max, t * 1000);
        for (const m of h.missing) {
          ctx.io.err(`warning: no answer from ${escapeControl(m)} within ${t} s (not running?)`);
        }
        if (h.cut > 0) {
          ctx.io.err(`warning: hosts left out ${h.cut} older lines to keep their answers small`);
        }
        for (const l of h.lines) print(l);
        found = h.lines.length;
        if (ctx.values.follow !== true) return;
        const done = Promise.withResolvers<void>();
        const onSignal = () => done.resolve();
        Deno.addSignalListener("SIGINT", onSignal);
        Deno.addSignalListener("SIGTERM", onSignal);
        try {
          reader.follow(print);
          ctx.io.err(`following ${path === "" ? "every task" : escapeControl(path)}`);
          await done.promise;
        } finally {
          Deno.removeSignalListener("SIGINT", onSignal);
          Deno.removeSignalListener("SIGTERM", onSignal);
        }
      } finally {
        await reader.close();
      }
    });
    if (ctx.values.follow === true) return 0;
    return noMatch(ctx, Math.max(rows.length, found), "task", path);
  },
};
