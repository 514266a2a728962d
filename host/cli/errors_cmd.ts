/**
 * `moat errors [PATH]`: the error records of tasks (`moat.set_error`, and
 * the host's `job` records of failed runs).
 *
 * @module
 */

import type { Command } from "./command.ts";
import { withServices } from "./services.ts";
import { table } from "./io.ts";
import { localTime, noMatch } from "./status_cmd.ts";
import { inTree } from "../layout.ts";
import { ErrorRecords } from "../capabilities/error_records.ts";
import { SystemClock } from "../time/clock.ts";

/** The `moat errors` command. */
export const errorsCommand: Command = {
  kind: "command",
  name: "errors",
  summary: "list error records of tasks",
  args: "[PATH]",
  help: [
    "PATH is a task path (e.g. myhost/porch): records of that task and those below it,",
    "not of myhost/porchsvc; default: every record. A PATH that matches neither a task",
    "nor a record is an error (exit 1); a task without records prints nothing.",
    "Columns: where (task path), tag, how often it was seen, when last, the message.",
  ].join("\n"),
  options: { json: { type: "boolean", help: "print JSON for machines" } },
  maxArgs: 1,
  async run(ctx) {
    const path = ctx.positionals[0] ?? "";
    const [records, tasks] = await withServices(ctx.globals, async (s) => {
      const all = await new ErrorRecords(s.store, s.layout, new SystemClock()).list();
      const records = all.filter((r) => inTree(r.loc, path));
      // Without records, a task there still makes the PATH a match.
      const tasks = records.length > 0 || path === "" ? 0 : (await s.tasks.list(path)).length;
      return [records, tasks] as const;
    });
    const found = records.length + tasks;
    if (ctx.values.json) {
      ctx.io.out(JSON.stringify(records, null, 2));
      return noMatch(ctx, found, "task", path);
    }
    if (records.length === 0) return noMatch(ctx, found, "task", path);
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
