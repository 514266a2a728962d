/**
 * `moat debug [TASK]`: the debug objects (`moat.debug_obj`) of the scripts
 * a host runs, fetched with the host's `moat.debug.<host>` RPC.
 *
 * @module
 */

import type { Command } from "./command.ts";
import { withBus } from "./bus_cmd.ts";
import { debugRpcName } from "../tasks/host.ts";
import { UsageError } from "./io.ts";
import { terminalJson } from "../text.ts";

/** The `moat debug` command. */
export const debugCommand: Command = {
  kind: "command",
  name: "debug",
  summary: "show the debug objects of a host's running scripts",
  args: "[TASK]",
  help: [
    "Calls the RPC moat.debug.<host> (--host; default this host) and prints",
    '{ "task": { "script": { <task path>: <debug object> } } } as JSON.',
    "TASK limits the answer to task paths starting with it.",
  ].join("\n"),
  options: {
    timeout: { type: "string", arg: "S", help: "seconds to wait for the host (default 5)" },
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
    // Debug objects come from scripts: JSON escapes C0 controls, terminalJson
    // also DEL, C1, bidi controls and line separators (it stays JSON).
    ctx.io.out(terminalJson(answer, 2));
    return 0;
  },
};
