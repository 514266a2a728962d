/**
 * `moat script caps`: show, set and clear a script's capability manifest
 * (`<scripts>/<name>/:code/caps`) or a task's (`<task>/:task/caps`, which
 * replaces the script's whole). See docs/security.md, "Capability
 * manifests".
 *
 * @module
 */

import type { Command, CommandContext } from "./command.ts";
import { CommandError, UsageError } from "./io.ts";
import { withServices } from "./services.ts";
import { checkName } from "../names.ts";
import { SCRIPT_KEYS, TASK_KEYS } from "../layout.ts";
import {
  checkManifest,
  type Manifest,
  ManifestError,
  manifestText,
  parseManifest,
} from "../capabilities/manifest.ts";
import { DataFileError, isYamlFile, parseDataFile, yamlText } from "./data_file.ts";
import { escapeControl } from "../text.ts";

/**
 * Read a manifest from `file` ("-": standard input): JSON, or YAML (a
 * `.yaml`/`.yml` name, or text that is not JSON); checked. Throws a
 * UsageError naming the file and the member.
 */
export async function readManifestFile(file: string): Promise<Manifest> {
  let text: string;
  try {
    text = file === "-"
      ? await new Response(Deno.stdin.readable).text()
      : await Deno.readTextFile(file);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new UsageError(`file "${file}" does not exist`);
    throw new UsageError(`cannot read "${file}": ${(e as Error).message}`);
  }
  const shown = file === "-" ? "standard input" : `"${file}"`;
  let value: unknown;
  try {
    value = isYamlFile(file) ? parseDataFile(text, file) : JSON.parse(text);
  } catch {
    // Not JSON: YAML, which says why it is neither.
    try {
      value = parseDataFile(text, "manifest.yaml");
    } catch (e) {
      const why = e instanceof DataFileError ? e.message : String(e);
      throw new UsageError(`${shown} is neither JSON nor YAML: ${why}`);
    }
  }
  try {
    return checkManifest(value);
  } catch (e) {
    if (e instanceof ManifestError) throw new UsageError(`${shown}: ${e.message}`);
    throw e;
  }
}

function checked(what: "script" | "task", n: string): string {
  try {
    return checkName(n, what);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

/** `moat script caps`. */
export const capsCommand: Command = {
  kind: "command",
  name: "caps",
  summary: "show, set or clear a script's capability manifest",
  args: "NAME | --task TASK",
  help: "A capability manifest names what a script may use: tree prefixes it may read and\n" +
    "monitor, data keys it may write, RPC names it may serve and call, alert topics\n" +
    "it may send and patterns it may listen to, scripts it may load, whether it may\n" +
    "use moat.thread, and its quotas and sandbox limits (docs/security.md,\n" +
    '"Capability manifests"). Without --set or --clear it prints the manifest of\n' +
    "script NAME as JSON (--yaml: YAML); nothing, with a note on standard error, when\n" +
    "it has none. --set FILE (- reads standard input; JSON or YAML) checks the\n" +
    "manifest and stores it; a bad one is a usage error naming the member. --clear\n" +
    "removes it. --task TASK works on the task's own manifest, which replaces the\n" +
    "script's whole for that task. The host restarts the tasks concerned with their\n" +
    "new rights.",
  options: {
    set: { type: "string", arg: "FILE", help: "check and store the manifest in FILE (- = stdin)" },
    clear: { type: "boolean", help: "remove the manifest" },
    task: { type: "string", arg: "TASK", help: "the task's own manifest, not the script's" },
    json: { type: "boolean", help: "print JSON (the default)" },
    yaml: { type: "boolean", help: "print YAML" },
  },
  maxArgs: 1,
  async run(ctx: CommandContext): Promise<number> {
    const task = typeof ctx.values.task === "string" ? checked("task", ctx.values.task) : undefined;
    const script = ctx.positionals[0];
    if (task === undefined && script === undefined) {
      throw new UsageError("name a script, or a task with --task");
    }
    if (task !== undefined && script !== undefined) {
      throw new UsageError("name a script or a task with --task, not both");
    }
    const set = typeof ctx.values.set === "string" ? ctx.values.set : undefined;
    if (set !== undefined && ctx.values.clear) {
      throw new UsageError("--set and --clear exclude each other");
    }
    if (ctx.values.json && ctx.values.yaml) {
      throw new UsageError("--json and --yaml exclude each other");
    }
    const name = script === undefined ? undefined : checked("script", script);
    const manifest = set === undefined ? undefined : await readManifestFile(set);
    const what = task !== undefined ? `task ${task}` : `script ${name}`;
    const stored = await withServices(ctx.globals, async (s) => {
      // The key, guarded by the existence of its script or task.
      let key: string;
      let guard: string;
      if (task !== undefined) {
        await s.tasks.require(task);
        const dir = s.layout.taskDir(task);
        key = dir + TASK_KEYS.caps;
        guard = dir + TASK_KEYS.taskdef;
      } else {
        await s.scripts.require(name!);
        const dir = s.layout.scriptDir(name!);
        key = dir + SCRIPT_KEYS.caps;
        guard = dir + SCRIPT_KEYS.code;
      }
      if (manifest === undefined && !ctx.values.clear) return (await s.store.get(key))?.value;
      const op = manifest !== undefined
        ? { type: "put" as const, key, value: manifestText(manifest) }
        : { type: "delete" as const, key };
      const res = await s.store.txn(
        [{ key: guard, target: "createRevision", op: ">", value: 0 }],
        [op],
      );
      if (!res.succeeded) throw new CommandError(`${what} was deleted meanwhile`);
      return undefined;
    });
    if (manifest !== undefined) {
      ctx.io.out(`stored the capability manifest of ${what}`);
      return 0;
    }
    if (ctx.values.clear) {
      ctx.io.out(`cleared the capability manifest of ${what}`);
      return 0;
    }
    if (stored === undefined) {
      ctx.io.err(
        task !== undefined
          ? `${what} has no capability manifest of its own (its script's applies)`
          : `${what} has no capability manifest (every capability as without one)`,
      );
      return 0;
    }
    let value: Manifest;
    try {
      value = parseManifest(stored, `the stored manifest of ${what}`);
    } catch (e) {
      // Shown as stored, so that it can be fixed; the host does not run it.
      ctx.io.err(`warning: ${(e as Error).message}`);
      ctx.io.out(escapeControl(stored));
      return 1;
    }
    ctx.io.out(ctx.values.yaml ? yamlText(value) : JSON.stringify(value, null, 2));
    return 0;
  },
};
