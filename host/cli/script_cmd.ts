/**
 * `moat script …`: script definitions (`moat script def …`) and script
 * tasks (`moat script add|list|delete|param`).
 *
 * @module
 */

import type { Command, CommandContext, Group } from "./command.ts";
import { CommandError, table, UsageError } from "./io.ts";
import { escapeControl, terminalJson } from "../text.ts";
import { withServices } from "./services.ts";
import { noMatch } from "./status_cmd.ts";
import {
  capsWarnings,
  checkScript,
  type Diagnostic,
  formatDiagnostic,
  isLanguage,
  type Language,
  languageOf,
  ScriptCheckError,
} from "../scripts/check.ts";
import { typeCheckScripts } from "../scripts/typecheck.ts";
import { checkName, checkVarName } from "../names.ts";
import { parseAssignments } from "../tasks/task_defs.ts";
import { MAX_SCRIPT_BYTES } from "../scripts/definitions.ts";
import {
  checkSetting,
  isSettingKey,
  readGlobalSettings,
  type SettingRow,
  settingRows,
} from "../tasks/run_config.ts";
import { tryCommand } from "./try_cmd.ts";
import { capsCommand, readManifestFile } from "./caps_cmd.ts";
import {
  type Manifest,
  ManifestError,
  parseManifest,
  readManifest,
} from "../capabilities/manifest.ts";
import { SCRIPT_KEYS } from "../layout.ts";
import { SECRET_MASK } from "../capabilities/secret_mask.ts";

/**
 * Read a script's source from a file, or from standard input for "-". The
 * bytes must be UTF-8 (no replacement characters stored in silence) and at
 * most {@linkcode MAX_SCRIPT_BYTES} long; anything else is a `UsageError`
 * naming the file, before anything is sent.
 */
export async function readSource(file: string): Promise<string> {
  let bytes: Uint8Array;
  if (file === "-") {
    bytes = new Uint8Array(await new Response(Deno.stdin.readable).arrayBuffer());
  } else {
    try {
      bytes = await Deno.readFile(file);
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) throw new UsageError(`file "${file}" does not exist`);
      if (e instanceof Deno.errors.IsADirectory) throw new UsageError(`"${file}" is a directory`);
      throw new UsageError(`cannot read "${file}": ${(e as Error).message}`);
    }
  }
  const shown = file === "-" ? "standard input" : `"${file}"`;
  if (bytes.length > MAX_SCRIPT_BYTES) {
    throw new UsageError(
      `${shown} is ${bytes.length} bytes; a script may be at most ${MAX_SCRIPT_BYTES} bytes ` +
        `(${MAX_SCRIPT_BYTES / 1024} KiB): split it into libraries (moat.load)`,
    );
  }
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw new UsageError(
      `${shown} is not UTF-8 text: ${invalidAt(bytes)}; save it as UTF-8`,
    );
  }
}

/** Where the first invalid UTF-8 byte is: its line, column (in bytes) and value. */
function invalidAt(bytes: Uint8Array): string {
  const at = firstInvalidUtf8(bytes);
  const before = bytes.subarray(0, at);
  const line = before.filter((b) => b === 0x0a).length + 1;
  const col = at - before.lastIndexOf(0x0a);
  const value = at < bytes.length ? `0x${bytes[at]!.toString(16).padStart(2, "0")}` : "end";
  return `invalid byte ${value} at line ${line}, byte ${col} of the line`;
}

/** The offset of the first byte that is not part of valid UTF-8 (`bytes.length` if none). */
export function firstInvalidUtf8(bytes: Uint8Array): number {
  let i = 0;
  while (i < bytes.length) {
    const b = bytes[i]!;
    // [length, smallest second byte, largest second byte] of each lead byte (RFC 3629).
    const [n, lo, hi] = b < 0x80
      ? [1, 0, 0]
      : b >= 0xc2 && b <= 0xdf
      ? [2, 0x80, 0xbf]
      : b === 0xe0
      ? [3, 0xa0, 0xbf]
      : b === 0xed
      ? [3, 0x80, 0x9f]
      : b >= 0xe1 && b <= 0xef
      ? [3, 0x80, 0xbf]
      : b === 0xf0
      ? [4, 0x90, 0xbf]
      : b >= 0xf1 && b <= 0xf3
      ? [4, 0x80, 0xbf]
      : b === 0xf4
      ? [4, 0x80, 0x8f]
      : [0, 0, 0];
    if (n === 0 || i + n > bytes.length) return i;
    if (n > 1) {
      const second = bytes[i + 1]!;
      if (second < lo || second > hi) return i;
      for (let k = 2; k < n; k++) if ((bytes[i + k]! & 0xc0) !== 0x80) return i;
    }
    i += n;
  }
  return i;
}

