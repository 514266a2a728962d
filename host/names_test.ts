import { assertEquals, assertThrows } from "./testing/assert.ts";
import { checkVarName, parseName } from "./names.ts";

Deno.test("parseName splits a good name into its segments", () => {
  assertEquals(parseName("porch/light", "script"), ["porch", "light"]);
  assertEquals(parseName("a.b-c_d", "task"), ["a.b-c_d"]);
});

Deno.test("parseName refuses empty, tagged, dotted and spaced names, naming the problem", () => {
  const cases: [string, string][] = [
    ["", "script name must not be empty"],
    ["a//b", 'script name "a//b" has an empty segment'],
    ["/a", 'script name "/a" has an empty segment'],
    ["a/", 'script name "a/" has an empty segment'],
    ["a/../b", 'script name "a/../b" must not contain ".."'],
    ["./a", 'script name "./a" must not contain "."'],
    ["a/:code", 'script name "a/:code" must not contain the tagged segment ":code"'],
    ["a b", 'script name "a b" must not contain white space or control characters'],
    ["a\u0000", 'script name "a\u0000" must not contain white space or control characters'],
  ];
  for (const [name, message] of cases) {
    const e = assertThrows(() => parseName(name, "script"));
    assertEquals(e instanceof RangeError, true);
    assertEquals(e.message, message);
  }
});

Deno.test("checkVarName accepts identifiers and refuses paths", () => {
  assertEquals(checkVarName("device_1"), "device_1");
  assertThrows(() => checkVarName("a/b"));
  assertThrows(() => checkVarName("1a"));
  assertThrows(() => checkVarName(""));
});
