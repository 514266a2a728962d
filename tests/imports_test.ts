import { assertEquals } from "./_util/assert.ts";
import { importsOf, violations } from "../scripts/check_imports.ts";

Deno.test("imports flow one way: sandbox/ stands alone, npm only in backends", async () => {
  const root = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
  assertEquals(await violations(root), []);
});

Deno.test("the bridge imports neither the capabilities nor the tasks, nor they the tasks", async () => {
  const root = await Deno.makeTempDir();
  try {
    const write = async (rel: string, text: string) => {
      await Deno.mkdir(`${root}/${rel.split("/").slice(0, -1).join("/")}`, { recursive: true });
      await Deno.writeTextFile(`${root}/${rel}`, text);
    };
    await write("host/bridge/a.ts", 'import { m } from "../capabilities/methods.ts";\n');
    await write("host/bridge/b.ts", 'import type { T } from "../tasks/host.ts";\n');
    await write("host/capabilities/c.ts", 'import { H } from "../tasks/host.ts";\n');
    await write("host/capabilities/d.ts", 'import { S } from "../bridge/sandbox.ts";\n');
    await write("host/tasks/e.ts", 'import { M } from "../capabilities/methods.ts";\n');
    assertEquals((await violations(root)).sort(), [
      'host/bridge/a.ts: imports "../capabilities/methods.ts" ' +
      "(host/bridge/ must not import host/capabilities/)",
      'host/bridge/b.ts: imports "../tasks/host.ts" (host/bridge/ must not import host/tasks/)',
      'host/capabilities/c.ts: imports "../tasks/host.ts" ' +
      "(host/capabilities/ must not import host/tasks/)",
    ]);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("importsOf finds static, side-effect, re-export and dynamic imports", () => {
  assertEquals(
    importsOf('import a from "x";\nimport "y";\nexport { b } from "./z.ts";\nawait import("w");\n'),
    ["x", "y", "./z.ts", "w"],
  );
});
