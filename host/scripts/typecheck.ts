/**
 * The type check of a script against `types/moat.d.ts`, with the
 * TypeScript compiler API (`moat script check`, `moat script def add/update`).
 *
 * A script is the body of an async function: it is checked as exactly that,
 * wrapped in `(async () => { … })()`, so top-level `await` and `return`
 * work and its declarations are its own. The globals it sees are those of
 * the sandbox: ES2022, `moat` (types/moat.d.ts), `console`, the timers,
 * `queueMicrotask` and `structuredClone` — no DOM, no `Deno`, no `fetch`.
 *
 * - TypeScript is checked with `strict: true` (Deno's default), so a script
 *   that passes `deno check` with the d.ts referenced passes here.
 * - JavaScript is checked too (`checkJs`), without `strict`: a misspelt
 *   member of `moat` or an argument of the wrong type is an error; implicit
 *   `any` and "possibly undefined" are not (plain JavaScript cannot say
 *   otherwise without JSDoc).
 *
 * The d.ts is read beside this module (`../../types/moat.d.ts` from
 * `import.meta.url`): a compiled `moat` needs `--include types/moat.d.ts`
 * (scripts/compile.ts passes it). TypeScript's own lib files come from the
 * `typescript` npm package.
 *
 * @module
 */

import ts from "typescript";
import { type Diagnostic, type Language, ScriptCheckError } from "./check.ts";

/** One script to type-check. */
export interface TypeCheckInput {
  /** The name used in messages (a file path or a script name). */
  file: string;
  code: string;
  language: Language;
}

/** What the sandbox offers besides ES2022 and `moat` (see sandbox/worker.ts). */
const SANDBOX_GLOBALS = `
interface Console {
  log(...data: any[]): void;
  info(...data: any[]): void;
  warn(...data: any[]): void;
  error(...data: any[]): void;
  debug(...data: any[]): void;
  trace(...data: any[]): void;
}
declare var console: Console;
declare function setTimeout(handler: (...args: any[]) => void, timeout?: number, ...args: any[]): number;
declare function setInterval(handler: (...args: any[]) => void, timeout?: number, ...args: any[]): number;
declare function clearTimeout(id: number | undefined): void;
declare function clearInterval(id: number | undefined): void;
declare function queueMicrotask(callback: () => void): void;
interface Performance {
  now(): number;
  readonly timeOrigin: number;
}
declare var performance: Performance;
declare function structuredClone<T>(value: T): T;
`;

const PREFIX = "(async () => {\n";
const SUFFIX = "\n})();\n";
const DIR = "/moat-typecheck/";
const DTS_NAME = `${DIR}moat.d.ts`;
const GLOBALS_NAME = `${DIR}sandbox_globals.d.ts`;

let dtsText: string | undefined;

/** The text of types/moat.d.ts, read once. */
export function moatTypes(): string {
  if (dtsText !== undefined) return dtsText;
  const url = new URL("../../types/moat.d.ts", import.meta.url);
  try {
    dtsText = Deno.readTextFileSync(url);
  } catch (e) {
    throw new Error(
      `Cannot type-check scripts: cannot read the moat API types at ${url.href} ` +
        `(${(e as Error).message}); use --no-typecheck to skip the type check`,
      { cause: e },
    );
  }
  return dtsText;
}

/** Lib and d.ts source files, parsed once per process and shared by every program. */
const sourceCache = new Map<string, ts.SourceFile>();

function optionsFor(language: Language): ts.CompilerOptions {
  const base: ts.CompilerOptions = {
    target: ts.ScriptTarget.ES2022,
    lib: ["lib.es2022.d.ts"],
    module: ts.ModuleKind.None,
    noEmit: true,
    noResolve: true,
    types: [],
    skipLibCheck: true,
    allowUnreachableCode: true,
  };
  return language === "typescript"
    ? { ...base, strict: true }
    : { ...base, allowJs: true, checkJs: true, strict: false };
}

