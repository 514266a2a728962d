import { assert, assertEquals, assertThrows } from "../testing/assert.ts";
import { checkScript, languageOf, ScriptCheckError } from "./check.ts";

Deno.test("checkScript transpiles TypeScript with top-level await to JavaScript", () => {
  const js = checkScript(
    "t",
    'moat.setup();\nconst n: number = await moat.time_at("1 hr");\ninterface A { a: string }\n',
    "typescript",
  );
  assert(js.includes("await moat.time_at"));
  assert(!js.includes("interface"));
  assert(!js.includes("export"));
});

Deno.test("checkScript reports syntax errors as NAME:LINE:COL", () => {
  const e = assertThrows(() => checkScript("lights", "let x = ;\nfoo(\n", "typescript"));
  assert(e instanceof ScriptCheckError);
  assertEquals(e.message.split("\n")[0], "lights:1:9: Expression expected.");
  assertEquals(e.diagnostics.length, 2);
});

for (
  const [what, code, line, col, text] of [
    ["a static import", 'moat.setup();\nimport x from "npm:x";\n', 2, 1, "import statements"],
    ["a side-effect import", 'import "https://x/y.ts";\n', 1, 1, "import statements"],
    ["an export from", 'export * from "./x.ts";\n', 1, 1, "export statements"],
    ["an exported const", "export const a = 1;\n", 1, 1, "export statements"],
    ["a dynamic import", 'const m = await import("npm:" + "x");\n', 1, 17, "dynamic import()"],
    ["import.meta", "console.log(import.meta.url);\n", 1, 13, "import.meta"],
    ["an import type", 'let x: import("./x").T;\n', 1, 8, "import types"],
  ] as const
) {
  Deno.test(`checkScript rejects ${what} with its position`, () => {
    const e = assertThrows(() => checkScript("s", code, "typescript"));
    assert(e instanceof ScriptCheckError);
    const d = e.diagnostics[0]!;
    assertEquals([d.line, d.col], [line, col]);
    assert(d.message.includes(text), d.message);
  });
}

Deno.test("checkScript refuses TypeScript syntax in a JavaScript script", () => {
  const e = assertThrows(() => checkScript("j", "let x: number = 1;\n", "javascript"));
  assert(e instanceof ScriptCheckError);
  assert(e.message.startsWith("j:1:"), e.message);
});

Deno.test("languageOf picks JavaScript for .js files and TypeScript otherwise", () => {
  assertEquals(languageOf("a.js"), "javascript");
  assertEquals(languageOf("a.mjs"), "javascript");
  assertEquals(languageOf("a.ts"), "typescript");
  assertEquals(languageOf("-"), "typescript");
});
