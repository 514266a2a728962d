/**
 * The conventions every `moat` command keeps, run as a user runs them:
 * `--version` and `moat help`, one format and exit code 2 for every usage
 * error, a quiet stop when the reader of the output goes away, no colour on
 * a terminal or with `NO_COLOR`, and `--json` where the bus and admin
 * commands print data.
 */

import { assert, assertEquals, assertIncludes } from "../_util/assert.ts";
import { MOAT_RUN_ARGS, runMoat, spawnMoat } from "../_util/cli.ts";
import { deleteExchanges, RABBIT_URL, uniqueExchanges } from "../_util/rabbit.ts";
import { withTimeout } from "../_util/wait.ts";
import { AmqpBus } from "../../host/bus/amqp_bus.ts";
import { BROKEN_PIPE_STATUS } from "../../cli.ts";

const ROOT = new URL("../../", import.meta.url);
const VERSION = JSON.parse(await Deno.readTextFile(new URL("deno.json", ROOT))).version as string;
/** Bound of a wait for what must happen: generous, it only catches a hang. */
const EVENT_MS = 60_000;
/** An etcd nobody listens at: usage errors must come before any connection. */
const NO_ETCD = "http://127.0.0.1:1";

Deno.test("moat --version prints the version of deno.json", async () => {
  assert(/^\d+\.\d+\.\d+/.test(VERSION), VERSION);
  const r = await runMoat(["--version"]);
  assertEquals([r.code, r.stdout, r.stderr], [0, `moat ${VERSION}\n`, ""]);
  // It answers whatever the environment holds, as --help does.
  const odd = await runMoat(["--version"], { env: { MOAT_ROOT: "no-slash" } });
  assertEquals([odd.code, odd.stdout], [0, `moat ${VERSION}\n`]);
  const help = await runMoat(["--help"]);
  assertIncludes(help.stdout, "--version  print the version and exit");
});

Deno.test("the version is a module of cli.ts's graph, which deno compile embeds", async () => {
  // No Deno runtime (denort) to build a binary here: its module graph is
  // what `deno compile` embeds, and the version must be in it, not read
  // from a file beside the binary.
  const info = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", new URL("cli.ts", ROOT).pathname],
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert(info.success, new TextDecoder().decode(info.stderr));
  const graph = JSON.parse(new TextDecoder().decode(info.stdout)) as {
    modules: { specifier: string; mediaType?: string }[];
  };
  const config = graph.modules.find((m) => m.specifier === new URL("deno.json", ROOT).href);
  assertEquals(config?.mediaType, "Json", JSON.stringify(config));
});

Deno.test("moat help [COMMAND…] prints what --help prints", async () => {
  const cases: [string[], string[]][] = [
    [["help"], ["--help"]],
    [["help", "script"], ["script", "--help"]],
    [["help", "script", "def", "add"], ["script", "def", "add", "--help"]],
    [["help", "admin", "roles"], ["admin", "roles", "--help"]],
    // moat time parses its own arguments and prints its own help.
    [["help", "time"], ["time", "--help"]],
  ];
  for (const [help, flag] of cases) {
    const [a, b] = await Promise.all([runMoat(help), runMoat(flag)]);
    assertEquals([a.code, a.stderr], [0, ""], help.join(" "));
    assertEquals(a.stdout, b.stdout, help.join(" "));
    assert(a.stdout.length > 100, `${help.join(" ")}: ${a.stdout}`);
  }
  const top = await runMoat(["help"]);
  assertIncludes(top.stdout, "Usage: moat <command> [options]");
  assert(/^ {2}help +show the help of moat or of a command/m.test(top.stdout), top.stdout);
});

