import { assert, assertEquals, assertThrows } from "../testing/assert.ts";
import { DataFileError, isYamlFile, parseDataFile } from "./data_file.ts";

Deno.test("data files are YAML by the name .yaml or .yml, JSON otherwise", () => {
  assertEquals([isYamlFile("t.yaml"), isYamlFile("T.YML"), isYamlFile("t.json")], [
    true,
    true,
    false,
  ]);
  const yaml = "a:\n  b: [1, 2]\n  c: -20.5\n  d: 'x'\n";
  assertEquals(parseDataFile(yaml, "t.yml"), { a: { b: [1, 2], c: -20.5, d: "x" } });
  assertEquals(parseDataFile('{"a": 1}', "t.yaml"), { a: 1 }); // JSON is YAML
  const err = assertThrows(() => parseDataFile(yaml, "t.json"));
  assert(err instanceof DataFileError, String(err));
  assertEquals(err.message.endsWith("(name it .yaml to write YAML)"), true, err.message);
});

Deno.test("YAML 1.2: yes/on and dates stay strings, duplicate keys are refused", () => {
  assertEquals(parseDataFile("a: on\nb: yes\nc: 2026-03-02\n", "t.yaml"), {
    a: "on",
    b: "yes",
    c: "2026-03-02",
  });
  const err = assertThrows(() => parseDataFile("a: 1\na: 2\n", "t.yaml"));
  assert(err instanceof DataFileError, String(err));
  assertEquals(err.message, "is not valid YAML at line 2, column 1: Map keys must be unique");
});

Deno.test("a YAML file whose aliases expand beyond reason is refused", () => {
  const bomb = [
    "a: &a [x, x, x, x, x, x, x, x, x, x]",
    "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]",
    "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]",
    "d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]",
    "e: [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]",
  ].join("\n");
  const err = assertThrows(() => parseDataFile(bomb, "t.yaml"));
  assert(err instanceof DataFileError && err.message.startsWith("is not usable YAML"), String(err));
  // A few aliases are fine.
  assertEquals(parseDataFile("x: &k {t: 1}\ny: *k\n", "t.yaml"), { x: { t: 1 }, y: { t: 1 } });
});
