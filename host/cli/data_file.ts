/**
 * The data files that `moat script try` reads (`--tree`, `--events`): JSON,
 * or YAML when the name ends in `.yaml` or `.yml`. The one place that
 * knows the `yaml` package.
 *
 * @module
 */

import { parseDocument, stringify } from "yaml";

/** Why a data file could not be read as what its name says. */
export class DataFileError extends Error {
  override name = "DataFileError";
}

/** True when `file` is read as YAML (by its name). */
export function isYamlFile(file: string): boolean {
  return /\.ya?ml$/i.test(file);
}

/**
 * The value a data file's text holds: YAML for `.yaml`/`.yml` names (one
 * document; anchors and aliases allowed, custom tags not), JSON otherwise.
 * Throws a {@linkcode DataFileError} that names the line and column.
 */
export function parseDataFile(text: string, file: string): unknown {
  if (!isYamlFile(file)) {
    try {
      return JSON.parse(text);
    } catch (e) {
      throw new DataFileError(
        `is not valid JSON: ${(e as Error).message} (name it .yaml to write YAML)`,
        { cause: e },
      );
    }
  }
  const doc = parseDocument(text, { uniqueKeys: true, version: "1.2" });
  const problem = doc.errors[0];
  if (problem) {
    const at = problem.linePos?.[0];
    const where = at ? ` at line ${at.line}, column ${at.col}` : "";
    const what = problem.message.split("\n")[0]!.replace(/ at line \d+, column \d+:?$/, "");
    throw new DataFileError(`is not valid YAML${where}: ${what}`);
  }
  try {
    // A document that is too large once its aliases are expanded is refused.
    return doc.toJS({ maxAliasCount: 100 });
  } catch (e) {
    throw new DataFileError(`is not usable YAML: ${(e as Error).message}`, { cause: e });
  }
}

/** `value` as YAML text (for commands that print YAML), without a final newline. */
export function yamlText(value: unknown): string {
  return stringify(value).replace(/\n$/, "");
}
