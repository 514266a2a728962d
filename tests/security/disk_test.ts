/**
 * No disk growth: starting many distinct scripts leaves nothing behind in
 * the temporary folder (each sandbox's Deno cache included), and the cache
 * folders of a host that died uncleanly are removed by the next one.
 *
 * Each pool here has a temporary folder of its own (`tmpDir`): other moat
 * hosts on the machine, and other tests, use the shared one.
 */

import { assert, assertEquals } from "../_util/assert.ts";
import { withTimeout } from "../_util/wait.ts";
import { SandboxPool } from "../../host/bridge/sandbox.ts";
import { sealSharedCache } from "../../host/bridge/_child.ts";
import { stubMethods } from "../../host/bridge/method_stubs.ts";

const SCRIPTS = 500;
const AT_ONCE = 4;
/** A sandbox start that a busy machine makes slow is no failure here. */
const READY_MS = 120_000;

/** Folders and bytes of every sandbox cache folder in `parent`. */
async function footprint(parent: string): Promise<{ dirs: number; bytes: number }> {
  let dirs = 0;
  let bytes = 0;
  const walk = async (dir: string, depth: number): Promise<void> => {
    if (depth > 20) return;
    for await (const e of Deno.readDir(dir)) {
      const p = `${dir}/${e.name}`;
      if (e.isDirectory) await walk(p, depth + 1);
      else bytes += await Deno.lstat(p).then((s) => s.size, () => 0);
    }
  };
  for await (const e of Deno.readDir(parent)) {
    if (!e.isDirectory || !e.name.startsWith("moat-sandbox-")) continue;
    dirs++;
    await walk(`${parent}/${e.name}`, 0).catch(() => {});
  }
  return { dirs, bytes };
}

Deno.test("starting 500 distinct scripts does not grow the disk", async () => {
  const parent = await Deno.makeTempDir({ prefix: "moat-disk-test-" });
  const pool = new SandboxPool({ warm: AT_ONCE, tmpDir: parent, readyTimeoutMs: READY_MS });
  try {
    await pool.ready();
    const before = await footprint(parent);
    const methods = stubMethods({ time_at: () => Promise.resolve(1) });
    const runOne = async (i: number) => {
      // Distinct code each time: a cache keyed by content would grow.
      const code = `moat.setup();\nconst n${i} = ${i} + await moat.time_at("1 hr");\n` +
        `const f = new Uint8Array(${1000 + i}).fill(${i % 256});\nmoat.end();\n`;
      const s = await pool.start({ task: `disk/${i}`, script: `s${i}`, code, methods, onLog() {} });
      const end = await withTimeout(s.ended, 60_000, `script ${i}`);
      assertEquals(end.state, "ok", end.message);
    };
    let next = 0;
    const lanes = Array.from({ length: AT_ONCE }, async () => {
      while (next < SCRIPTS) await runOne(next++);
    });
    await withTimeout(Promise.all(lanes), 900_000, `${SCRIPTS} scripts`);
    await pool.close();
    const after = await footprint(parent);
    // The warm spares of `before` are gone too, so it may only shrink.
    assert(after.dirs <= before.dirs, `folders: ${before.dirs} before, ${after.dirs} after`);
    assert(after.bytes <= before.bytes, `bytes: ${before.bytes} before, ${after.bytes} after`);
  } finally {
    await pool.close();
    await Deno.remove(parent, { recursive: true });
  }
});

Deno.test("cache folders left by a dead host are removed by the next pool", async () => {
  const parent = await Deno.makeTempDir({ prefix: "moat-disk-test-" });
  // A host that no longer exists: no process has pid 2^22 + 1 (above pid_max's default).
  const stale = `${parent}/moat-sandbox-4194305.12345-test`;
  await Deno.mkdir(`${stale}/gen`, { recursive: true });
  await Deno.writeTextFile(`${stale}/gen/x.js`, "x".repeat(10_000));
  // Its shared Deno cache, sealed read-only.
  const staleCache = `${parent}/moat-sandbox-4194305.12345-cache-test`;
  await Deno.mkdir(`${staleCache}/gen`, { recursive: true });
  await Deno.writeTextFile(`${staleCache}/gen/x.js`, "x".repeat(10_000));
  assert(await sealSharedCache(staleCache), "the stale cache could not be sealed");
  // A folder of a live host (this one) stays.
  const live = await Deno.makeTempDir({ dir: parent, prefix: "moat-sandbox-" });
  const pool = new SandboxPool({ warm: 1, tmpDir: parent, readyTimeoutMs: READY_MS });
  try {
    await pool.ready();
    await pool.close();
    const exists = (p: string) => Deno.stat(p).then(() => true, () => false);
    assertEquals(await exists(stale), false);
    assertEquals(await exists(staleCache), false, "a sealed cache of a dead host stayed");
    assertEquals(await exists(live), true, "a folder not named by a dead host was removed");
  } finally {
    await pool.close();
    await Deno.remove(parent, { recursive: true });
  }
});
