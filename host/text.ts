/**
 * Showing text that came from a script (or was typed into etcd by hand) on a
 * terminal or in a log, so that it cannot forge lines, move the cursor,
 * recolour the screen, set the clipboard (OSC 52) or reorder what follows.
 *
 * The notation is that of a JavaScript string literal, so it is familiar,
 * reversible and cannot be forged: `\\` for a backslash; `\n`, `\r`, `\t`
 * for those three; `\xNN` for every other C0 control and DEL (ESC is
 * `\x1b`); `\uNNNN` for the C1 controls (U+0080–U+009F), the bidi embeddings,
 * overrides and isolates (U+202A–U+202E, U+2066–U+2069) and the line and
 * paragraph separators (U+2028, U+2029). Hex digits are lower case. Every
 * other character, emoji and non-Latin scripts included, is kept as it is.
 *
 * @module
 */

/** Every character `escapeControl` rewrites, backslash included. */
// deno-lint-ignore no-control-regex -- matching control characters is the point
const UNSAFE = /[\x00-\x1f\x7f-\x9f\\\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

/** The characters JSON text leaves raw that `terminalJson` escapes as `\uNNNN`. */
const UNSAFE_IN_JSON = /[\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

const NAMED: Record<string, string> = { "\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\" };

function hex(c: string, width: number): string {
  return c.charCodeAt(0).toString(16).padStart(width, "0");
}

function escapeOne(c: string): string {
  const named = NAMED[c];
  if (named !== undefined) return named;
  const code = c.charCodeAt(0);
  return code <= 0x7f ? `\\x${hex(c, 2)}` : `\\u${hex(c, 4)}`;
}

/**
 * `text` with every control character shown as an escape (see the module
 * doc for the notation) and every backslash doubled: one line, safe to print.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { escapeControl } from "./text.ts";
 * assert.equal(escapeControl("a\nb\x1b[2J"), "a\\nb\\x1b[2J");
 * assert.equal(escapeControl("C:\\temp"), "C:\\\\temp");
 * assert.equal(escapeControl("Grüße 👋"), "Grüße 👋");
 * ```
 */
export function escapeControl(text: string): string {
  return text.replace(UNSAFE, escapeOne);
}

/**
 * `JSON.stringify(value, null, space)` made safe for a terminal: JSON
 * already escapes C0 controls, quotes and backslashes, but leaves DEL, the C1
 * controls, the bidi controls and U+2028/U+2029 raw; these become `\uNNNN`.
 * The result is still JSON and parses to the same value. `undefined` (which
 * has no JSON text) is `"undefined"`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { terminalJson } from "./text.ts";
 * assert.equal(terminalJson({ a: "x\u202ey\n" }), '{"a":"x\\u202ey\\n"}');
 * assert.deepEqual(JSON.parse(terminalJson("\u009b2J")), "\u009b2J");
 * ```
 */
export function terminalJson(value: unknown, space?: number): string {
  const text = JSON.stringify(value, null, space) as string | undefined;
  // These characters only ever occur inside JSON strings, where \uNNNN means the same.
  return text === undefined ? "undefined" : text.replace(UNSAFE_IN_JSON, (c) => `\\u${hex(c, 4)}`);
}
