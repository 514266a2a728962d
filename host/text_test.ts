import { assertEquals } from "./testing/assert.ts";
import { escapeControl, terminalJson } from "./text.ts";

/** The inverse of `escapeControl`, to show that nothing is lost or ambiguous. */
function unescape(text: string): string {
  return text.replace(
    /\\(?:([nrt\\])|x([0-9a-f]{2})|u([0-9a-f]{4}))/g,
    (_m, named: string | undefined, x: string | undefined, u: string | undefined) => {
      if (named !== undefined) return { n: "\n", r: "\r", t: "\t", "\\": "\\" }[named]!;
      return String.fromCharCode(parseInt(x ?? u!, 16));
    },
  );
}

/** Every character escapeControl must rewrite. */
const UNSAFE = [
  ...Array.from({ length: 0x20 }, (_, i) => i),
  0x7f,
  ...Array.from({ length: 0x20 }, (_, i) => 0x80 + i),
  0x2028,
  0x2029,
  0x202a,
  0x202b,
  0x202c,
  0x202d,
  0x202e,
  0x2066,
  0x2067,
  0x2068,
  0x2069,
].map((c) => String.fromCharCode(c));

Deno.test("escapeControl names newline, carriage return and tab", () => {
  assertEquals(escapeControl("a\nb\rc\td"), "a\\nb\\rc\\td");
});

Deno.test("escapeControl shows ESC and other C0 controls and DEL as \\xNN", () => {
  assertEquals(escapeControl("\x1b]52;c;aGk=\x07"), "\\x1b]52;c;aGk=\\x07");
  assertEquals(escapeControl("\x1b[2J\x1b[1;1H\x1b[31mred"), "\\x1b[2J\\x1b[1;1H\\x1b[31mred");
  assertEquals(
    escapeControl("\x00\x01\x08\x0b\x0c\x1f\x7f"),
    "\\x00\\x01\\x08\\x0b\\x0c\\x1f\\x7f",
  );
});

Deno.test("escapeControl shows C1 controls as \\u00NN", () => {
  assertEquals(escapeControl("\x80\x85\x9b2J\x9d"), "\\u0080\\u0085\\u009b2J\\u009d");
});

Deno.test("escapeControl shows bidi controls and line separators as \\uNNNN", () => {
  assertEquals(escapeControl("ok\u202egnp.exe"), "ok\\u202egnp.exe");
  assertEquals(
    escapeControl("\u202a\u202b\u202c\u202d\u2066\u2067\u2068\u2069"),
    "\\u202a\\u202b\\u202c\\u202d\\u2066\\u2067\\u2068\\u2069",
  );
  assertEquals(escapeControl("a\u2028b\u2029c"), "a\\u2028b\\u2029c");
});

Deno.test("escapeControl doubles backslashes so that escapes cannot be forged", () => {
  assertEquals(escapeControl("C:\\temp"), "C:\\\\temp");
  // A literal backslash-n typed by a script is not a newline shown as \n.
  assertEquals(escapeControl("\\n"), "\\\\n");
  assertEquals(escapeControl("\n"), "\\n");
});

Deno.test("escapeControl leaves plain, non-Latin and emoji text unchanged", () => {
  for (
    const text of [
      "",
      "hello, world: 21.5 °C (ok) [x] {y} \"q\" 'r' ~`!@#$%^&*",
      "Grüße aus Köln, ½ €",
      "日本語のテキスト",
      "Привет мир",
      "שלום עולם مرحبا", // right-to-left letters are text, not controls
      "👋🏽 👨‍👩‍👧 🇩🇪", // skin tone, zero-width joiner, flag
      "\u00a0non-breaking\u00a0space",
    ]
  ) assertEquals(escapeControl(text), text);
});

Deno.test("escapeControl rewrites every control character and nothing is left raw", () => {
  for (const c of UNSAFE) {
    const shown = escapeControl(`a${c}b`);
    assertEquals(shown.length > 3, true, `U+${c.charCodeAt(0).toString(16)} not escaped`);
    assertEquals(/^[\x20-\x7e]+$/.test(shown), true, `${JSON.stringify(shown)} not printable`);
  }
});

Deno.test("escapeControl is reversible", () => {
  const all = UNSAFE.join("") + "\\x1b \\\\ \\u202e plain ü 👋";
  assertEquals(unescape(escapeControl(all)), all);
  for (const c of UNSAFE) assertEquals(unescape(escapeControl(c)), c);
});

Deno.test("terminalJson escapes what JSON leaves raw and still parses to the same value", () => {
  const value = {
    msg: "a\nb\x1b]52;c;aGk=\x07\x7f\x9b\u202e\u2028\u2029\u2066",
    ok: "Grüße 👋",
    n: 1,
  };
  const text = terminalJson(value, 2);
  assertEquals(
    // deno-lint-ignore no-control-regex -- the test looks for raw control characters
    /[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]/.test(text),
    false,
  );
  assertEquals(text.includes("\\u202e"), true);
  assertEquals(text.includes("Grüße 👋"), true);
  assertEquals(JSON.parse(text), value);
  assertEquals(terminalJson(undefined), "undefined");
  assertEquals(terminalJson("x"), '"x"');
});
