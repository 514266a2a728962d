/**
 * `moat debug [TASK]`: the debug objects (`moat.debug_obj`) of the scripts
 * a host runs, as they are at the time of the call, fetched with the host's
 * `moat.debug.<host>` RPC (which asks each script for a fresh copy).
 *
 * @module
 */

import type { Command } from "./command.ts";
import { withBus } from "./bus_cmd.ts";
import { debugRpcName } from "../tasks/host.ts";
import { UsageError } from "./io.ts";
import { escapeControl, terminalJson } from "../text.ts";

/** The `moat debug` command. */
export const debugCommand: Command = {
  kind: "command",
  name: "debug",
  summary: "show the debug objects of a host's running scripts",
  args: "[TASK]",
  help: [
    "Calls the RPC moat.debug.<host> (--host; default this host) and prints",
    '{ "task": { "script": { <task path>: <debug object> } } } as JSON: each',
    "object as it is now (the host asks each script for it; a script busy for",
    "more than 2 s shows its last one; one too large for value_size shows a note).",
    "TASK limits the answer to that task and those below it (a tree path: h1/porch",
    "holds h1/porch/light, not h1/porchsvc). When no running script there has a",
    "debug object, that is said on standard error (exit 0). The output is JSON",
    "with or without --json, which is accepted as on every command that prints data.",
  ].join("\n"),
  options: {
    timeout: { type: "string", arg: "S", help: "seconds to wait for the host (default 5)" },
    json: { type: "boolean", help: "print JSON (as without it: the output is JSON)" },
  },
  maxArgs: 1,
  async run(ctx) {
    const t = ctx.values.timeout === undefined ? 5 : Number(ctx.values.timeout);
    if (!(t > 0)) throw new UsageError("--timeout must be positive seconds");
    const answer = await withBus(
      ctx,
      (bus) =>
        bus.call(debugRpcName(ctx.globals.host), ctx.positionals[0] ?? "", { timeoutMs: t * 1000 }),
    );
    const task = ctx.positionals[0] ?? "";
    const script = (answer as { task?: { script?: Record<string, unknown> } } | null)?.task
      ?.script;
    if (task !== "" && (script === undefined || Object.keys(script).length === 0)) {
      ctx.io.err(`no running script at or below "${escapeControl(task)}" has a debug object`);
    }
    // Debug objects come from scripts: JSON escapes C0 controls, terminalJson
    // also DEL, C1, bidi controls and line separators (it stays JSON).
    ctx.io.out(terminalJson(answer, 2));
    return 0;
  },
};
