/**
 * The definition-time check of a script: it must be valid TypeScript or
 * JavaScript and must not import or export anything (scripts get code from
 * other scripts only through `moat.load`). A script that passes is
 * transpiled to the JavaScript the sandbox evaluates.
 *
 * @module
 */

import ts from "typescript";
import { escapeControl } from "../text.ts";
import { DeniedError, Grants, type Manifest } from "../capabilities/manifest.ts";
import { treePath } from "../capabilities/script_view.ts";

/** The languages a script may be written in. */
export type Language = "typescript" | "javascript";

/** One problem found in a script. */
export interface Diagnostic {
  /** 1-based line. */
  line: number;
  /** 1-based column. */
  col: number;
  /** What is wrong. */
  message: string;
}

/**
 * One problem as the line every moat command prints for it (on standard
 * error): `SOURCE:LINE:COL: message`, the form compilers and editors know.
 * SOURCE is the file as given, `-` for standard input, or a stored script's
 * name. Both may quote a stored script's text: shown with control
 * characters escaped, so a problem is always one line.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { formatDiagnostic } from "./check.ts";
 * assert.equal(
 *   formatDiagnostic("porch.ts", { line: 3, col: 6, message: "Cannot find name 'x'." }),
 *   "porch.ts:3:6: Cannot find name 'x'.",
 * );
 * ```
 */
export function formatDiagnostic(source: string, d: Diagnostic): string {
  return `${escapeControl(source)}:${d.line}:${d.col}: ${escapeControl(d.message)}`;
}

/** A script failed its check; `message` lists every `NAME:LINE:COL: message`. */
export class ScriptCheckError extends Error {
  /** Always `ScriptCheckError`. */
  override name = "ScriptCheckError";
  /** Every problem found, in source order. */
  readonly diagnostics: Diagnostic[];
  /** The name the script was checked under (a file or script name). */
  readonly file: string;
  /** The error for `diagnostics` found in `file`. */
  constructor(file: string, diagnostics: Diagnostic[]) {
    super(diagnostics.map((d) => `${file}:${d.line}:${d.col}: ${d.message}`).join("\n"));
    this.file = file;
    this.diagnostics = diagnostics;
  }
}

/** Whether `s` names a language. */
export function isLanguage(s: string): s is Language {
  return s === "typescript" || s === "javascript";
}

/** Guess a language from a file name: `.js`/`.mjs` is JavaScript, else TypeScript. */
export function languageOf(file: string): Language {
  return /\.(m?js|cjs)$/i.test(file) ? "javascript" : "typescript";
}

/**
 * Check a script and return its JavaScript. Throws `ScriptCheckError`.
 *
 * @param file the name to use in messages (the script's name or file path)
 */
export function checkScript(file: string, code: string, language: Language): string {
  const fileName = language === "javascript" ? "script.js" : "script.ts";
  const out = ts.transpileModule(code, {
    fileName,
    reportDiagnostics: true,
    compilerOptions: {
      target: ts.ScriptTarget.ES2022,
      module: ts.ModuleKind.ESNext,
      allowJs: true,
      removeComments: false,
    },
  });
  const diagnostics: Diagnostic[] = [];
  for (const d of out.diagnostics ?? []) {
    diagnostics.push(toDiagnostic(d));
  }
  const sf = ts.createSourceFile(
    fileName,
    code,
    ts.ScriptTarget.ES2022,
    true,
    language === "javascript" ? ts.ScriptKind.JS : ts.ScriptKind.TS,
  );
  findModuleSyntax(sf, diagnostics);
  if (diagnostics.length > 0) {
    diagnostics.sort((a, b) => a.line - b.line || a.col - b.col);
    throw new ScriptCheckError(file, diagnostics);
  }
  return out.outputText;
}

function toDiagnostic(d: ts.Diagnostic): Diagnostic {
  const message = ts.flattenDiagnosticMessageText(d.messageText, " ");
  if (d.file && d.start !== undefined) {
    const p = d.file.getLineAndCharacterOfPosition(d.start);
    return { line: p.line + 1, col: p.character + 1, message };
  }
  return { line: 1, col: 1, message };
}

function at(sf: ts.SourceFile, node: ts.Node, message: string): Diagnostic {
  const p = sf.getLineAndCharacterOfPosition(node.getStart(sf));
  return { line: p.line + 1, col: p.character + 1, message };
}

