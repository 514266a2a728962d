/**
 * What a script can reach by name, and WebGPU in particular.
 *
 * - Every global of a script's Worker (own names and symbols of `globalThis`
 *   and of `navigator`, and of every object on their prototype chains) is
 *   compared with a reviewed allow-list, `testdata/worker_globals.json`, so
 *   that a Deno version adding a global fails here instead of widening the
 *   sandbox. After reviewing a difference, rewrite the list with
 *   `MOAT_UPDATE_ALLOWLIST=1 deno test --allow-all tests/security/globals_test.ts`
 *   and commit it (see docs/security.md).
 * - `navigator.gpu` and the `GPU…` interfaces are gone, and trying them
 *   loads no graphics driver and writes no cache in the host user's home.
 * - The sandbox process's home, cache, config, data and temporary folders
 *   all lie inside its own temporary folder, removed with it.
 */

import { assert, assertEquals } from "../_util/assert.ts";
import { withTimeout } from "../_util/wait.ts";
import { closeShared, SHARED, sharedHost } from "./_harness.ts";
import { SandboxPool } from "../../host/bridge/sandbox.ts";
import { stubMethods } from "../../host/bridge/method_stubs.ts";

const host = sharedHost();

const ALLOWLIST = new URL("./testdata/worker_globals.json", import.meta.url);
const UPDATE_ENV = "MOAT_UPDATE_ALLOWLIST";

/**
 * A script trying every way to WebGPU it can think of; logs "GPU" and what
 * it found (an empty list when everything was refused).
 */
const GPU_ATTACK = `
moat.setup();
const found = [];
const proto = Object.getPrototypeOf(navigator);
const tries = {
  "navigator.gpu": () => navigator.gpu,
  "'gpu' in navigator": () => "gpu" in navigator,
  "globalThis.GPU": () => globalThis.GPU,
  "GPUBufferUsage": () => globalThis.GPUBufferUsage,
  "the descriptor on navigator's prototype": () =>
    Object.getOwnPropertyDescriptor(proto, "gpu"),
  "the descriptor on navigator": () => Object.getOwnPropertyDescriptor(navigator, "gpu"),
  "Reflect.get through the prototype": () => Reflect.get(proto, "gpu", navigator),
  "the prototype's constructor": () =>
    Object.getOwnPropertyDescriptor(proto.constructor.prototype, "gpu"),
  "a GPU name anywhere on the chains": () => {
    const hits = [];
    for (const root of [globalThis, navigator]) {
      for (let o = root; o !== null; o = Object.getPrototypeOf(o)) {
        for (const k of Reflect.ownKeys(o)) if (/gpu|wgsl|offscreen/i.test(String(k))) hits.push(String(k));
      }
    }
    return hits.length > 0 ? hits.join() : undefined;
  },
  "an OffscreenCanvas's webgpu context": () => new OffscreenCanvas(1, 1).getContext("webgpu"),
  "requestAdapter": async () => await navigator.gpu.requestAdapter(),
  "requestAdapter through the prototype's getter": async () =>
    await Object.getOwnPropertyDescriptor(proto, "gpu").get.call(navigator).requestAdapter(),
};
for (const [what, f] of Object.entries(tries)) {
  try {
    const v = await f();
    if (v !== undefined && v !== null && v !== false) found.push(what + ": " + String(v));
  } catch {
    // refused: nothing there to call
  }
}
moat.logger.info("GPU " + JSON.stringify(found));
`;

/** The variables that must point inside the sandbox's own folder. */
const PRIVATE_VARS = [
  "HOME",
  "TMPDIR",
  "XDG_CACHE_HOME",
  "XDG_CONFIG_HOME",
  "XDG_DATA_HOME",
  "XDG_STATE_HOME",
  "XDG_RUNTIME_DIR",
  "MESA_SHADER_CACHE_DIR",
  "__GL_SHADER_DISK_CACHE_PATH",
];

/** Libraries a graphics driver would bring into the process. */
const GRAPHICS_LIBS = /lib(EGL|GL|GLX|vulkan|gbm|drm|LLVM)[-_.]|\/dri\/|mesa_shader_cache/;

