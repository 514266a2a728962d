/**
 * Hostile scripts against what people see and what the host's machine
 * holds: control characters in everything a script can make the host show
 * (the log, `moat status`, `moat errors`), and WebGPU, which would load the
 * system's graphics libraries and write caches outside the sandbox. On a
 * real host with a real etcd and RabbitMQ beside a neighbour that keeps
 * writing (tests/security/_hostile.ts).
 *
 * @module
 */

import { assert, assertEquals } from "../_util/assert.ts";
import { closeHostile, lineStarting, runScript, SHARED, sharedHostile } from "./_hostile.ts";

const get = sharedHostile();

/** Every control character a terminal acts on: C0 but newline, DEL, C1, bidi overrides. */
// deno-lint-ignore no-control-regex
const RAW_CONTROL = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/;

Deno.test({
  name:
    "control characters from a script reach no terminal raw: log, status and errors escape them",
  ...SHARED,
  fn: async () => {
    const h = await get();
    const evil = "ok\\n\\r\\u001b]52;c;aGk=\\u0007\\u001b[2J\\u202eforged\\nrow 2";
    // The task stays until its status and error records are shown: deleting
    // a task removes them.
    const path = await h.start(
      `moat.setup();
      moat.run(async () => {
        moat.logger.info("${evil}");
        await moat.set_error("evil", "${evil}");
        throw new Error("${evil}");
      });`,
    );
    const out = await h.outcome(path);
    assertEquals(out.state, "error");
    // The raw text is stored as the script wrote it ...
    assert(out.message.includes("\u001b]52;"), "the message was changed in etcd");
    // ... and shown escaped.
    for (const args of [["status"], ["errors"]]) {
      const r = await h.moat(...args);
      assertEquals(r.code, 0, r.stderr);
      assert(!RAW_CONTROL.test(r.stdout), `moat ${args[0]} printed a raw control character`);
      assert(!r.stdout.includes("\nrow 2"), `moat ${args[0]} printed a forged row`);
      assert(r.stdout.includes("forged"), `moat ${args[0]} lost the text: ${r.stdout}`);
    }
    await h.stop(path);
    await h.assertHealthy();
  },
});

Deno.test({
  name: "a script finds no WebGPU to load graphics libraries with",
  ...SHARED,
  fn: async () => {
    const h = await get();
    const out = await h.run(runScript(`
      const found = [];
      if (navigator.gpu !== undefined) found.push("navigator.gpu");
      if ("gpu" in navigator) found.push("'gpu' in navigator");
      if (typeof GPU !== "undefined") found.push("GPU");
      for (let o = navigator; o; o = Object.getPrototypeOf(o)) {
        if (Object.getOwnPropertyDescriptor(o, "gpu")) found.push("a gpu descriptor");
      }
      if (typeof OffscreenCanvas !== "undefined") found.push("OffscreenCanvas");
      try {
        await navigator.gpu.requestAdapter();
        found.push("an adapter");
      } catch {}
      moat.logger.info("found [" + found.join(", ") + "]");
    `));
    assertEquals(out.state, "ok", out.message);
    assertEquals(lineStarting(out.logs, "found"), "found []");
    await h.assertHealthy();
  },
});

closeHostile(get);
