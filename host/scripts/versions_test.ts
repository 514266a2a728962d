import { assertEquals, assertIncludes } from "../testing/assert.ts";
import { MemoryStore } from "../store/memory_store.ts";
import { Layout } from "../layout.ts";
import { SystemClock } from "../time/clock.ts";
import { CodeVersions, NEW_CODE_ERROR } from "./versions.ts";
import { TypeCheckUnavailableError } from "./typecheck_apart.ts";
import type { LogLevel } from "../log.ts";

const layout = new Layout("/moat");
const dir = layout.scriptDir("s");
const V1 = "moat.setup();\nmoat.logger.info('v1');\n";

async function setup(typeCheck?: ConstructorParameters<typeof CodeVersions>[2]["typeCheck"]) {
  const store = new MemoryStore();
  const lines: string[] = [];
  const log = (level: LogLevel, message: string) => lines.push(`${level} ${message}`);
  const versions = new CodeVersions(store, layout, {
    clock: new SystemClock(),
    log,
    ...(typeCheck ? { typeCheck } : {}),
  });
  await store.put(dir + "code", V1);
  await store.put(dir + "language", "typescript");
  return { store, versions, lines };
}

Deno.test("a hand-written new_code with a type error is rejected like def add rejects it", async () => {
  const { store, versions, lines } = await setup();
  try {
    await store.put(dir + "new_code", "moat.setup();\nmoat.setpu();\n");
    assertEquals(await versions.promote("s"), "rejected");
    const err = (await store.get(dir + NEW_CODE_ERROR))?.value ?? "";
    assertIncludes(err, "s:2:6: Property 'setpu' does not exist");
    assertEquals((await store.get(dir + "code"))?.value, V1);
    assertIncludes(lines.join("\n"), "new code of script s rejected");

    const good = "moat.setup();\nconst n: number = 2;\nmoat.logger.info(String(n));\n";
    await store.put(dir + "new_code", good);
    assertEquals(await versions.promote("s"), "promoted");
    assertEquals((await store.get(dir + "code"))?.value, good);
    assertEquals((await store.get(dir + "old_code"))?.value, V1);
    assertEquals(await store.get(dir + NEW_CODE_ERROR), undefined);
  } finally {
    await versions.close();
    await store.close();
  }
});

Deno.test("a new_code is promoted on the code check alone when the type checker cannot run", async () => {
  const { store, versions, lines } = await setup(() =>
    Promise.reject(new TypeCheckUnavailableError("cannot read the moat API types"))
  );
  try {
    await store.put(dir + "new_code", "moat.setup();\nmoat.setpu();\n");
    assertEquals(await versions.promote("s"), "promoted");
    assertIncludes(lines.join("\n"), "new code of script s not type-checked");
    // A syntax error is still refused without the type checker.
    await store.put(dir + "new_code", "moat.setup();\nlet x = ;\n");
    assertEquals(await versions.promote("s"), "rejected");
    assertIncludes((await store.get(dir + NEW_CODE_ERROR))?.value ?? "", "s:2:9");
  } finally {
    await versions.close();
    await store.close();
  }
});