Deno.test("every usage error is one error line, a --help hint and exit code 2", async () => {
  const cases: [string[], string, string][] = [
    // [arguments, message, the command whose help the hint names]
    [["--bogus"], 'unknown option "--bogus" for "moat"', "moat"],
    [["status", "--bogus"], 'unknown option "--bogus" for "moat status"', "moat status"],
    [["script", "--bogus", "list"], 'unknown option "--bogus" for "moat script"', "moat script"],
    [
      ["script", "list", "--bogus"],
      'unknown option "--bogus" for "moat script list"',
      "moat script list",
    ],
    [["errors", "-x"], 'unknown option "-x" for "moat errors"', "moat errors"],
    // moat time parses its own options: the same message.
    [["time", "7 hr", "--bogus"], 'unknown option "--bogus" for "moat time"', "moat time"],
    [["status", "--etcd"], 'option "--etcd" needs a value', "moat status"],
    [["--etcd"], 'option "--etcd" needs a value', "moat"],
    [["status", "--json=yes"], 'option "--json" takes no value', "moat status"],
    [["frobnicate"], 'unknown command "frobnicate" for "moat"', "moat"],
    [["script", "frobnicate"], 'unknown command "frobnicate" for "moat script"', "moat script"],
    [[], '"moat" needs a command', "moat"],
    [["admin"], '"moat admin" needs a command', "moat admin"],
    [["help", "nosuch"], 'unknown command "nosuch" for "moat"', "moat"],
    [
      ["script", "def", "add", "x"],
      "missing arguments: usage: moat script def add NAME FILE|- [DESCRIPTION…]",
      "moat script def add",
    ],
    [
      ["status", "a", "b"],
      'too many arguments ("b"): usage: moat status [PATH]',
      "moat status",
    ],
    // Thrown by the commands while they run.
    [
      ["call", "lamp on"],
      'RPC name "lamp on" has the word "lamp on"; words are letters, digits, "_" and "-"',
      "moat call",
    ],
    [
      ["listen", "a", "--count", "0"],
      '--count must be a positive whole number, not "0"',
      "moat listen",
    ],
    [["admin", "roles", "a/b"], '"a/b" is not a valid host name', "moat admin roles"],
    [["--root", "moat"], '--root: "moat" must start with "/" and not end with "/"', "moat"],
    [
      ["script", "check", "/nonexistent/x.ts"],
      'file "/nonexistent/x.ts" does not exist',
      "moat script check",
    ],
  ];
  const results = await Promise.all(
    cases.map(([args]) => runMoat(["--etcd", NO_ETCD, ...args], { env: { MOAT_AMQP: "none" } })),
  );
  cases.forEach(([args, message, command], i) => {
    const r = results[i]!;
    const what = `moat ${args.join(" ")}`;
    assertEquals(r.code, 2, `${what}: ${r.stderr}`);
    assertEquals(r.stdout, "", what);
    assertEquals(
      r.stderr,
      `error: ${message}\nTry "${command} --help" for more information.\n`,
      what,
    );
  });
});

Deno.test("-v adds the cause of a usage error, and only then", async () => {
  const plain = await runMoat(["status", "--bogus"]);
  assert(!plain.stderr.includes("caused by"), plain.stderr);
  const verbose = await runMoat(["-v", "status", "--bogus"]);
  assertEquals(verbose.code, 2);
  assertIncludes(verbose.stderr, "  caused by: TypeError: Unknown option '--bogus'");
});

/**
 * Start `moat ARGS…` with stdout piped, read `chunks` chunks of it (0: none),
 * close the pipe, and return the exit code and stderr.
 */
