/**
 * `moat errors [PATH]`: the error records of tasks (`moat.set_error`, and
 * the host's `job` records of failed runs).
 *
 * @module
 */

import type { Command } from "./command.ts";
import { withServices } from "./services.ts";
import { table } from "./io.ts";
import { localTime } from "./status_cmd.ts";
import { ErrorRecords } from "../capabilities/error_records.ts";
import { SystemClock } from "../time/clock.ts";

/** The `moat errors` command. */
export const errorsCommand: Command = {
  kind: "command",
  name: "errors",
  summary: "list error records of tasks",
  args: "[PATH]",
  help: [
    "PATH is a task path prefix (e.g. myhost/porch); default: every record.",
    "Columns: where (task path), tag, how often it was seen, when last, the message.",
  ].join("\n"),
  options: { json: { type: "boolean", help: "print JSON for machines" } },
  maxArgs: 1,
  async run(ctx) {
    const records = await withServices(
      ctx.globals,
      (s) => new ErrorRecords(s.store, s.layout, new SystemClock()).list(ctx.positionals[0] ?? ""),
    );
    if (ctx.values.json) {
      ctx.io.out(JSON.stringify(records, null, 2));
      return 0;
    }
    if (records.length === 0) return 0;
    // Messages come from scripts (moat.set_error) and the rest from etcd:
    // table() shows them escaped, a message with "\n" as one row.
    for (
      const line of table([
        ["PATH", "TAG", "COUNT", "LAST", "MESSAGE"],
        ...records.map((r) => [
          r.loc,
          r.tag,
          String(r.counter),
          localTime(r.timestamp),
          r.msg,
        ]),
      ])
    ) ctx.io.out(line);
    return 0;
  },
};
