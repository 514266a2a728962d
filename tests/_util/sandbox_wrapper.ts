/**
 * A stand-in for the compiled `moat-sandbox` in source form: a shell script
 * that takes no arguments, like the compiled one, notes each start in a
 * file, and execs `deno run` with the flags a compiled sandbox is built
 * with (`sandboxRunFlags`) on `sandbox/process.ts`. A host given it as its
 * sandbox program (`sandboxBin`, `MOAT_SANDBOX_BIN`) takes the path a
 * compiled host takes.
 *
 * @module
 */

import { sandboxRunFlags } from "../../host/bridge/sandbox.ts";

const PROCESS = new URL("../../sandbox/process.ts", import.meta.url).pathname;

/** A sandbox wrapper made by {@linkcode makeSandboxWrapper}. */
export interface SandboxWrapper {
  /** The executable to give as the sandbox program. */
  readonly path: string;
  /** How many times it was started (lines of its start file). */
  starts(): Promise<number>;
}

/** `'text'` for sh, whatever the text holds. */
function shQuote(text: string): string {
  return `'${text.replaceAll("'", `'\\''`)}'`;
}

/**
 * Write the wrapper into `dir` (the caller's temporary folder). The sandbox
 * runs with an empty environment, so every path in it is absolute.
 */
export async function makeSandboxWrapper(dir: string, heapMb = 64): Promise<SandboxWrapper> {
  const path = `${dir}/moat-sandbox`;
  const log = `${dir}/moat-sandbox.starts`;
  const command = [Deno.execPath(), "run", ...sandboxRunFlags(heapMb), PROCESS].map(shQuote);
  await Deno.writeTextFile(
    path,
    [
      "#!/bin/sh",
      // A compiled sandbox has its flags built in: it is started without any.
      `if [ "$#" -ne 0 ]; then echo "moat-sandbox: unexpected arguments: $*" >&2; exit 64; fi`,
      `echo started >>${shQuote(log)}`,
      `exec ${command.join(" ")}`,
      "",
    ].join("\n"),
  );
  await Deno.chmod(path, 0o755);
  return {
    path,
    starts: async () => {
      try {
        return (await Deno.readTextFile(log)).split("\n").filter((l) => l === "started").length;
      } catch (e) {
        if (e instanceof Deno.errors.NotFound) return 0;
        throw e;
      }
    },
  };
}
