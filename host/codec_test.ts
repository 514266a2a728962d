import { assertEquals, assertThrows } from "./testing/assert.ts";
import { decodeTyped, decodeUntyped, encodeTyped, encodeUntyped, type Value } from "./codec.ts";

Deno.test("untyped text reads as JSON when it parses, else as the text itself", () => {
  assertEquals(decodeUntyped("21"), 21);
  assertEquals(decodeUntyped("true"), true);
  assertEquals(decodeUntyped('"21"'), "21");
  assertEquals(decodeUntyped("hello"), "hello");
  assertEquals(decodeUntyped('{"on":7}'), { on: 7 });
  assertEquals(decodeUntyped(""), "");
});

Deno.test("untyped values written read back unchanged", () => {
  const values: Value[] = [
    "hello",
    "21",
    "true",
    "null",
    "",
    " x",
    21,
    -0.5,
    true,
    null,
    [1, "a"],
    { a: { b: 2 } },
  ];
  for (const v of values) assertEquals(decodeUntyped(encodeUntyped(v)), v, JSON.stringify(v));
  assertEquals(encodeUntyped("hello"), "hello");
  assertEquals(encodeUntyped("21"), '"21"');
});

Deno.test("typed values parse by their type and bad text names the problem", () => {
  assertEquals(decodeTyped("42", "int"), 42);
  assertEquals(decodeTyped("-3", "int"), -3);
  assertEquals(decodeTyped("2.5", "float"), 2.5);
  assertEquals(decodeTyped("TRUE", "bool"), true);
  assertEquals(decodeTyped("21", "str"), "21");
  assertEquals(decodeTyped("/device/x", "str/ref"), "/device/x");
  assertEquals(decodeTyped("[1]", "json"), [1]);
  assertEquals(
    assertThrows(() => decodeTyped("4.2", "int", "on")).message,
    'on "4.2" is not an int',
  );
  assertEquals(assertThrows(() => decodeTyped("x", "float")).message, 'value "x" is not a float');
  assertEquals(
    assertThrows(() => decodeTyped("yes", "bool")).message,
    'value "yes" is not a bool (true or false)',
  );
  assertEquals(assertThrows(() => decodeTyped("{", "json")).message, 'value "{" is not valid JSON');
  assertEquals(
    assertThrows(() => decodeTyped("99999999999999999999", "int")).message,
    'value "99999999999999999999" is out of range',
  );
});

Deno.test("typed values encode only when they fit the type", () => {
  assertEquals(encodeTyped(42, "int"), "42");
  assertEquals(encodeTyped(true, "bool"), "true");
  assertEquals(encodeTyped({ a: 1 }, "json"), '{"a":1}');
  assertEquals(
    assertThrows(() => encodeTyped(1.5, "int", "level")).message,
    "level must be an int, got number 1.5",
  );
  assertEquals(
    assertThrows(() => encodeTyped("1", "float")).message,
    'value must be a float, got string "1"',
  );
  assertEquals(
    assertThrows(() => encodeTyped(null, "str")).message,
    "value must be a str, got null",
  );
});