async function closedEarly(args: string[], chunks: number): Promise<[number, string]> {
  const tmp = await Deno.makeTempDir({ prefix: "moat-pipe-" });
  const child = new Deno.Command(Deno.execPath(), {
    args: [...MOAT_RUN_ARGS, ...args],
    env: { NO_COLOR: "1", TMPDIR: tmp },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  try {
    const stderr = new Response(child.stderr).text();
    const reader = child.stdout.getReader();
    for (let i = 0; i < chunks; i++) {
      const { done } = await withTimeout(reader.read(), EVENT_MS, "moat's first output");
      assert(!done, "moat ended before it printed enough");
    }
    // The reader goes away, as `head` does once it has its lines.
    await reader.cancel();
    const status = await withTimeout(child.status, EVENT_MS, "moat to stop");
    return [status.code, await stderr];
  } finally {
    try {
      child.kill("SIGKILL");
    } catch {
      // It has exited.
    }
    await child.status;
    await Deno.remove(tmp, { recursive: true });
  }
}

Deno.test("moat stops quietly with 141 when the reader of its output goes away", async () => {
  // 10000 lines (380 kB) fill any pipe: moat is still writing when the reader leaves.
  const [code, stderr] = await closedEarly(
    ["time", "0 sec", "--now", "2026-01-01T00:00", "--tz", "UTC", "--count", "10000"],
    1,
  );
  assertEquals([code, stderr], [BROKEN_PIPE_STATUS, ""]);
  assertEquals(BROKEN_PIPE_STATUS, 128 + 13);
  // Closed before moat wrote anything: its first line already finds no reader.
  const [helpCode, helpErr] = await closedEarly(["help"], 0);
  assertEquals([helpCode, helpErr], [BROKEN_PIPE_STATUS, ""]);
});

/** Run `moat ARGS…` with stdout and stderr on a terminal (util-linux `script`), output as seen. */
async function onTerminal(args: string[], env: Record<string, string>): Promise<string> {
  const tmp = await Deno.makeTempDir({ prefix: "moat-tty-" });
  try {
    const quoted = [Deno.execPath(), ...MOAT_RUN_ARGS, ...args]
      .map((a) => `'${a.replaceAll("'", `'\\''`)}'`).join(" ");
    const base: Record<string, string> = {
      PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
      HOME: Deno.env.get("HOME") ?? tmp,
      TMPDIR: tmp,
      TERM: "xterm-256color",
    };
    const denoDir = Deno.env.get("DENO_DIR");
    if (denoDir !== undefined) base.DENO_DIR = denoDir;
    const out = await new Deno.Command("script", {
      args: ["-qec", `${quoted}; echo "@@exit $?@@"`, "/dev/null"],
      env: { ...base, ...env },
      clearEnv: true,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    assert(out.success, `script failed: ${text}`);
    return text;
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
}

Deno.test("moat prints no colour or terminal escapes, on a terminal or with NO_COLOR", async () => {
  // The test must really give moat a terminal: Deno.stdout.isTerminal() says so.
  const probe = await new Deno.Command("script", {
    args: [
      "-qec",
      `'${Deno.execPath()}' eval 'console.log(Deno.stdout.isTerminal())'`,
      "/dev/null",
    ],
    stdin: "null",
    stdout: "piped",
  }).output();
  assertIncludes(new TextDecoder().decode(probe.stdout), "true");
  for (const env of [{}, { NO_COLOR: "1" }]) {
    for (const args of [["help"], ["status", "--bogus"], ["time", "7 hr", "--now", "0"]]) {
      const text = await onTerminal(args, env);
      const what = `moat ${args.join(" ")} with ${JSON.stringify(env)}`;
      assert(/@@exit [02]@@/.test(text), `${what}: ${text}`);
      assert(text.length > 20, `${what}: ${text}`);
      assert(!text.includes("\x1b"), `${what} printed an escape: ${JSON.stringify(text)}`);
    }
  }
});

Deno.test("moat listen --json prints one JSON object per alert", async () => {
  const ex = uniqueExchanges();
  const { prefix: _, ...names } = ex;
  const bus = await AmqpBus.open({ url: RABBIT_URL, exchanges: ex });
  const listen = spawnMoat(["listen", "door.#", "--count", "2", "--json"], {
    env: { MOAT_AMQP: RABBIT_URL, MOAT_AMQP_EXCHANGES: JSON.stringify(names) },
  });
  try {
    await listen.waitForLine((l) => l === "listening to door.#", EVENT_MS, "moat listen");
    await bus.alert("door.front", { open: true, who: "a\nb" });
    await bus.alert("door.back", null);
    const status = await withTimeout(listen.status, EVENT_MS, "moat listen to exit");
    assertEquals(status.code, 0, listen.lines.join("\n"));
    const rows = listen.lines.filter((l) => l.startsWith("{"));
    assertEquals(rows.map((l) => JSON.parse(l)), [
      { topic: "door.front", data: { open: true, who: "a\nb" } },
      { topic: "door.back", data: null },
    ]);
  } finally {
    listen.kill();
    await listen.status;
    await bus.close();
    await deleteExchanges(ex);
  }
});

Deno.test("moat call --json prints the reply as JSON, as without it", async () => {
  const ex = uniqueExchanges();
  const { prefix: _, ...names } = ex;
  const bus = await AmqpBus.open({ url: RABBIT_URL, exchanges: ex });
  try {
    await bus.serve("echo.json", (args) => Promise.resolve({ got: args }));
    const env = { MOAT_AMQP: RABBIT_URL, MOAT_AMQP_EXCHANGES: JSON.stringify(names) };
    const [json, plain] = await Promise.all([
      runMoat(["call", "echo.json", "[1,2]", "--json"], { env }),
      runMoat(["call", "echo.json", "[1,2]"], { env }),
    ]);
    assertEquals([json.code, json.stderr], [0, ""]);
    assertEquals(JSON.parse(json.stdout), { got: [1, 2] });
    assertEquals(json.stdout, plain.stdout);
  } finally {
    await bus.close();
    await deleteExchanges(ex);
  }
});

Deno.test("moat admin roles --json prints the roles for machines", async () => {
  const r = await runMoat(["--etcd", NO_ETCD, "admin", "roles", "kitchen", "--json"]);
  assertEquals([r.code, r.stderr], [0, ""]);
  const out = JSON.parse(r.stdout) as {
    root: string;
    hosts: string[];
    roles: { name: string; purpose: string; permissions: { type: string; key: string }[] }[];
  };
  assertEquals(out.root, "/moat");
  assertEquals(out.hosts, ["kitchen"]);
  assertEquals(out.roles.map((role) => role.name), [
    "moat-admin",
    "moat-reader",
    "moat-host-kitchen",
  ]);
  const host = out.roles[2]!;
  assertIncludes(host.purpose, "moat run --host kitchen");
  assert(
    host.permissions.some((p) => p.type === "readwrite" && p.key === "/moat/task/kitchen/"),
    JSON.stringify(host.permissions),
  );
});
