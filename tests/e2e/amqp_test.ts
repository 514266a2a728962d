/**
 * End to end over the real RabbitMQ: a `moat run` host serving a script's
 * RPC, `moat call`, `moat debug`, `moat listen` seeing task state alerts,
 * and nothing left in the broker after the host stops.
 */

import { assert, assertEquals, assertIncludes } from "../_util/assert.ts";
import { runMoat } from "../_util/cli.ts";
import { startMoatServices } from "../_util/moat_services.ts";
import { bindingsWith, queuesWith } from "../_util/rabbit.ts";

const SERVER = `moat.setup();
moat.rpc("e2e.add")((a) => a.x + a.y);
moat.debug_obj({ hello: "debug" });
moat.on_start(() => moat.logger.info("serving"));
`;

Deno.test("a host serves a script's RPC over RabbitMQ, answers moat debug, and leaves nothing behind", async () => {
  const services = await startMoatServices("moat-amqp-");
  const { dir, ex, spawn } = services;
  const env = services.env("amqp-e2e");
  const moat = (...a: string[]) => runMoat(a, { env });
  const host = spawn("amqp-e2e", "run");
  const listen = spawn("amqp-e2e", "listen", "moat.task.#", "--count", "1");
  try {
    await Deno.writeTextFile(`${dir}/server.js`, SERVER);
    assertEquals((await moat("script", "def", "add", "server", `${dir}/server.js`)).code, 0);
    await listen.waitForLine((l) => l.includes("listening to"), 60_000, "the listener");
    assertEquals((await moat("script", "add", "server", "amqp-e2e/server")).code, 0);
    await host.waitForLine((l) => l.includes("[amqp-e2e/server] serving"), 60_000, "serving");
    const r = await moat("call", "e2e.add", '{"x": 2, "y": 40}');
    assertEquals(r.code, 0, r.stderr);
    assertEquals(JSON.parse(r.stdout), 42);
    const d = await moat("debug");
    assertEquals(d.code, 0, d.stderr);
    assertEquals(JSON.parse(d.stdout), {
      task: { script: { "amqp-e2e/server": { hello: "debug" } } },
    });
    const st = await listen.status;
    assertEquals(st.code, 0, listen.lines.join("\n"));
    assert(
      listen.lines.some((l) => l.startsWith("moat.task.amqp-e2e.server ")),
      listen.lines.join("\n"),
    );
    assertIncludes(listen.lines.join("\n"), '"state":"start"');
    host.kill("SIGTERM");
    assertEquals((await host.status).code, 0, host.lines.join("\n"));
    assertEquals(await queuesWith(ex.prefix), []);
    assertEquals(await bindingsWith(ex.prefix), []);
    const gone = await moat("call", "e2e.add", '{"x": 1, "y": 1}', "--timeout", "0.5");
    assertEquals(gone.code, 1);
  } finally {
    await services.stop();
  }
});
