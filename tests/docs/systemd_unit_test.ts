/**
 * The systemd unit of docs/operations.md ("`moat run` under systemd") is the
 * only one in the docs, has the settings a clean stop and an offline start
 * need, and `systemd-analyze verify` accepts it; its install line works as
 * written.
 *
 * Substitutions, because a test may not install into the machine: the
 * install's `DENO_INSTALL_ROOT=/usr/local` becomes a temporary folder and
 * `cd /opt/moat-scripts` this checkout; its `DENO_DIR=…` is left out, so
 * the install uses the Deno cache this test runs from, which holds the npm
 * packages already (no network). The unit's `ExecStart` then points at the
 * `moat` that install made: `systemd-analyze verify` requires the binary to
 * exist and be executable.
 */

import { assert, assertEquals } from "../_util/assert.ts";

const ROOT = new URL("../../", import.meta.url);
const CHECKOUT = ROOT.pathname.replace(/\/$/, "");
const OPERATIONS = new URL("docs/operations.md", ROOT);
const SECTION = "## `moat run` under systemd";

/** The fenced blocks of `markdown` as [language, body]. */
function blocks(markdown: string): [string, string][] {
  return [...markdown.matchAll(/^```(\w*)\n([\s\S]*?)^```$/gm)].map((m) => [m[1]!, m[2]!]);
}

/** The systemd section of docs/operations.md: its unit (file name, text) and install lines. */
function section(): { name: string; unit: string; install: string } {
  const doc = Deno.readTextFileSync(OPERATIONS);
  const start = doc.indexOf(`\n${SECTION}\n`);
  assert(start >= 0, `docs/operations.md has no section "${SECTION}"`);
  const end = doc.indexOf("\n## ", start + 1);
  const own = blocks(doc.slice(start, end < 0 ? undefined : end));
  const units = own.filter(([lang]) => lang === "ini");
  assertEquals(units.length, 1, "one unit in the section");
  const unit = units[0]![1];
  const name = /^# \/etc\/systemd\/system\/([\w@.-]+\.service)\n/.exec(unit)?.[1];
  assert(name !== undefined, `the unit's first line names its file: ${unit.split("\n")[0]}`);
  const installs = own.filter(([lang, body]) =>
    lang === "sh" && body.includes("deno task install")
  );
  assertEquals(installs.length, 1, "one install block in the section");
  return { name, unit, install: installs[0]![1] };
}

/** `Key=Value` settings of one `[Section]` of a unit, in order. */
function settings(unit: string, name: string): [string, string][] {
  const out: [string, string][] = [];
  let current = "";
  for (const line of unit.split("\n")) {
    const head = /^\[(\w+)\]$/.exec(line);
    if (head) current = head[1]!;
    const kv = /^(\w+)=(.*)$/.exec(line);
    if (kv && current === name) out.push([kv[1]!, kv[2]!]);
  }
  return out;
}

/** The install block's `cd DIR` and its `NAME=VALUE… deno task install` line. */
function installStep(install: string): { cd: string; env: Map<string, string>; command: string } {
  const cds = [...install.matchAll(/^cd (\S+)$/gm)].map((m) => m[1]!);
  assertEquals(cds.length, 1, install);
  const lines = install.split("\n").filter((l) => l.includes("deno task install"));
  assertEquals(lines.length, 1, install);
  const words = lines[0]!.trim().split(/\s+/);
  const env = new Map<string, string>();
  while (/^\w+=/.test(words[0] ?? "")) {
    const [name, value] = words.shift()!.split("=", 2) as [string, string];
    env.set(name, value);
  }
  return { cd: cds[0]!, env, command: words.join(" ") };
}

