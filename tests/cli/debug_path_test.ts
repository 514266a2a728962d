/**
 * `moat debug TASK` takes TASK as a tree path, against a real `moat run`
 * host over the real RabbitMQ: `h/porch` answers for `h/porch` and below,
 * not for `h/porchsvc`, and a TASK that matches nothing says so.
 */

import { assertEquals, assertIncludes } from "../_util/assert.ts";
import { runMoat, spawnMoat } from "../_util/cli.ts";
import { withTimeout } from "../_util/wait.ts";
import { startMoatServices } from "../_util/moat_services.ts";

const SHOWS = `moat.setup();
moat.debug_obj({ me: moat.data.get("me") });
moat.on_start(() => moat.logger.info("shown"));
`;

Deno.test("moat debug TASK answers for the tree below TASK only", async () => {
  const services = await startMoatServices("moat-debug-");
  const { dir } = services;
  const env = services.env("dbg");
  const moat = (...a: string[]) => runMoat(a, { env });
  const host = spawnMoat(["run"], { env });
  try {
    await Deno.writeTextFile(`${dir}/shows.js`, SHOWS);
    assertEquals((await moat("script", "def", "add", "shows", `${dir}/shows.js`)).code, 0);
    for (const task of ["porch", "porch/light", "porchsvc"]) {
      const r = await moat("script", "add", "shows", `dbg/${task}`, `me=${task}`);
      assertEquals(r.code, 0, r.stderr);
      await host.waitForLine((l) => l.includes(`[dbg/${task}] shown`), 60_000, `${task} up`);
    }
    const d = await moat("debug", "dbg/porch");
    assertEquals(d.code, 0, d.stderr);
    assertEquals(JSON.parse(d.stdout), {
      task: { script: { "dbg/porch": { me: "porch" }, "dbg/porch/light": { me: "porch/light" } } },
    });
    assertEquals(d.stderr, "");
    const none = await moat("debug", "dbg/porc");
    assertEquals(none.code, 0, none.stderr);
    assertEquals(JSON.parse(none.stdout), { task: { script: {} } });
    assertIncludes(none.stderr, 'no running script at or below "dbg/porc" has a debug object');
  } finally {
    host.kill("SIGTERM");
    await withTimeout(host.status, 60_000, "the host to stop");
    await services.stop();
  }
});
