import assert from "node:assert/strict";
import { parseArgs } from "node:util";
import { type Command, dispatch, type Group, helpCommand, parseArgsMessage } from "./command.ts";
import { UsageError, usageHint } from "./io.ts";

/** A small tree: `t leaf [--n N] [ARG]`, `t sub deep`, `t raw …`, `t help …`. */
function tree(): { root: Group; ran: string[][] } {
  const ran: string[][] = [];
  const leaf: Command = {
    kind: "command",
    name: "leaf",
    summary: "a leaf",
    args: "[ARG]",
    options: { n: { type: "string", arg: "N", help: "a number" } },
    maxArgs: 1,
    run(ctx) {
      ran.push(ctx.positionals);
      if (ctx.positionals[0] === "bad") return Promise.reject(new RangeError('"bad" is bad'));
      return Promise.resolve(0);
    },
  };
  const raw: Command = {
    kind: "command",
    name: "raw",
    summary: "parses its own arguments",
    args: "…",
    rawArgs: true,
    run(ctx) {
      if (ctx.positionals.includes("--help")) {
        ctx.io.out("raw's own help");
        return Promise.resolve(0);
      }
      try {
        parseArgs({ args: ctx.positionals, options: {}, strict: true });
      } catch (e) {
        return Promise.reject(new UsageError((e as Error).message, { cause: e }));
      }
      return Promise.resolve(0);
    },
  };
  const deep: Command = { ...leaf, name: "deep", summary: "a deep leaf" };
  const sub: Group = { kind: "group", name: "sub", summary: "a group", commands: [deep] };
  const root: Group = {
    kind: "group",
    name: "t",
    summary: "a test tree",
    commands: [leaf, sub, raw, helpCommand(() => root)],
    version: "1.2.3",
  };
  return { root, ran };
}

async function run(root: Group, ...args: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const io = { out: (l: string) => out.push(l), err: (l: string) => err.push(l) };
  try {
    const code = await dispatch(root, args, io, {}, () => "host");
    return { code, out, error: undefined };
  } catch (e) {
    return { code: undefined, out, error: e };
  }
}

/** The usage error `args` end in: its message and the command it names. */
async function usage(root: Group, ...args: string[]): Promise<[string, string | undefined]> {
  const r = await run(root, ...args);
  assert.ok(r.error instanceof UsageError, `${args.join(" ")}: ${String(r.error)}`);
  return [r.error.message, r.error.command];
}

Deno.test("dispatch reports unknown options in one format at every level, naming the command", async () => {
  const { root } = tree();
  assert.deepEqual(await usage(root, "--x"), ['unknown option "--x" for "t"', "t"]);
  assert.deepEqual(await usage(root, "sub", "--x", "deep"), [
    'unknown option "--x" for "t sub"',
    "t sub",
  ]);
  assert.deepEqual(await usage(root, "leaf", "--x"), [
    'unknown option "--x" for "t leaf"',
    "t leaf",
  ]);
  assert.deepEqual(await usage(root, "sub", "deep", "-x"), [
    'unknown option "-x" for "t sub deep"',
    "t sub deep",
  ]);
  // A command that parses its own options gets the same words.
  assert.deepEqual(await usage(root, "raw", "--x"), ['unknown option "--x" for "t raw"', "t raw"]);
});

Deno.test("dispatch words missing and unwanted option values and bad names as usage errors", async () => {
  const { root } = tree();
  assert.deepEqual(await usage(root, "leaf", "--n"), ['option "--n" needs a value', "t leaf"]);
  assert.deepEqual(await usage(root, "--etcd"), ['option "--etcd" needs a value', "t"]);
  assert.deepEqual(await usage(root, "leaf", "--help=1"), [
    'option "--help" takes no value',
    "t leaf",
  ]);
  assert.deepEqual(await usage(root, "nope"), ['unknown command "nope" for "t"', "t"]);
  assert.deepEqual(await usage(root, "sub"), ['"t sub" needs a command', "t sub"]);
  assert.deepEqual(await usage(root, "leaf", "a", "b"), [
    'too many arguments ("b"): usage: t leaf [ARG]',
    "t leaf",
  ]);
  // A RangeError a command throws for a bad value is a usage error of that command.
  const [message, command] = await usage(root, "leaf", "bad");
  assert.deepEqual([message, command], ['"bad" is bad', "t leaf"]);
});

Deno.test("dispatch prints the version and help whatever the environment holds", async () => {
  const { root, ran } = tree();
  const out: string[] = [];
  const io = { out: (l: string) => out.push(l), err: (l: string) => out.push(l) };
  const bad = { MOAT_ROOT: "no-slash" };
  assert.equal(await dispatch(root, ["--version"], io, bad, () => "h"), 0);
  assert.deepEqual(out, ["t 1.2.3"]);
  assert.equal(await dispatch(root, ["--help"], io, bad, () => "h"), 0);
  assert.match(out[1]!, /^ {6}--version {2}print the version and exit$/m);
  assert.deepEqual(ran, []);
  // Only the root knows --version.
  assert.deepEqual(await usage(root, "sub", "--version"), [
    'unknown option "--version" for "t sub"',
    "t sub",
  ]);
});

Deno.test("help [COMMAND…] prints what --help prints, a raw command's own help included", async () => {
  const { root } = tree();
  for (const path of [[], ["sub"], ["sub", "deep"], ["leaf"], ["raw"]]) {
    const a = await run(root, "help", ...path);
    const b = await run(root, ...path, "--help");
    assert.equal(a.code, 0, String(a.error));
    assert.deepEqual(a.out, b.out, path.join(" "));
    assert.ok(a.out.join("").length > 0);
  }
  assert.deepEqual(await usage(root, "help", "sub", "nope"), [
    'unknown command "nope" for "t sub"',
    "t sub",
  ]);
  assert.deepEqual(await usage(root, "help", "leaf", "more"), [
    '"t leaf" has no subcommands (no "more")',
    "t leaf",
  ]);
});

Deno.test("parseArgsMessage leaves other errors alone, and the hint names the help", () => {
  assert.equal(parseArgsMessage(new TypeError("x"), "t"), undefined);
  assert.equal(parseArgsMessage("Unknown option '--x'", "t"), undefined);
  assert.equal(usageHint("t sub"), 'Try "t sub --help" for more information.');
  assert.equal(usageHint(undefined), 'Try "moat --help" for more information.');
});
