import { assertEquals } from "./_util/assert.ts";
import { importsOf, violations } from "../scripts/check_imports.ts";

Deno.test("imports flow one way: sandbox/ stands alone, npm only in backends", async () => {
  const root = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
  assertEquals(await violations(root), []);
});

Deno.test("importsOf finds static, side-effect, re-export and dynamic imports", () => {
  assertEquals(
    importsOf('import a from "x";\nimport "y";\nexport { b } from "./z.ts";\nawait import("w");\n'),
    ["x", "y", "./z.ts", "w"],
  );
});