function name(ctx: CommandContext, i: number, what: string): string {
  const n = ctx.positionals[i] ?? "";
  try {
    return checkName(n, what);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

function language(ctx: CommandContext, file: string): Language | undefined {
  const l = ctx.values.language;
  if (typeof l !== "string") return file === "-" ? undefined : languageOf(file);
  if (!isLanguage(l)) {
    throw new UsageError(`--language must be typescript or javascript, not "${l}"`);
  }
  return l;
}

// scripts/demo.ts imports the table from here.
export { table } from "./io.ts";

const LANGUAGE_OPTION = {
  language: {
    type: "string",
    arg: "LANG",
    help: "typescript or javascript (default: from the file name; typescript for -)",
  },
} as const;

const NO_TYPECHECK_OPTION = {
  "no-typecheck": {
    type: "boolean",
    help: "skip the type check against the moat API (the syntax and import check still runs)",
  },
} as const;

/** Whether code is type-checked before it is stored (unless `--no-typecheck`). */
function typeCheck(ctx: CommandContext): boolean {
  return ctx.values["no-typecheck"] !== true;
}

const defAdd: Command = {
  kind: "command",
  name: "add",
  summary: "store a new script",
  args: "NAME FILE|- [DESCRIPTION…]",
  help: "Checks the code (valid TypeScript/JavaScript, no import or export, and the types\n" +
    "against the moat API as `moat script check` does) and stores it under\n" +
    "/meta/script/NAME/:code. An existing NAME is refused.",
  options: { ...LANGUAGE_OPTION, ...NO_TYPECHECK_OPTION },
  minArgs: 2,
  async run(ctx) {
    const n = name(ctx, 0, "script");
    const file = ctx.positionals[1]!;
    const code = await readSource(file);
    const descr = ctx.positionals.slice(2).join(" ");
    // ScriptDefs checks the code (and its types) once, before it stores it.
    await withServices(
      ctx.globals,
      (s) =>
        s.scripts.add(n, code, {
          language: language(ctx, file) ?? "typescript",
          descr,
          typeCheck: typeCheck(ctx),
        }),
    );
    ctx.io.out(`added script ${n}`);
    return 0;
  },
};

const defUpdate: Command = {
  kind: "command",
  name: "update",
  summary: "check new code and make it the current version",
  args: "NAME FILE|-",
  help: "Checks the new code (as def add does), then atomically moves code to old_code and\n" +
    "the new code to code. Running tasks of the script restart with the new code.",
  options: { ...LANGUAGE_OPTION, ...NO_TYPECHECK_OPTION },
  minArgs: 2,
  maxArgs: 2,
  async run(ctx) {
    const n = name(ctx, 0, "script");
    const file = ctx.positionals[1]!;
    const code = await readSource(file);
    const lang = typeof ctx.values.language === "string" ? language(ctx, file) : undefined;
    await withServices(ctx.globals, async (s) => {
      await s.scripts.update(n, code, {
        ...(lang ? { language: lang } : {}),
        typeCheck: typeCheck(ctx),
      });
    });
    ctx.io.out(`updated script ${n}`);
    return 0;
  },
};

const defRevert: Command = {
  kind: "command",
  name: "revert",
  summary: "swap code and old_code",
  args: "NAME",
  minArgs: 1,
  maxArgs: 1,
  async run(ctx) {
    const n = name(ctx, 0, "script");
    await withServices(ctx.globals, (s) => s.scripts.revert(n));
    ctx.io.out(`reverted script ${n}`);
    return 0;
  },
};

const defGet: Command = {
  kind: "command",
  name: "get",
  summary: "print a script's code",
  args: "NAME",
  options: {
    old: { type: "boolean", help: "print old_code (the version before the last update)" },
    new: { type: "boolean", help: "print new_code (a proposed version not yet promoted)" },
  },
  minArgs: 1,
  maxArgs: 1,
  async run(ctx) {
    const n = name(ctx, 0, "script");
    if (ctx.values.old && ctx.values.new) {
      throw new UsageError("--old and --new exclude each other");
    }
    const which = ctx.values.old ? "old" : ctx.values.new ? "new" : "code";
    const code = await withServices(ctx.globals, (s) => s.scripts.code(n, which));
    ctx.io.out(code.endsWith("\n") ? code.slice(0, -1) : code);
    return 0;
  },
};

const JSON_OPTION = { json: { type: "boolean", help: "print JSON for machines" } } as const;

const defList: Command = {
  kind: "command",
  name: "list",
  summary: "list scripts: name, language, description",
  args: "[PATH]",
  help: "PATH is a script name path: porch lists porch and porch/…, not porchsvc.\n" +
    "A PATH that matches no script is an error (exit 1). --json adds, per script,\n" +
    "the tasks that use it, read from the tasks themselves.",
  options: JSON_OPTION,
  maxArgs: 1,
  async run(ctx) {
    const prefix = ctx.positionals[0] ?? "";
    const [list, users] = await withServices(
      ctx.globals,
      async (s) =>
        [
          await s.scripts.list(prefix),
          ctx.values.json ? await s.scripts.users() : undefined,
        ] as const,
    );
    if (ctx.values.json) {
      ctx.io.out(JSON.stringify(
        list.map((i) => ({
          name: i.name,
          language: i.language,
          descr: i.descr,
          created: i.created,
          timestamp: i.timestamp,
          tasks: users?.get(i.name) ?? [],
        })),
        null,
        2,
      ));
    } else {
      for (const line of table(list.map((i) => [i.name, i.language, i.descr]))) ctx.io.out(line);
    }
    return noMatch(ctx, list.length, "script", prefix);
  },
};

const defDelete: Command = {
  kind: "command",
  name: "delete",
  summary: "delete a script (refused while tasks use it)",
  args: "NAME",
  help: "The tasks that use the script are found from the tasks themselves (their\n" +
    "script key). With --force they are left without their script: each is named\n" +
    "on standard error, and the host ends it with state fail and a message naming\n" +
    "the script, and does not retry it until the script is added again.",
  options: { force: { type: "boolean", help: "delete even while tasks use it" } },
  minArgs: 1,
  maxArgs: 1,
  async run(ctx) {
    const n = name(ctx, 0, "script");
    const orphans = await withServices(
      ctx.globals,
      (s) => s.scripts.delete(n, { force: ctx.values.force === true }),
    );
    ctx.io.out(`deleted script ${n}`);
    if (orphans.length > 0) {
      ctx.io.err(
        `warning: ${orphans.length === 1 ? "task" : "tasks"} ${
          orphans.map(escapeControl).join(", ")
        } now ${orphans.length === 1 ? "has" : "have"} no script ${n}: ${
          orphans.length === 1 ? "it ends" : "they end"
        } with state fail until the script is added again (or delete ${
          orphans.length === 1 ? "it" : "them"
        }: moat script delete TASK)`,
      );
    }
    return 0;
  },
};

const def: Group = {
  kind: "group",
  name: "def",
  summary: "manage script definitions",
  commands: [defAdd, defUpdate, defRevert, defGet, defList, defDelete],
};

/** Whether a `moat script check` argument names a file rather than a stored script. */
function looksLikeFile(arg: string): boolean {
  return /\.(m?[tj]s|cjs)$/i.test(arg) || /^\.{0,2}\//.test(arg);
}

async function isFile(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isFile;
  } catch {
    return false;
  }
}

const check: Command = {
  kind: "command",
  name: "check",
  summary: "check scripts: syntax, no imports, and types against the moat API",
  args: "FILE|NAME|-…",
  help: "Runs the check of `moat script def add` on each script: it must be valid\n" +
    "TypeScript/JavaScript without import or export, and it must type-check against\n" +
    "types/moat.d.ts as the body of an async function (TypeScript strictly; JavaScript\n" +
    "with checkJs, not strict). An argument that ends in .ts/.js or starts with / or ./\n" +
    "is a file, as is any other existing file; anything else is the NAME of a stored\n" +
    "script, read from etcd; - reads standard input. Each problem is printed as\n" +
    "FILE:LINE:COL: message on standard output; a clean script as FILE: ok.\n" +
    "--caps FILE checks the code against a capability manifest (JSON or YAML; a\n" +
    "stored script is checked against its stored manifest without it): each use\n" +
    "the code names with a string literal (an RPC name, alert topic or pattern,\n" +
    "tree path, moat.load name, moat.data.set key) that the manifest does not grant\n" +
    "is printed as FILE:LINE:COL: warning: … on standard error. Warnings do not\n" +
    "change the exit code.\n" +
    "Exit code 0 when every script is clean, 1 otherwise.",
  options: {
    ...LANGUAGE_OPTION,
    ...NO_TYPECHECK_OPTION,
    caps: { type: "string", arg: "FILE", help: "warn of uses the manifest in FILE does not grant" },
  },
  minArgs: 1,
  async run(ctx) {
    const given = typeof ctx.values.caps === "string"
      ? await readManifestFile(ctx.values.caps)
      : undefined;
    const manifests: (Manifest | undefined)[] = [];
    const scripts: { file: string; code: string; language: Language }[] = [];
    const stored: { at: number; name: string }[] = [];
    for (const arg of ctx.positionals) {
      if (arg === "-" || looksLikeFile(arg) || await isFile(arg)) {
        const code = await readSource(arg);
        scripts.push({ file: arg, code, language: language(ctx, arg) ?? "typescript" });
        continue;
      }
      try {
        checkName(arg, "script");
      } catch (e) {
        throw new UsageError(
          `"${arg}" is neither a file nor a script name: ${(e as Error).message}`,
        );
      }
      stored.push({ at: scripts.length, name: arg });
      scripts.push({ file: arg, code: "", language: "typescript" });
    }
    if (stored.length > 0) {
      await withServices(ctx.globals, async (s) => {
        for (const { at, name } of stored) {
          const info = await s.scripts.require(name);
          scripts[at] = { file: name, code: await s.scripts.code(name), language: info.language };
          const caps = given
            ? undefined
            : await s.store.get(s.layout.scriptDir(name) + SCRIPT_KEYS.caps);
          if (caps) {
            try {
              manifests[at] = parseManifest(caps.value, `the stored manifest of script ${name}`);
            } catch (e) {
              ctx.io.err(`warning: ${(e as Error).message}`);
            }
          }
        }
      });
    }
    const problems: Diagnostic[][] = scripts.map((sc) => {
      try {
        checkScript(sc.file, sc.code, sc.language);
        return [];
      } catch (e) {
        if (e instanceof ScriptCheckError) return e.diagnostics;
        throw e;
      }
    });
    if (ctx.values["no-typecheck"] !== true) {
      const clean = scripts.flatMap((_sc, i) => problems[i]!.length === 0 ? [i] : []);
      const typed = typeCheckScripts(clean.map((i) => scripts[i]!));
      clean.forEach((i, k) => problems[i] = typed[k]!);
    }
    let bad = 0;
    let count = 0;
    scripts.forEach((sc, i) => {
      const list = problems[i]!;
      if (list.length === 0) {
        ctx.io.out(`${escapeControl(sc.file)}: ok`);
        return;
      }
      bad++;
      count += list.length;
      // On stderr, as `def add` and `try` print them (escaped: a stored
      // script's diagnostics may quote its text).
      for (const d of list) ctx.io.err(formatDiagnostic(sc.file, d));
    });
    scripts.forEach((sc, i) => {
      const manifest = given ?? manifests[i];
      if (!manifest) return;
      for (const d of capsWarnings(sc.code, sc.language, manifest)) {
        ctx.io.err(formatDiagnostic(sc.file, d));
      }
    });
    if (bad === 0) return 0;
    ctx.io.err(
      `error: ${count} ${count === 1 ? "problem" : "problems"} in ${bad} of ${scripts.length} ${
        scripts.length === 1 ? "script" : "scripts"
      }`,
    );
    return 1;
  },
};

/** Split `key=value…` words from the description words that follow them. */
function splitAssignments(words: string[]): { assigns: string[]; rest: string[] } {
  let i = 0;
  while (i < words.length && /^[^=\s]+=/.test(words[i]!)) i++;
  return { assigns: words.slice(0, i), rest: words.slice(i) };
}

function assignments(words: string[]): [string, string | undefined][] {
  try {
    return parseAssignments(words);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

/** The run settings `moat script add` takes as options, by option name. */
const RUN_OPTIONS = {
  restart: {
    type: "string",
    arg: "S",
    help: "seconds before a run that ended normally runs again; 0: never (a one-shot task)",
  },
  retry: {
    type: "string",
    arg: "S",
    help: "seconds before a failed run is retried, growing 1.1× per failure in a row",
  },
  "max-retry": {
    type: "string",
    arg: "S",
    help: "longest pause between retries; 0: never retry",
  },
  group: {
    type: "string",
    arg: "NAME",
    help: "run in sandbox group NAME: one process for the group, one crash domain",
  },
} as const;

/**
 * Warn about `key=value` words whose key names a run setting: they set a
 * data value (as documented), which is seldom what was meant.
 */
function warnSettingWords(ctx: CommandContext, data: [string, unknown][], hint: string): void {
  for (const [k] of data) {
    if (!isSettingKey(k)) continue;
    const option = Object.hasOwn(RUN_OPTIONS, k.replace("_", "-"))
      ? `--${k.replace("_", "-")} S or `
      : "";
    ctx.io.err(
      `warning: ${k}=… sets the task's data value "${k}", not its run setting ` +
        `(use ${option}moat script config ${hint} ${k}=S)`,
    );
  }
}

/** `--restart S` and friends as task settings, checked (a usage error names the key). */
function runOptions(ctx: CommandContext): [string, string][] {
  const out: [string, string][] = [];
  for (const option of Object.keys(RUN_OPTIONS)) {
    const v = ctx.values[option];
    if (typeof v !== "string") continue;
    const key = option.replace("-", "_");
    try {
      checkSetting(key, v);
    } catch (e) {
      throw new UsageError(`--${option}: ${(e as Error).message}`);
    }
    out.push([key, v]);
  }
  return out;
}

const taskAdd: Command = {
  kind: "command",
  name: "add",
  summary: "create a task that runs a script",
  args: "SCRIPT TASK [key=value…] [DESCRIPTION…]",
  help: "Creates /task/TASK/:task with taskdef task/script. TASK starts with the host that\n" +
    "runs it (e.g. myhost/porch/light). Each key=value becomes data/key of the task;\n" +
    "a secret (types/KEY = secret) cannot be given here: moat script param --secret-file.\n" +
    "--restart, --retry, --max-retry and --group set the task's run settings (moat\n" +
    "script config shows and changes them and every other setting).",
  options: RUN_OPTIONS,
  minArgs: 2,
  async run(ctx) {
    const script = name(ctx, 0, "script");
    const task = name(ctx, 1, "task");
    const settings = runOptions(ctx);
    const { assigns, rest } = splitAssignments(ctx.positionals.slice(2));
    const data = assignments(assigns).map(([k, v]): [string, string] => [k, v ?? ""]);
    const t = await withServices(
      ctx.globals,
      (s) => s.tasks.add(script, task, { data, descr: rest.join(" "), settings }),
    );
    ctx.io.out(`added task ${t.path} (script ${t.script})`);
    warnSettingWords(ctx, data, t.path);
    return 0;
  },
};

const taskList: Command = {
  kind: "command",
  name: "list",
  summary: "list script tasks: path, script, description",
  args: "[PATH]",
  help: "PATH is a task path: h1/porch lists h1/porch and h1/porch/…, not h1/porchsvc.\n" +
    "A PATH that matches no task is an error (exit 1).",
  options: JSON_OPTION,
  maxArgs: 1,
  async run(ctx) {
    const prefix = ctx.positionals[0] ?? "";
    const list = await withServices(ctx.globals, (s) => s.tasks.list(prefix));
    if (ctx.values.json) {
      ctx.io.out(JSON.stringify(
        list.map((t) => ({ path: t.path, script: t.script, descr: t.descr, data: t.data })),
        null,
        2,
      ));
    } else {
      for (const line of table(list.map((t) => [t.path, t.script, t.descr]))) ctx.io.out(line);
    }
    return noMatch(ctx, list.length, "task", prefix);
  },
};

const taskDelete: Command = {
  kind: "command",
  name: "delete",
  summary: "delete a script task (and its status and error records)",
  args: "TASK",
  help: "Deletes the task, its entry in the script's tasks/, its status\n" +
    "(/status/run/TASK/:task) and its error records. A host running it stops it.",
  minArgs: 1,
  maxArgs: 1,
  async run(ctx) {
    const task = name(ctx, 0, "task");
    await withServices(ctx.globals, (s) => s.tasks.delete(task));
    ctx.io.out(`deleted task ${task}`);
    return 0;
  },
};

/** The most bytes `--secret-file` reads. */
export const MAX_SECRET_BYTES = 64 * 1024;

/**
 * Read a secret value from a file, or from standard input for "-": UTF-8
 * text of at most {@linkcode MAX_SECRET_BYTES}, one trailing newline dropped
 * (what `echo` or an editor leaves). Else a `UsageError` naming the file.
 */
async function readSecret(file: string): Promise<string> {
  const shown = file === "-" ? "standard input" : `"${file}"`;
  let bytes: Uint8Array;
  try {
    bytes = file === "-"
      ? new Uint8Array(await new Response(Deno.stdin.readable).arrayBuffer())
      : await Deno.readFile(file);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new UsageError(`file "${file}" does not exist`);
    throw new UsageError(`cannot read ${shown}: ${(e as Error).message}`);
  }
  if (bytes.length > MAX_SECRET_BYTES) {
    throw new UsageError(
      `${shown} is ${bytes.length} bytes; a secret may be at most ${MAX_SECRET_BYTES}`,
    );
  }
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw new UsageError(`${shown} is not UTF-8 text`);
  }
  text = text.replace(/\r?\n$/, "");
  if (text === "") {
    throw new UsageError(`${shown} is empty: a secret needs a value (KEY= deletes one)`);
  }
  return text;
}

const taskParam: Command = {
  kind: "command",
  name: "param",
  summary: "show, read or set a task's data values (key= deletes)",
  args: "TASK [KEY | key=value…]",
  help: "TASK alone lists the task's data values as key=value lines; TASK KEY prints\n" +
    "one value (an error if the task has none). key=value sets values, key= deletes\n" +
    "them; a value must fit the type the script declares for the key (types/KEY), or\n" +
    "it is a usage error naming the key. --json prints the values as a script reads\n" +
    "them (typed, or JSON when the text is JSON): an object, or one value with KEY.\n" +
    "A secret value (types/KEY = secret, docs/security.md) shows as *** unless\n" +
    "--show-secret is given with its KEY; it is set with TASK KEY --secret-file FILE\n" +
    "(- reads standard input), never as key=value on the command line.",
  options: {
    ...JSON_OPTION,
    "secret-file": {
      type: "string",
      arg: "FILE",
      help: "set the secret value KEY from FILE (- for standard input; one final newline dropped)",
    },
    "show-secret": { type: "boolean", help: "with KEY: print a secret value itself, not ***" },
  },
  minArgs: 1,
  async run(ctx) {
    const task = name(ctx, 0, "task");
    const words = ctx.positionals.slice(1);
    const json = ctx.values.json === true;
    const secretFile = ctx.values["secret-file"];
    const showSecret = ctx.values["show-secret"] === true;
    const oneKey = words.length === 1 && !words[0]!.includes("=");
    if ((secretFile !== undefined || showSecret) && !oneKey) {
      throw new UsageError(
        `--${secretFile !== undefined ? "secret-file" : "show-secret"} needs exactly one KEY ` +
          "(TASK KEY)",
      );
    }
    if (typeof secretFile === "string") {
      const key = words[0]!;
      try {
        checkVarName(key);
      } catch (e) {
        throw new UsageError((e as Error).message);
      }
      const value = await readSecret(secretFile);
      await withServices(ctx.globals, (s) => s.tasks.setSecret(task, key, value));
      ctx.io.out(`${escapeControl(key)}=${SECRET_MASK}`);
      return 0;
    }
    if (oneKey) {
      const key = words[0]!;
      try {
        checkVarName(key);
      } catch (e) {
        throw new UsageError((e as Error).message);
      }
      const out = await withServices(ctx.globals, async (s) => {
        const t = await s.tasks.require(task);
        if (Object.hasOwn(t.secrets, key)) {
          // Shown only when asked for by name: a terminal is often watched or recorded.
          const v = showSecret ? t.secrets[key]! : SECRET_MASK;
          return json ? terminalJson(v, 2) : v;
        }
        if (!Object.hasOwn(t.data, key)) {
          throw new CommandError(`task "${task}" has no data value "${key}"`);
        }
        return json ? terminalJson((await s.tasks.values(task, key))[key], 2) : t.data[key]!;
      });
      ctx.io.out(json ? out : escapeControl(out));
      return 0;
    }
    const changes = assignments(words);
    warnSettingWords(ctx, changes.filter(([, v]) => v !== undefined), task);
    const data = await withServices(ctx.globals, async (s) => {
      const d = await s.tasks.param(task, changes);
      const secrets = (await s.tasks.require(task)).secrets;
      // Secrets are listed as set, never with their text.
      const masked = Object.fromEntries(Object.keys(secrets).map((k) => [k, SECRET_MASK]));
      return json ? { ...await s.tasks.values(task), ...masked } : { ...d, ...masked };
    });
    if (json) {
      ctx.io.out(terminalJson(data, 2));
      return 0;
    }
    for (const [k, v] of Object.entries(data).sort(([a], [b]) => a < b ? -1 : 1)) {
      // Values come from scripts (moat.data.set) and from etcd: shown escaped.
      ctx.io.out(`${escapeControl(k)}=${escapeControl(String(v))}`);
    }
    return 0;
  },
};

const taskConfig: Command = {
  kind: "command",
  name: "config",
  summary: "show or set a task's run settings, sandbox limits and quotas",
  args: "TASK [key=value…]",
  help: "Shows every per-task setting with the value in force and where it comes from:\n" +
    "task (the task's own key), /config/run (the install's), or default. The run\n" +
    "settings are ttl, refresh, restart, retry, max_retry and group (docs/scripts.md,\n" +
    '"Run settings"); the sandbox limits and quotas are in docs/security.md.\n' +
    "key=value sets the task's own value (the host reads it at the task's next start),\n" +
    "key= deletes it (back to /config/run or the default). An unknown key, or a\n" +
    "value the host would not accept, is a usage error naming the key; nothing is\n" +
    "changed then. A stored value the host ignores is shown as ignored. A limit or\n" +
    "quota the task's capability manifest sets (moat script caps) wins over all of\n" +
    "them: its source is manifest.",
  options: JSON_OPTION,
  minArgs: 1,
  async run(ctx) {
    const task = name(ctx, 0, "task");
    const changes = assignments(ctx.positionals.slice(1));
    const rows = await withServices(ctx.globals, async (s) => {
      const t = await s.tasks.setSettings(task, changes);
      const rows: ConfigRow[] = settingRows(await readGlobalSettings(s.store, s.layout), t.other);
      let limits: Record<string, number> = {};
      try {
        limits = (await readManifest(s.store, s.layout, t.script, t))?.limits ?? {};
      } catch (e) {
        if (!(e instanceof ManifestError)) throw e;
        ctx.io.err(`warning: ${e.message}; the task does not run until it is fixed`);
      }
      // The manifest's limits win over the task's and /config/run's (docs/security.md).
      return rows.map((r) =>
        limits[r.key] === undefined
          ? r
          : { ...r, value: limits[r.key]!, source: "manifest" as const }
      );
    });
    if (ctx.values.json) {
      ctx.io.out(JSON.stringify(rows, null, 2));
      return 0;
    }
    const note = (r: ConfigRow) => r.ignored.map((i) => `ignored: ${i}`).join("; ");
    for (
      const line of table([
        ["KEY", "VALUE", "SOURCE", "DEFAULT", "NOTE"],
        ...rows.map((r) => [
          r.key,
          String(r.value),
          r.source,
          String(r.default),
          [r.installWide ? "/config/run only" : "", note(r)].filter((x) => x).join("; "),
        ]),
      ])
    ) ctx.io.out(line);
    return 0;
  },
};

/** A setting as `moat script config` shows it: also `manifest` as its source. */
type ConfigRow = Omit<SettingRow, "source"> & { source: SettingRow["source"] | "manifest" };

/** The `moat script` group. */
export const scriptGroup: Group = {
  kind: "group",
  name: "script",
  summary: "manage scripts and script tasks",
  commands: [
    def,
    taskAdd,
    taskList,
    taskDelete,
    taskParam,
    taskConfig,
    capsCommand,
    check,
    tryCommand,
  ],
};