Deno.test("the docs hold one systemd unit, with what a clean stop and an offline start need", () => {
  const { unit, install } = section();
  const service = settings(unit, "Service");
  const one = (key: string) => {
    const values = service.filter(([k]) => k === key).map(([, v]) => v);
    assertEquals(values.length, 1, `one ${key}= in [Service]`);
    return values[0]!;
  };
  assertEquals(one("KillMode"), "mixed");
  assertEquals(one("Restart"), "on-failure");
  assert(one("ExecStart").startsWith("/usr/local/bin/moat run"), one("ExecStart"));
  const env = new Map(
    service.filter(([k]) => k === "Environment").map(([, v]) =>
      v.split("=", 2) as [string, string]
    ),
  );
  assert((env.get("MOAT_HOST") ?? "") !== "", "Environment=MOAT_HOST=…");
  const denoDir = env.get("DENO_DIR");
  assert(denoDir?.startsWith("/"), "Environment=DENO_DIR=/… (absolute)");
  // The install fills the DENO_DIR the service uses, puts `moat` where ExecStart
  // looks for it, and hands the cache to the service's user.
  const step = installStep(install);
  assertEquals(step.command, "deno task install");
  assertEquals(step.env.get("DENO_DIR"), denoDir);
  assertEquals(`${step.env.get("DENO_INSTALL_ROOT")}/bin/moat`, one("ExecStart").split(" ")[0]);
  assert(
    new RegExp(`^chown -R ${one("User")}:\\S+ ${denoDir!.replace(/\/[^/]+$/, "")}$`, "m")
      .test(install),
    `the install hands ${denoDir} to User=${one("User")}:\n${install}`,
  );
  // That task is the README's `deno install --global --allow-all --name moat … cli.ts`.
  const task = JSON.parse(Deno.readTextFileSync(new URL("deno.json", ROOT))).tasks.install;
  assert(typeof task === "string", "deno.json has a task install");
  const words = task.split(/\s+/);
  assertEquals(words.slice(0, 2), ["deno", "install"]);
  for (const w of ["--global", "--allow-all"]) assert(words.includes(w), `${w} in ${task}`);
  assertEquals(words[words.indexOf("--name") + 1], "moat");
  assertEquals(words[words.length - 1], "cli.ts");

  // docs/scripts.md links to this unit instead of giving one of its own.
  const scripts = Deno.readTextFileSync(new URL("docs/scripts.md", ROOT));
  assert(!scripts.includes("[Service]"), "docs/scripts.md has a unit of its own");
  assert(scripts.includes("(operations.md#moat-run-under-systemd)"), "docs/scripts.md links to it");
});

Deno.test("the install line works and systemd-analyze verify accepts the unit", async () => {
  const { name, unit, install } = section();
  const dir = await Deno.makeTempDir({ prefix: "moat-systemd-" });
  try {
    const step = installStep(install);
    const docRoot = step.env.get("DENO_INSTALL_ROOT")!;
    const dec = new TextDecoder();
    // `cd /opt/moat-scripts` is this checkout; DENO_DIR is this test's (see above).
    const installed = await new Deno.Command(Deno.execPath(), {
      args: step.command.split(" ").slice(1),
      cwd: step.cd.replace("/opt/moat-scripts", CHECKOUT),
      env: { DENO_INSTALL_ROOT: `${dir}/root`, NO_COLOR: "1" },
      stdin: "null",
    }).output();
    assertEquals(installed.code, 0, dec.decode(installed.stderr));
    // The installed command is a shell script that runs `deno` from PATH. It
    // starts without the network: with an npm registry that refuses every
    // connection, and an empty Deno cache at that.
    const moat = `${dir}/root/bin/moat`;
    await Deno.mkdir(`${dir}/empty_deno_dir`);
    const version = await new Deno.Command(moat, {
      args: ["--version"],
      env: {
        PATH: `${Deno.execPath().replace(/\/[^/]+$/, "")}:${Deno.env.get("PATH") ?? "/usr/bin"}`,
        DENO_DIR: `${dir}/empty_deno_dir`,
        NPM_CONFIG_REGISTRY: "http://127.0.0.1:9/",
        NO_COLOR: "1",
      },
      stdin: "null",
    }).output();
    assertEquals(version.code, 0, dec.decode(version.stderr));
    assert(dec.decode(version.stdout).startsWith("moat "), dec.decode(version.stdout));

    await Deno.writeTextFile(`${dir}/${name}`, unit.replaceAll(`${docRoot}/bin/moat`, moat));
    const verify = await new Deno.Command("systemd-analyze", {
      args: ["verify", `${dir}/${name}`],
      stdin: "null",
    }).output();
    const said = (dec.decode(verify.stdout) + dec.decode(verify.stderr)).trim();
    // verify exits 0 even for a setting it ignores; it says so, though.
    assertEquals([verify.code, said], [0, ""], said);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