function checkGroup(inputs: TypeCheckInput[], language: Language): Diagnostic[][] {
  const options = optionsFor(language);
  const ext = language === "typescript" ? "ts" : "js";
  const names = inputs.map((_, i) => `${DIR}script_${i}.${ext}`);
  const texts = new Map<string, string>([[DTS_NAME, moatTypes()], [GLOBALS_NAME, SANDBOX_GLOBALS]]);
  names.forEach((n, i) => texts.set(n, PREFIX + inputs[i]!.code + SUFFIX));
  const host = ts.createCompilerHost(options, true);
  const getSourceFile = host.getSourceFile.bind(host);
  host.getSourceFile = (fileName, languageVersion, onError, shouldCreate) => {
    const own = texts.get(fileName);
    if (own !== undefined) {
      if (fileName === DTS_NAME || fileName === GLOBALS_NAME) {
        const key = `${fileName}\0${own.length}`;
        let sf = sourceCache.get(key);
        if (sf === undefined || sf.text !== own) {
          sf = ts.createSourceFile(fileName, own, languageVersion, true);
          sourceCache.set(key, sf);
        }
        return sf;
      }
      return ts.createSourceFile(fileName, own, languageVersion, true);
    }
    const cached = sourceCache.get(fileName);
    if (cached) return cached;
    const sf = getSourceFile(fileName, languageVersion, onError, shouldCreate);
    if (sf) sourceCache.set(fileName, sf);
    return sf;
  };
  const fileExists = host.fileExists.bind(host);
  host.fileExists = (f) => texts.has(f) || fileExists(f);
  const readFile = host.readFile.bind(host);
  host.readFile = (f) => texts.get(f) ?? readFile(f);
  host.writeFile = () => {};
  const program = ts.createProgram({
    rootNames: [DTS_NAME, GLOBALS_NAME, ...names],
    options,
    host,
  });
  return names.map((name) => {
    const sf = program.getSourceFile(name)!;
    const all = [...program.getSyntacticDiagnostics(sf), ...program.getSemanticDiagnostics(sf)];
    const out: Diagnostic[] = [];
    for (const d of all) {
      if (d.category !== ts.DiagnosticCategory.Error) continue;
      const message = ts.flattenDiagnosticMessageText(d.messageText, "\n")
        .split("\n").map((l) => l.trim()).join(" ");
      if (d.start === undefined) {
        out.push({ line: 1, col: 1, message });
        continue;
      }
      const p = sf.getLineAndCharacterOfPosition(d.start);
      // Line 1 of the wrapped text is the prefix; keep positions inside the script.
      const line = Math.max(1, p.line);
      out.push({ line, col: p.line === 0 ? 1 : p.character + 1, message });
    }
    out.sort((a, b) => a.line - b.line || a.col - b.col);
    return out;
  });
}

/**
 * Type-check several scripts at once (the lib files are parsed once).
 * Returns each script's problems, in the order given; an empty list when
 * it is clean. Throws only when the moat API types cannot be read.
 */
export function typeCheckScripts(inputs: TypeCheckInput[]): Diagnostic[][] {
  const out: Diagnostic[][] = inputs.map(() => []);
  for (const language of ["typescript", "javascript"] as const) {
    const idx = inputs.flatMap((inp, i) => inp.language === language ? [i] : []);
    if (idx.length === 0) continue;
    const res = checkGroup(idx.map((i) => inputs[i]!), language);
    idx.forEach((i, k) => out[i] = res[k]!);
  }
  return out;
}

/**
 * Type-check one script against types/moat.d.ts.
 *
 * @param file the name to use in messages
 * @throws {ScriptCheckError} listing every `FILE:LINE:COL: message`
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { typeCheckScript } from "./typecheck.ts";
 * typeCheckScript("ok.ts", 'moat.setup();\nawait moat.wait("7 hr");\n', "typescript");
 * assert.throws(() => typeCheckScript("bad.ts", "moat.setup();\nmoat.setpu();\n", "typescript"));
 * ```
 */
export function typeCheckScript(file: string, code: string, language: Language): void {
  const [problems] = typeCheckScripts([{ file, code, language }]);
  if (problems!.length > 0) throw new ScriptCheckError(file, problems!);
}
