/**
 * `moat script …`: script definitions (`moat script def …`) and script
 * tasks (`moat script add|list|delete|param`).
 *
 * @module
 */

import type { Command, CommandContext, Group } from "./command.ts";
import { table, UsageError } from "./io.ts";
import { escapeControl } from "../text.ts";
import { withServices } from "./services.ts";
import {
  checkScript,
  type Diagnostic,
  isLanguage,
  type Language,
  languageOf,
  ScriptCheckError,
} from "../scripts/check.ts";
import { typeCheckScripts } from "../scripts/typecheck.ts";
import { checkName } from "../names.ts";
import { parseAssignments } from "../tasks/task_defs.ts";
import { tryCommand } from "./try_cmd.ts";

/** Read a script's source from a file, or from standard input for "-". */
export async function readSource(file: string): Promise<string> {
  if (file === "-") return await new Response(Deno.stdin.readable).text();
  try {
    return await Deno.readTextFile(file);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new UsageError(`file "${file}" does not exist`);
    if (e instanceof Deno.errors.IsADirectory) throw new UsageError(`"${file}" is a directory`);
    throw new UsageError(`cannot read "${file}": ${(e as Error).message}`);
  }
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
  args: "[PREFIX]",
  options: JSON_OPTION,
  maxArgs: 1,
  async run(ctx) {
    const prefix = ctx.positionals[0] ?? "";
    const list = await withServices(ctx.globals, (s) => s.scripts.list(prefix));
    if (ctx.values.json) {
      ctx.io.out(JSON.stringify(
        list.map((i) => ({
          name: i.name,
          language: i.language,
          descr: i.descr,
          created: i.created,
          timestamp: i.timestamp,
          tasks: Object.values(i.tasks).sort(),
        })),
        null,
        2,
      ));
    } else {
      for (const line of table(list.map((i) => [i.name, i.language, i.descr]))) ctx.io.out(line);
    }
    return 0;
  },
};

const defDelete: Command = {
  kind: "command",
  name: "delete",
  summary: "delete a script (refused while tasks use it)",
  args: "NAME",
  options: { force: { type: "boolean", help: "delete even while tasks use it" } },
  minArgs: 1,
  maxArgs: 1,
  async run(ctx) {
    const n = name(ctx, 0, "script");
    await withServices(
      ctx.globals,
      (s) => s.scripts.delete(n, { force: ctx.values.force === true }),
    );
    ctx.io.out(`deleted script ${n}`);
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
    "Exit code 0 when every script is clean, 1 otherwise.",
  options: { ...LANGUAGE_OPTION, ...NO_TYPECHECK_OPTION },
  minArgs: 1,
  async run(ctx) {
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
      // A stored script's diagnostics may quote its text: shown escaped.
      const file = escapeControl(sc.file);
      for (const d of list) ctx.io.out(`${file}:${d.line}:${d.col}: ${escapeControl(d.message)}`);
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

const taskAdd: Command = {
  kind: "command",
  name: "add",
  summary: "create a task that runs a script",
  args: "SCRIPT TASK [key=value…] [DESCRIPTION…]",
  help: "Creates /task/TASK/:task with taskdef task/script. TASK starts with the host that\n" +
    "runs it (e.g. myhost/porch/light). Each key=value becomes data/key of the task.",
  minArgs: 2,
  async run(ctx) {
    const script = name(ctx, 0, "script");
    const task = name(ctx, 1, "task");
    const { assigns, rest } = splitAssignments(ctx.positionals.slice(2));
    const data = assignments(assigns).map(([k, v]): [string, string] => [k, v ?? ""]);
    const t = await withServices(
      ctx.globals,
      (s) => s.tasks.add(script, task, { data, descr: rest.join(" ") }),
    );
    ctx.io.out(`added task ${t.path} (script ${t.script})`);
    return 0;
  },
};

const taskList: Command = {
  kind: "command",
  name: "list",
  summary: "list script tasks: path, script, description",
  args: "[PREFIX]",
  options: JSON_OPTION,
  maxArgs: 1,
  async run(ctx) {
    const list = await withServices(ctx.globals, (s) => s.tasks.list(ctx.positionals[0] ?? ""));
    if (ctx.values.json) {
      ctx.io.out(JSON.stringify(
        list.map((t) => ({ path: t.path, script: t.script, descr: t.descr, data: t.data })),
        null,
        2,
      ));
    } else {
      for (const line of table(list.map((t) => [t.path, t.script, t.descr]))) ctx.io.out(line);
    }
    return 0;
  },
};

const taskDelete: Command = {
  kind: "command",
  name: "delete",
  summary: "delete a script task",
  args: "TASK",
  minArgs: 1,
  maxArgs: 1,
  async run(ctx) {
    const task = name(ctx, 0, "task");
    await withServices(ctx.globals, (s) => s.tasks.delete(task));
    ctx.io.out(`deleted task ${task}`);
    return 0;
  },
};

const taskParam: Command = {
  kind: "command",
  name: "param",
  summary: "show or set a task's data values (key= deletes)",
  args: "TASK [key=value…]",
  minArgs: 1,
  async run(ctx) {
    const task = name(ctx, 0, "task");
    const changes = assignments(ctx.positionals.slice(1));
    const data = await withServices(ctx.globals, (s) => s.tasks.param(task, changes));
    for (const [k, v] of Object.entries(data).sort(([a], [b]) => a < b ? -1 : 1)) {
      // Values come from scripts (moat.data.set) and from etcd: shown escaped.
      ctx.io.out(`${escapeControl(k)}=${escapeControl(v)}`);
    }
    return 0;
  },
};

/** The `moat script` group. */
export const scriptGroup: Group = {
  kind: "group",
  name: "script",
  summary: "manage scripts and script tasks",
  commands: [def, taskAdd, taskList, taskDelete, taskParam, check, tryCommand],
};