// Scripts are untrusted: every way of naming a module is refused here, and
// the sandbox refuses module loading again at run time.
function findModuleSyntax(sf: ts.SourceFile, out: Diagnostic[]): void {
  const visit = (node: ts.Node): void => {
    if (ts.isImportDeclaration(node) || ts.isImportEqualsDeclaration(node)) {
      out.push(
        at(sf, node, "import statements are not allowed; use moat.load() to use another script"),
      );
      return;
    }
    if (ts.isExportDeclaration(node) || ts.isExportAssignment(node)) {
      out.push(at(sf, node, "export statements are not allowed in scripts"));
      return;
    }
    if (
      (ts.isVariableStatement(node) || ts.isFunctionDeclaration(node) ||
        ts.isClassDeclaration(node) || ts.isEnumDeclaration(node) ||
        ts.isInterfaceDeclaration(node) || ts.isTypeAliasDeclaration(node) ||
        ts.isModuleDeclaration(node)) &&
      node.modifiers?.some((m) => m.kind === ts.SyntaxKind.ExportKeyword)
    ) {
      out.push(at(sf, node, "export statements are not allowed in scripts"));
    }
    if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) {
      out.push(
        at(sf, node, "dynamic import() is not allowed; use moat.load() to use another script"),
      );
    }
    if (ts.isMetaProperty(node) && node.keywordToken === ts.SyntaxKind.ImportKeyword) {
      out.push(at(sf, node, "import.meta is not available in scripts"));
    }
    if (ts.isImportTypeNode(node)) {
      out.push(at(sf, node, "import types are not allowed in scripts"));
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
}

// ---------------------------------------------------------------------------
// Capability manifests, statically (docs/security.md): warnings for uses the
// code names with string literals (`moat.call("door.open")`, `moat.rpc(…)`,
// `moat.alert(…)`, `moat.on_alert(…)`, `moat.load(…)`, `moat.tree.lookup(…)`,
// `moat.data.set(…)`) that a manifest does not grant. A name computed at run
// time is not judged here; the host refuses it then.

/** The literal text of `node`, when it is a string without substitutions. */
function literal(node: ts.Node | undefined): string | undefined {
  if (node && (ts.isStringLiteral(node) || ts.isNoSubstitutionTemplateLiteral(node))) {
    return node.text;
  }
  return undefined;
}

/** `moat.a.b` as "a.b"; undefined for anything else. */
function moatMember(expr: ts.Expression): string | undefined {
  const parts: string[] = [];
  let e: ts.Expression = expr;
  while (ts.isPropertyAccessExpression(e)) {
    parts.unshift(e.name.text);
    e = e.expression;
  }
  return ts.isIdentifier(e) && e.text === "moat" && parts.length > 0 ? parts.join(".") : undefined;
}

/**
 * Warnings (`warning: …`) for the literal uses in `code` that `manifest`
 * does not grant, in source order.
 */
export function capsWarnings(code: string, language: Language, manifest: Manifest): Diagnostic[] {
  const kind = language === "typescript" ? ts.ScriptKind.TS : ts.ScriptKind.JS;
  const sf = ts.createSourceFile("script", code, ts.ScriptTarget.Latest, true, kind);
  const grants = new Grants(manifest);
  const out: Diagnostic[] = [];
  const judge = (node: ts.Node, check: () => void) => {
    try {
      check();
    } catch (e) {
      if (!(e instanceof DeniedError)) return; // a malformed name: the host says so at run time
      const { line, character } = sf.getLineAndCharacterOfPosition(node.getStart(sf));
      const what = e.capability === "thread"
        ? 'moat.thread ("thread": false)'
        : e.message.replace(/^denied: /, "").replace(/ is not in this script's manifest$/, "");
      out.push({
        line: line + 1,
        col: character + 1,
        message: `warning: ${what} is not granted by the manifest`,
      });
    }
  };
  const visit = (node: ts.Node): void => {
    if (ts.isCallExpression(node)) {
      const member = moatMember(node.expression);
      const first = literal(node.arguments[0]);
      const arg = node.arguments[0] ?? node;
      // moat.thread(fn): whatever the function, refused by "thread": false.
      if (member === "thread") {
        judge(node.expression, () => grants.thread());
      }
      if (member !== undefined && first !== undefined) {
        switch (member) {
          case "call":
            judge(arg, () => grants.rpcCall(first));
            break;
          case "rpc":
            judge(arg, () => grants.rpcServe(first));
            break;
          case "alert":
            judge(arg, () => grants.alertSend(first));
            break;
          case "on_alert":
            judge(arg, () => grants.alertReceive(first));
            break;
          case "load":
            judge(arg, () => grants.load(first));
            break;
          case "data.set":
            judge(arg, () => grants.dataWrite(first));
            break;
          case "tree.lookup": {
            const segs = node.arguments.map(literal);
            if (segs.every((s) => s !== undefined)) {
              judge(arg, () => grants.treeRead(treePath(segs.join("/"))));
            }
            break;
          }
        }
      }
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
  return out;
}
