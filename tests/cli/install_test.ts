/**
 * `deno task install` as README.md describes it: it installs a `moat`
 * command (into a temporary `DENO_INSTALL_ROOT` here) that runs from any
 * folder, with the npm packages fetched at install time, so that a later
 * run needs neither the network nor the Deno cache the install used.
 */

import { assert, assertEquals, assertIncludes } from "../_util/assert.ts";
import { registryEnv } from "../_util/registry_env.ts";

const ROOT = new URL("../../", import.meta.url).pathname.replace(/\/$/, "");
const VERSION = JSON.parse(await Deno.readTextFile(`${ROOT}/deno.json`)).version as string;
const DENO_BIN = Deno.execPath().slice(0, Deno.execPath().lastIndexOf("/"));
/** An address where nothing answers: a registry or proxy there is no network. */
const NOWHERE = "http://127.0.0.1:1/";

async function run(
  cmd: string,
  args: string[],
  options: { cwd: string; env: Record<string, string> },
): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(cmd, {
    args,
    cwd: options.cwd,
    env: options.env,
    clearEnv: true,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

Deno.test("deno task install gives a moat on PATH that runs without the network", async () => {
  const root = await Deno.makeTempDir({ prefix: "moat-install-" });
  const emptyCache = await Deno.makeTempDir({ prefix: "moat-install-cache-" });
  try {
    const home = Deno.env.get("HOME") ?? root;
    // The install may reuse the machine's Deno cache (and reach the registry).
    const install = await run(Deno.execPath(), ["task", "install"], {
      cwd: ROOT,
      env: {
        PATH: `${DENO_BIN}:/usr/bin:/bin`,
        HOME: home,
        DENO_DIR: Deno.env.get("DENO_DIR") ?? `${home}/.cache/deno`,
        DENO_INSTALL_ROOT: root,
        NO_COLOR: "1",
        // The user's way to the npm registry: the install may fetch what
        // the machine's cache lacks.
        ...registryEnv(),
      },
    });
    assertEquals(install.code, 0, install.stdout + install.stderr);
    const bin = `${root}/bin/moat`;
    assert((await Deno.stat(bin)).isFile, `no ${bin}`);

    // A later run: another folder, an empty Deno cache, no registry, no proxy.
    const offline = {
      PATH: `${root}/bin:${DENO_BIN}:/usr/bin:/bin`,
      HOME: root,
      DENO_DIR: emptyCache,
      NPM_CONFIG_REGISTRY: NOWHERE,
      HTTPS_PROXY: NOWHERE,
      HTTP_PROXY: NOWHERE,
      NO_COLOR: "1",
    };
    const version = await run("sh", ["-c", "moat --version"], { cwd: root, env: offline });
    assertEquals(version, { code: 0, stdout: `moat ${VERSION}\n`, stderr: "" });
    // Not just the version: the whole command, npm packages included, loads.
    const help = await run("sh", ["-c", "moat help script check"], { cwd: root, env: offline });
    assertEquals([help.code, help.stderr], [0, ""], help.stdout);
    assertIncludes(help.stdout, "Usage: moat script check");
    const dir = await Deno.makeTempDir({ dir: root });
    await Deno.writeTextFile(`${dir}/bad.ts`, "moat.setup();\nmoat.setpu();\n");
    // The type check needs TypeScript (npm) and types/moat.d.ts from the checkout.
    const check = await run("sh", ["-c", "moat script check bad.ts"], { cwd: dir, env: offline });
    assertEquals(check.code, 1, check.stderr);
    assertIncludes(
      check.stdout + check.stderr,
      "bad.ts:2:6: Property 'setpu' does not exist on type 'Moat'. Did you mean 'setup'?",
    );
  } finally {
    await Deno.remove(root, { recursive: true });
    await Deno.remove(emptyCache, { recursive: true });
  }
});