Deno.test("the sandbox process's home and temporary folder lie inside its own folder, its Deno cache is the pool's, sealed", async () => {
  const pool = new SandboxPool({ warm: 0 });
  let dir: string | undefined;
  let cache: string | undefined;
  try {
    let up: () => void = () => {};
    const isUp = new Promise<void>((r) => (up = r));
    const logs: string[] = [];
    const script = await pool.start({
      task: "globals/env",
      script: "env",
      methods: stubMethods(),
      code: GPU_ATTACK + "console.log('up');\n",
      onLog: (_level, message) => {
        logs.push(message);
        if (message === "up") up();
      },
    });
    await withTimeout(isUp, 60_000, "the script to start");
    assertEquals(logs.find((l) => l.startsWith("GPU ")), "GPU []");

    const env = new Map(
      Deno.readTextFileSync(`/proc/${script.pid}/environ`).split("\0").filter((v) => v !== "")
        .map((v) => [v.slice(0, v.indexOf("=")), v.slice(v.indexOf("=") + 1)]),
    );
    // Its own folder holds its home; the Deno cache is the pool's, shared
    // read-only once the pool's first sandbox (this one) filled it.
    const home = env.get("HOME");
    dir = home?.slice(0, home.lastIndexOf("/"));
    assert(dir !== undefined && /\/moat-sandbox-\d+\.\d+-[^/]+$/.test(dir), `HOME=${home}`);
    cache = env.get("DENO_DIR");
    assert(
      cache !== undefined && /\/moat-sandbox-\d+\.\d+-cache-[^/]+$/.test(cache),
      `DENO_DIR=${cache}`,
    );
    const sealed = cache;
    await withTimeout(
      (async () => {
        while ((Deno.statSync(sealed).mode! & 0o777) !== 0o555) {
          await new Promise((r) => setTimeout(r, 20));
        }
      })(),
      60_000,
      "the shared cache to be sealed",
    );
    for (const e of Deno.readDirSync(sealed)) {
      if (e.isFile) assertEquals(Deno.statSync(`${sealed}/${e.name}`).mode! & 0o777, 0o444, e.name);
    }
    for (const name of PRIVATE_VARS) {
      const value = env.get(name);
      assert(
        value !== undefined && value.startsWith(`${dir}/`),
        `${name}=${value} is not inside ${dir}`,
      );
      assert(Deno.statSync(value).isDirectory, `${name}=${value} is not a folder`);
    }
    const maps = Deno.readTextFileSync(`/proc/${script.pid}/maps`).split("\n")
      .filter((l) => GRAPHICS_LIBS.test(l));
    assertEquals(maps, [], "graphics libraries in the sandbox process");
  } finally {
    await pool.close();
  }
  assert(dir !== undefined && cache !== undefined);
  const left = await Deno.stat(dir).then(() => true, () => false);
  assert(!left, `${dir} outlived its sandbox`);
  const cacheLeft = await Deno.stat(cache).then(() => true, () => false);
  assert(!cacheLeft, `${cache} outlived its pool`);
});

/**
 * A function (as source text) that lists every name reachable from
 * `globalThis` and `navigator` through own keys and prototypes, as
 * "globalThis.fetch", "WorkerNavigator.prototype.userAgent",
 * "Object.prototype[Symbol(…)]", sorted.
 */
const LIST_NAMES = `() => {
  const names = [];
  const seen = new Set();
  const walk = (root, rootName) => {
    let label = rootName;
    for (let o = root; o !== null; o = Object.getPrototypeOf(o)) {
      if (seen.has(o)) break;
      seen.add(o);
      if (o !== root) {
        const c = Object.getOwnPropertyDescriptor(o, "constructor");
        const name = c && typeof c.value === "function" ? c.value.name : "";
        label = name ? name + ".prototype" : label + ".[[Prototype]]";
      }
      for (const k of Reflect.ownKeys(o)) {
        names.push(typeof k === "symbol" ? label + "[" + String(k) + "]" : label + "." + k);
      }
    }
  };
  walk(globalThis, "globalThis");
  walk(navigator, "navigator");
  return names.sort();
}`;

/** The names of the `GLOBALS [...]` lines a listing logged, in order. */
function listed(logs: string[]): string[] {
  return logs
    .filter((l) => l.startsWith("GLOBALS "))
    .flatMap((l) => JSON.parse(l.slice("GLOBALS ".length)) as string[]);
}

/**
 * Lists the names (LIST_NAMES) and logs them in lines of at most ~16 Ki
 * characters, paced to stay under the log_volume limit.
 */
const LIST_GLOBALS = `
moat.setup();
const names = (${LIST_NAMES})();
let line = [];
let size = 0;
let lines = 0;
const flush = async () => {
  moat.logger.info("GLOBALS " + JSON.stringify(line));
  lines++;
  line = [];
  size = 0;
  await new Promise((r) => setTimeout(r, 300));
};
for (const n of names) {
  if (size + n.length > 16000) await flush();
  line.push(n);
  size += n.length + 3;
}
await flush();
moat.logger.info("GLOBALS-END " + names.length + " " + lines);
moat.end();
`;

