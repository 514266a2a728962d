/**
 * `moat status [PATH]`: a table of tasks and how their runs stand.
 *
 * @module
 */

import type { Command, CommandContext } from "./command.ts";
import { escapeControl } from "../text.ts";
import { withServices } from "./services.ts";
import { table } from "./io.ts";
import { readStatus } from "../tasks/status.ts";

/** Unix seconds as local ISO time with offset, or "-" for never. */
export function localTime(unix: number): string {
  if (!unix) return "-";
  const d = new Date(unix * 1000);
  const off = -d.getTimezoneOffset();
  const pad = (n: number, w = 2) => String(Math.trunc(Math.abs(n))).padStart(w, "0");
  const sign = off >= 0 ? "+" : "-";
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${
    pad(d.getMinutes())
  }:${pad(d.getSeconds())}${sign}${pad(off / 60)}:${pad(off % 60)}`;
}

/**
 * With a PATH filter that matched nothing: say so on standard error and
 * return exit code 1; else 0.
 */
export function noMatch(
  ctx: CommandContext,
  found: number,
  what: "task" | "script",
  path: string,
): number {
  if (found > 0 || path.replace(/\/+$/, "") === "") return 0;
  ctx.io.err(`error: no ${what} at or below "${escapeControl(path)}"`);
  return 1;
}

/** The `moat status` command. */
export const statusCommand: Command = {
  kind: "command",
  name: "status",
  summary: "show the state of script tasks",
  args: "[PATH]",
  help: [
    "PATH is a task path (e.g. myhost/porch): that task and those below it, not",
    "myhost/porchsvc; default: every task. A PATH that matches no task is an error (exit 1).",
    "States: run (running now), ok, error, fail (how the last run ended),",
    "crash (started but neither running nor stopped: its host died), new (never ran).",
    'A status left behind by a deleted task says "(task deleted)"; --json has "gone".',
    'A run that took over from a crashed one says so; --json has it as "crashed".',
    "Tasks with recorded schedules (moat.wait/run_at with an id) get a second table:",
    'each schedule\'s last firing (marked "late" for a catch-up) and next due time;',
    '--json has them as "schedules" ({id, due, late, done, next}).',
  ].join("\n"),
  options: { json: { type: "boolean", help: "print JSON for machines" } },
  maxArgs: 1,
  async run(ctx) {
    const path = ctx.positionals[0] ?? "";
    const rows = await withServices(ctx.globals, (s) => readStatus(s.store, s.layout, path));
    if (ctx.values.json) {
      ctx.io.out(JSON.stringify(rows, null, 2));
      return noMatch(ctx, rows.length, "task", path);
    }
    if (rows.length === 0) return noMatch(ctx, 0, "task", path);
    // Messages come from scripts and paths from etcd: table() shows them
    // escaped, a message with "\n" as one row.
    const lines = table([
      ["PATH", "STATE", "SINCE", "MESSAGE"],
      ...rows.map((r) => [
        r.path,
        r.state,
        localTime(r.since),
        r.state === "run"
          ? `on ${r.runner}` +
            (r.crashed !== undefined && r.started !== undefined && r.crashed < r.started
              ? ` (took over after the run started ${localTime(r.crashed)} crashed)`
              : "")
          : r.message,
      ]).map((cells, i) => {
        const gone = rows[i]!.gone;
        if (gone) cells[3] = `${cells[3]} (task deleted)`.trimStart();
        return cells;
      }),
    ]);
    for (const l of lines) ctx.io.out(l);
    const scheduled = rows.flatMap((r) =>
      (r.schedules ?? []).map((sc) => [
        r.path,
        sc.id,
        `${localTime(sc.due)}${sc.late ? " late" : ""}`,
        sc.next === null ? "-" : localTime(sc.next),
      ])
    );
    if (scheduled.length > 0) {
      ctx.io.out("");
      for (const l of table([["TASK", "SCHEDULE", "LAST FIRING", "NEXT DUE"], ...scheduled])) {
        ctx.io.out(l);
      }
    }
    return 0;
  },
};
