/**
 * Validation of the names users give to scripts and tasks.
 *
 * A name is a path of segments separated by `/`. Each segment is plain
 * text: not empty, not `.` or `..`, not starting with `:` (that marks a tag
 * node such as `:code`), and without control characters or white space, so
 * that every name maps to exactly one etcd key prefix and back.
 *
 * @module
 */

/** Split and check a name; throws `RangeError` naming what is wrong. */
export function parseName(name: string, what: string): string[] {
  if (typeof name !== "string" || name === "") {
    throw new RangeError(`${what} name must not be empty`);
  }
  const segments = name.split("/");
  for (const seg of segments) {
    if (seg === "") {
      throw new RangeError(`${what} name "${name}" has an empty segment`);
    }
    if (seg === "." || seg === "..") {
      throw new RangeError(`${what} name "${name}" must not contain "${seg}"`);
    }
    if (seg.startsWith(":")) {
      throw new RangeError(
        `${what} name "${name}" must not contain the tagged segment "${seg}"`,
      );
    }
    // deno-lint-ignore no-control-regex
    if (/[\s\u0000-\u001f\u007f]/.test(seg)) {
      throw new RangeError(
        `${what} name "${name}" must not contain white space or control characters`,
      );
    }
  }
  return segments;
}

/** Check a name and return it unchanged. */
export function checkName(name: string, what: string): string {
  parseName(name, what);
  return name;
}

/** Names of script variables (`data/`, `values/`, `types/` keys): one segment. */
export function checkVarName(name: string): string {
  if (!/^[A-Za-z_][A-Za-z0-9_.-]*$/.test(name)) {
    throw new RangeError(
      `variable name "${name}" must start with a letter or "_" and contain only letters, digits, "_", "." and "-"`,
    );
  }
  return name;
}