Deno.test({
  name: "every global a script can reach is on the reviewed allow-list",
  ...SHARED,
  fn: async () => {
    const h = await host();
    const out = await h.run(LIST_GLOBALS);
    assertEquals(out.state, "ok", out.message);
    const found = listed(out.logs);
    const lines = out.logs.filter((l) => l.startsWith("GLOBALS ")).length;
    assertEquals(
      out.logs.find((l) => l.startsWith("GLOBALS-END ")),
      `GLOBALS-END ${found.length} ${lines}`,
      "every line of the listing arrived",
    );
    const unique = [...new Set(found)].sort();
    assertEquals(unique, found, "the listing is sorted and has no duplicates");

    if (Deno.env.get(UPDATE_ENV) === "1") {
      await Deno.writeTextFile(ALLOWLIST, JSON.stringify(found, null, 2) + "\n");
      console.log(`${UPDATE_ENV}=1: wrote ${found.length} names to ${ALLOWLIST.pathname}`);
      return;
    }
    const allowed = JSON.parse(await Deno.readTextFile(ALLOWLIST)) as string[];
    assertEquals([...new Set(allowed)].sort(), allowed, "the allow-list is sorted, no duplicates");
    const allowedSet = new Set(allowed);
    const foundSet = new Set(found);
    const added = found.filter((n) => !allowedSet.has(n));
    const missing = allowed.filter((n) => !foundSet.has(n));
    assert(
      added.length === 0 && missing.length === 0,
      [
        "The globals a script can reach differ from the allow-list " +
        "tests/security/testdata/worker_globals.json.",
        `Added (${added.length}), reachable but not on the list:`,
        ...added.map((n) => `  + ${n}`),
        `Missing (${missing.length}), on the list but gone:`,
        ...missing.map((n) => `  - ${n}`),
        "Review each added name: if it reaches beyond the script (files, network, storage, " +
        "other Workers, native code, memory outside the heap), remove it in sandbox/worker.ts. " +
        `Then rewrite the list with ${UPDATE_ENV}=1 deno test --allow-all ` +
        "tests/security/globals_test.ts and commit it (docs/security.md).",
      ].join("\n"),
    );
    await h.assertHealthy();
  },
});

/** The same listing, made by a `moat.thread` function and returned to the script. */
const LIST_THREAD_GLOBALS = `
moat.setup();
const list = ${LIST_NAMES};
const names = await moat.thread(list);
for (let i = 0; i < names.length; i += 400) {
  moat.logger.info("GLOBALS " + JSON.stringify(names.slice(i, i + 400)));
  await new Promise((r) => setTimeout(r, 300));
}
moat.logger.info("GLOBALS-END " + names.length);
moat.end();
`;

Deno.test({
  name: "a moat.thread function reaches the globals of the allow-list, but moat",
  ...SHARED,
  fn: async () => {
    const h = await host();
    const out = await h.run(LIST_THREAD_GLOBALS);
    assertEquals(out.state, "ok", out.message);
    const found = listed(out.logs);
    assertEquals(out.logs.find((l) => l.startsWith("GLOBALS-END ")), `GLOBALS-END ${found.length}`);
    const allowed = (JSON.parse(await Deno.readTextFile(ALLOWLIST)) as string[])
      .filter((n) => n !== "globalThis.moat");
    const allowedSet = new Set(allowed);
    const foundSet = new Set(found);
    assertEquals(
      {
        added: found.filter((n) => !allowedSet.has(n)),
        missing: allowed.filter((n) => !foundSet.has(n)),
      },
      { added: [], missing: [] },
      "a thread's globals differ from the script's allow-list (without moat)",
    );
    await h.assertHealthy();
  },
});

/**
 * Names, sizes and modification times of everything under `dir` (but Deno's
 * own cache, which other test runs write to), or `["(absent)"]`.
 */
async function snapshot(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string, depth: number): Promise<void> => {
    for await (const e of Deno.readDir(d)) {
      const p = `${d}/${e.name}`;
      if (depth === 0 && e.name === "deno") continue;
      const s = await Deno.lstat(p).catch(() => undefined);
      out.push(`${p} ${s?.size} ${s?.mtime?.getTime()}`);
      if (e.isDirectory && depth < 8) await walk(p, depth + 1);
    }
  };
  try {
    await walk(dir, 0);
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
    return ["(absent)"];
  }
  return out.sort();
}

/** The host user's cache folders: XDG_CACHE_HOME if set, and ~/.cache. */
function hostCaches(): string[] {
  const home = Deno.env.get("HOME");
  const dirs = [Deno.env.get("XDG_CACHE_HOME"), home === undefined ? undefined : `${home}/.cache`];
  return [...new Set(dirs.filter((d): d is string => d !== undefined && d !== ""))];
}

Deno.test({
  name: "a script finds no navigator.gpu nor GPU globals, and writes nothing in the home cache",
  ...SHARED,
  fn: async () => {
    const h = await host();
    const caches = hostCaches();
    const before = await Promise.all(caches.map(snapshot));
    const out = await h.run(GPU_ATTACK + "moat.end();\n");
    assertEquals(out.state, "ok", out.message);
    assertEquals(out.logs.find((l) => l.startsWith("GPU ")), "GPU []");
    const after = await Promise.all(caches.map(snapshot));
    for (const [i, dir] of caches.entries()) {
      const added = after[i]!.filter((l) => !before[i]!.includes(l));
      assertEquals(added, [], `new or changed in ${dir}`);
    }
    await h.assertHealthy();
  },
});

closeShared(host);
