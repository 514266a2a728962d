/**
 * The amqplib client of docs/amqp.md ("Talking to scripts from any AMQP
 * client"), run as written (exchange names made unique) on a broker where
 * nothing was declared before: it declares what it uses, gets `no_server`
 * at once while nobody serves `lamp.set`, and the reply once a bus does.
 */

import { assertEquals } from "../_util/assert.ts";
import { AmqpBus } from "../../host/bus/amqp_bus.ts";
import { deleteExchanges, RABBIT_URL, uniqueExchanges } from "../_util/rabbit.ts";

const DOC = new URL("../../docs/amqp.md", import.meta.url);
const CONFIG = new URL("../../deno.json", import.meta.url).pathname;

/** The first js block after the heading, with the exchange names of `ex`. */
async function example(ex: ReturnType<typeof uniqueExchanges>): Promise<string> {
  const text = await Deno.readTextFile(DOC);
  const from = text.indexOf("## Talking to scripts from any AMQP client");
  const block = /```js\n([\s\S]*?)```/.exec(text.slice(from))![1]!;
  let code = block;
  for (const role of ["dead", "rpc", "reply"] as const) {
    code = code.replaceAll(`"${role}"`, JSON.stringify(ex[role])).replaceAll(
      `\`${role}_`,
      `\`${ex[role]}_`,
    );
  }
  return `import { Buffer } from "node:buffer";\n${code}`;
}

async function run(code: string): Promise<{ code: number; out: string; err: string }> {
  const file = await Deno.makeTempFile({ suffix: ".ts" });
  try {
    await Deno.writeTextFile(file, code);
    const r = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-all", "--config", CONFIG, file],
      env: { NO_COLOR: "1" },
      stdin: "null",
    }).output();
    const dec = new TextDecoder();
    return { code: r.code, out: dec.decode(r.stdout), err: dec.decode(r.stderr) };
  } finally {
    await Deno.remove(file);
  }
}

Deno.test("the amqplib client of docs/amqp.md works on a fresh broker, served or not", async () => {
  const ex = uniqueExchanges();
  let bus: AmqpBus | undefined;
  try {
    const code = await example(ex);
    const alone = await run(code);
    assertEquals(alone.code, 0, alone.err);
    assertEquals(alone.out, "nobody serves lamp.set\n");
    bus = await AmqpBus.open({ url: RABBIT_URL, exchanges: ex });
    await bus.serve("lamp.set", (args) => Promise.resolve({ set: args }));
    const served = await run(code);
    assertEquals(served.code, 0, served.err);
    assertEquals(served.out, "{ set: { level: 40 } }\n");
  } finally {
    await bus?.close();
    await deleteExchanges(ex);
  }
});
