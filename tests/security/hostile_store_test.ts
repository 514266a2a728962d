/**
 * Hostile scripts against the store: large values, data growth, write
 * loops, error-record floods, reserved error tags, read amplification,
 * watch floods and quick-end loops. Each runs on a real host with a real
 * etcd and RabbitMQ beside a neighbour that keeps writing, and checks that
 * the attack was refused or bounded and that the installation is fine
 * afterwards (tests/security/_hostile.ts).
 *
 * @module
 */

import { assert, assertEquals, assertIncludes } from "../_util/assert.ts";
import {
  closeHostile,
  linesStarting,
  lineStarting,
  runScript,
  SHARED,
  sharedHostile,
} from "./_hostile.ts";

const get = sharedHostile();

Deno.test({
  name: "a value larger than value_size is refused with code quota and nothing is written",
  ...SHARED,
  fn: async () => {
    const h = await get();
    const out = await h.run(
      runScript(`
      try {
        await moat.data.set("big", "x".repeat(70000));
        moat.logger.info("stored");
      } catch (e) {
        moat.logger.info("refused " + e.code + ": " + e.message);
      }
      `),
      {},
      60_000,
      [["big", "small"]],
    );
    assertEquals(out.state, "ok", out.message);
    const line = lineStarting(out.logs, "refused");
    assertIncludes(line, "refused quota:");
    assertIncludes(line, "value_size = 65536");
    await h.assertHealthy();
  },
});

Deno.test({
  name: "a task's data cannot grow beyond data_size, whatever the order of its writes",
  ...SHARED,
  fn: async () => {
    const h = await get();
    const keys: [string, string][] = Array.from({ length: 30 }, (_, i) => [`k${i}`, "0"]);
    // The write rate quotas are lifted for this task: data_size alone must stop it.
    const out = await h.run(
      runScript(`
      const v = "y".repeat(60000);
      const all = await Promise.allSettled(
        moat.data.keys().filter((k) => k.startsWith("k")).map((k) => moat.data.set(k, v)),
      );
      const refused = all.filter((r) => r.status === "rejected");
      moat.logger.info("stored " + (all.length - refused.length));
      moat.logger.info("refused " + refused.length + " " + (refused[0]?.reason?.message ?? ""));
      `),
      { write_rate: "10000", write_volume: "100000000" },
      60_000,
      keys,
    );
    assertEquals(out.state, "ok", out.message);
    const refused = lineStarting(out.logs, "refused");
    assertIncludes(refused, "data_size = 1048576");
    const stored = Number(lineStarting(out.logs, "stored").slice(7));
    assert(stored >= 15 && stored <= 17, `stored ${stored} values of 60000 bytes`);
    await h.assertHealthy();
  },
});

Deno.test({
  name: "a write loop is bounded by write_rate and etcd does not grow with it",
  ...SHARED,
  fn: async () => {
    const h = await get();
    const before = await h.dbSize();
    const out = await h.run(
      runScript(`
      let ok = 0, refused = 0, code = "";
      const v = "z".repeat(4000);
      const t0 = performance.now();
      // A count, not a time: on a busy machine 5 s may hold fewer writes than the burst.
      for (let i = 0; i < 3000; i++) {
        try {
          await moat.data.set("n", v + i);
          ok++;
        } catch (e) {
          refused++;
          code = e.code;
        }
      }
      moat.logger.info("ok " + ok + " refused " + refused + " " + code +
        " in " + Math.round(performance.now() - t0));
      `),
      // The harness sets the sandbox's own limits (the call rate, code
      // "limit"; CPU) far out of reach: the store quota alone bounds the loop.
      {},
      120_000,
      [["n", "0"]],
    );
    assertEquals(out.state, "ok", out.message);
    const m = /^ok (\d+) refused (\d+) (\w*) in (\d+)$/.exec(
      lineStarting(out.logs, "ok "),
    )!;
    const [ok, refused, code, ms] = [Number(m[1]), Number(m[2]), m[3], Number(m[4])];
    assertEquals(code, "quota");
    assert(refused > 0, "nothing was refused");
    // A bucket of 5 s at 20/s, refilled at 20/s while the loop ran.
    assert(ok <= 100 + 20 * (ms / 1000) + 5, `${ok} writes got through in ${ms} ms`);
    const grown = (await h.dbSize()) - before;
    assert(grown < 8 * 1024 * 1024, `etcd grew by ${grown} bytes`);
    await h.assertHealthy();
  },
});

