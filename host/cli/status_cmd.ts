/**
 * `moat status [PATH]`: a table of tasks and how their runs stand.
 *
 * @module
 */

import type { Command } from "./command.ts";
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

/** The `moat status` command. */
export const statusCommand: Command = {
  kind: "command",
  name: "status",
  summary: "show the state of script tasks",
  args: "[PATH]",
  help: [
    "PATH is a task path prefix (e.g. myhost/porch); default: every task.",
    "States: run (running now), ok, error, fail (how the last run ended),",
    "crash (started but neither running nor stopped: its host died), new (never ran).",
    'A run that took over from a crashed one says so; --json has it as "crashed".',
  ].join("\n"),
  options: { json: { type: "boolean", help: "print JSON for machines" } },
  maxArgs: 1,
  async run(ctx) {
    const rows = await withServices(
      ctx.globals,
      (s) => readStatus(s.store, s.layout, ctx.positionals[0] ?? ""),
    );
    if (ctx.values.json) {
      ctx.io.out(JSON.stringify(rows, null, 2));
      return 0;
    }
    if (rows.length === 0) return 0;
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
      ]),
    ]);
    for (const l of lines) ctx.io.out(l);
    return 0;
  },
};