Deno.test({
  name:
    "an error-record flood keeps at most error_records per task, and the host's tags are its own",
  ...SHARED,
  fn: async () => {
    const h = await get();
    const path = await h.start(
      `moat.setup();
      moat.run(async () => {
        for (const tag of ["job"]) {
          for (const f of [() => moat.set_error(tag, "forged"), () => moat.clear_error(tag)]) {
            try {
              await f();
              moat.logger.info("allowed " + tag);
            } catch (e) {
              moat.logger.info("refused " + e.code + ": " + e.message);
            }
          }
        }
        let ok = 0;
        for (let i = 0; i < 150; i++) {
          await moat.set_error("flood" + i, "error number " + i);
          ok++;
        }
        moat.logger.info("recorded " + ok);
        await moat.stopping;
      });`,
      { write_rate: "10000" },
    );
    try {
      await h.waitLine(path, (l) => l.startsWith("recorded"), 60_000);
      const lines = h.lines(path);
      assertEquals(linesStarting(lines, "allowed").length, 0, lines.join("\n"));
      assertEquals(linesStarting(lines, "refused reserved:").length, 2, lines.join("\n"));
      const pointers = await h.store.range(`/moat/status/run/${path}/:task/error/`);
      assertEquals(pointers.kvs.length, 100);
      // The newest are kept, the oldest replaced.
      const tags = pointers.kvs.map((kv) => kv.key.split("/").pop()!);
      assert(tags.includes("flood149") && !tags.includes("flood0"), tags.join(" "));
      const records = await h.store.range("/moat/status/errors/");
      const ofTask = records.kvs.filter((kv) => kv.key.endsWith("/loc") && kv.value === path);
      assertEquals(ofTask.length, 100, "error records of the task");
    } finally {
      await h.stop(path);
    }
    await h.assertHealthy();
  },
});

Deno.test({
  name:
    "read amplification: many lookups at once of a large node are refused, a huge one too_large",
  ...SHARED,
  fn: async () => {
    const h = await get();
    const value = "v".repeat(3000);
    for (let i = 0; i < 100; i++) await h.store.put(`/moat/big/mid/k${i}`, value);
    for (let i = 0; i < 300; i++) await h.store.put(`/moat/big/huge/k${i}`, value);
    const out = await h.run(
      runScript(`
      try {
        await moat.tree.lookup("big", "huge");
        moat.logger.info("huge read");
      } catch (e) {
        moat.logger.info("huge " + e.code + ": " + e.message);
      }
      const all = await Promise.allSettled(
        Array.from({ length: 200 }, () => moat.tree.lookup("big", "mid")),
      );
      const ok = all.filter((r) => r.status === "fulfilled").length;
      const codes = [...new Set(all.filter((r) => r.status === "rejected").map((r) => r.reason.code))];
      moat.logger.info("lookups ok " + ok + " refused " + (200 - ok) + " " + codes.join(","));
      `),
    );
    assertEquals(out.state, "ok", out.message);
    assertIncludes(lineStarting(out.logs, "huge"), "huge too_large:");
    const m = /^lookups ok (\d+) refused (\d+) (.*)$/.exec(
      lineStarting(out.logs, "lookups"),
    )!;
    assert(Number(m[1]) <= 8 + 100, `${m[1]} lookups got through`);
    assert(Number(m[2]) > 0, "no lookup was refused");
    assertEquals(m[3], "quota");
    await h.assertHealthy();
  },
});

Deno.test({
  name: "a watch flood stops at monitors: the script ends with a quota error",
  ...SHARED,
  fn: async () => {
    const h = await get();
    for (let i = 0; i < 120; i++) await h.store.put(`/moat/nodes/n${i}/v`, String(i));
    const out = await h.run(
      runScript(`
      for (let i = 0; i < 120; i++) {
        const node = await moat.tree.lookup("nodes", "n" + i);
        moat.monitor(node)(() => {});
      }
      await new Promise((r) => setTimeout(r, 5000));
      moat.logger.info("all watched");
      `),
      { read_rate: "10000" },
    );
    assertEquals(out.state, "error", out.message);
    assertIncludes(out.message, "monitors = 100");
    await h.assertHealthy();
  },
});

Deno.test({
  name: "a script that ends at once again and again is restarted with growing pauses",
  ...SHARED,
  fn: async () => {
    const h = await get();
    const path = await h.start(`moat.setup(); moat.end();`, { restart: "0.05" });
    try {
      const started = () => linesStarting(h.lines(path), "started script").length;
      // Without the back-off it would start every 0.05 s: ~100 times in 5 s.
      await h.waitLine(path, (l) => l.includes("times in a row"), 60_000);
      await new Promise((r) => setTimeout(r, 3000));
      assert(started() <= 5, `started ${started()} times`);
      const last = h.lines(path).filter((l) => l.includes("restart in")).pop()!;
      assertIncludes(last, "ended within 10 s");
    } finally {
      await h.stop(path);
    }
    await h.assertHealthy();
  },
});

closeHostile(get);
