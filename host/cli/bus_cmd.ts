/**
 * `moat call`, `moat alert`, `moat listen`: RPC calls and alerts on the
 * AMQP bus from the command line, as any MoaT peer sends them.
 *
 * @module
 */

import { AmqpBus, type AmqpExchanges } from "../bus/amqp_bus.ts";
import {
  BusError,
  checkPattern,
  checkRpcName,
  checkTopic,
  RpcRemoteError,
  RpcTimeoutError,
} from "../bus/bus.ts";
import type { Command, CommandContext } from "./command.ts";
import { CommandError, UsageError } from "./io.ts";
import { escapeControl, terminalJson } from "../text.ts";
import { amqpOptions } from "./services.ts";

/** How long the CLI waits for the broker before giving up, in ms. */
export const CLI_AMQP_TIMEOUT_MS = 5_000;

const EXCHANGE_KEYS = ["alert", "rpc", "reply", "dead"] as const;

const EXCHANGES_HELP =
  "The exchanges are MoaT's (alert, rpc, reply, dead) unless the environment\n" +
  'variable MOAT_AMQP_EXCHANGES holds a JSON object naming others, e.g.\n  {"alert": "test-alert", "rpc": "test-rpc"}';

/** Parse `MOAT_AMQP_EXCHANGES`: a JSON object with some of alert, rpc, reply, dead. */
export function parseExchanges(text: string | undefined): Partial<AmqpExchanges> {
  if (text === undefined || text.trim() === "") return {};
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new UsageError(`MOAT_AMQP_EXCHANGES is not JSON: ${JSON.stringify(text)}`);
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new UsageError(`MOAT_AMQP_EXCHANGES must be a JSON object, not ${JSON.stringify(text)}`);
  }
  const out: Partial<AmqpExchanges> = {};
  for (const [k, v] of Object.entries(value)) {
    if (!(EXCHANGE_KEYS as readonly string[]).includes(k)) {
      throw new UsageError(
        `MOAT_AMQP_EXCHANGES has the unknown key "${k}" (known: ${EXCHANGE_KEYS.join(", ")})`,
      );
    }
    if (typeof v !== "string" || v === "") {
      throw new UsageError(`MOAT_AMQP_EXCHANGES: "${k}" must be a non-empty string`);
    }
    out[k as keyof AmqpExchanges] = v;
  }
  return out;
}

/** Parse an optional JSON argument; a missing one is `null`. */
function jsonArg(ctx: CommandContext, i: number, what: string): unknown {
  const text = ctx.positionals[i];
  if (text === undefined) return null;
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new UsageError(
      `${what} is not valid JSON: ${JSON.stringify(text)} (${(e as Error).message}); ` +
        `quote strings, e.g. '"on"'`,
    );
  }
}

/** Parse a positive number of seconds from option `name`, in ms. */
function secondsOption(ctx: CommandContext, name: string, fallbackS: number): number {
  const v = ctx.values[name];
  if (v === undefined) return fallbackS * 1000;
  const s = Number(v);
  if (typeof v !== "string" || v.trim() === "" || !Number.isFinite(s) || s <= 0) {
    throw new UsageError(`--${name} must be a positive number of seconds, not "${String(v)}"`);
  }
  return s * 1000;
}

/** Open the bus the globals name, run `fn`, and close it again. */
export async function withBus<T>(
  ctx: CommandContext,
  fn: (bus: AmqpBus) => Promise<T>,
): Promise<T> {
  const bus = new AmqpBus({
    ...await amqpOptions(ctx.globals),
    exchanges: parseExchanges(Deno.env.get("MOAT_AMQP_EXCHANGES")),
    connectTimeoutMs: CLI_AMQP_TIMEOUT_MS,
    connectionName: "moat-cli",
    log: (level, message) => {
      if (level === "warn" || level === "error") ctx.io.err(`warning: ${escapeControl(message)}`);
    },
  });
  try {
    await bus.connect();
    return await fn(bus);
  } catch (e) {
    // Bus failures are the user's to read, without a stack; they may quote
    // what a peer sent: cli.ts shows every error message escaped.
    if (e instanceof BusError) throw new CommandError(e.message, { cause: e });
    throw e;
  } finally {
    await bus.close();
  }
}

/** `moat call NAME [JSON] [--timeout S]` */
export const callCommand: Command = {
  kind: "command",
  name: "call",
  summary: "call an RPC on the bus and print its JSON result",
  args: "NAME [JSON]",
  help: "Sends JSON (default: null) as the arguments of the RPC NAME and prints the reply\n" +
    "as one line of JSON. A failure of the remote handler prints\n" +
    '"error: NAME failed: MESSAGE (CLASS)"; a name nobody serves fails at once with\n' +
    '"error: NAME failed: nobody serves "NAME" (no_server)"; no reply in time prints a\n' +
    "timeout error. All exit with 1.\n\n" + EXCHANGES_HELP,
  options: {
    timeout: { type: "string", arg: "S", help: "seconds to wait for the reply (default 15)" },
    json: { type: "boolean", help: "print JSON for machines (the reply is JSON either way)" },
  },
  minArgs: 1,
  maxArgs: 2,
  async run(ctx) {
    // Check everything before connecting: a usage error needs no broker.
    const name = checkRpcName(ctx.positionals[0]!);
    const args = jsonArg(ctx, 1, "the JSON argument");
    const timeoutMs = secondsOption(ctx, "timeout", 15);
    const result = await withBus(ctx, async (bus) => {
      try {
        return await bus.call(name, args, { timeoutMs });
      } catch (e) {
        if (e instanceof RpcRemoteError || e instanceof RpcTimeoutError) {
          // The remote message is the handler's (a script's) text; RpcNoServerError
          // (no_server) and a bad reply's reason are RpcRemoteErrors too.
          throw new CommandError(e.message, { cause: e });
        }
        throw e;
      }
    });
    // The reply is a peer's (often a script's): JSON, made safe for a terminal.
    ctx.io.out(terminalJson(result));
    return 0;
  },
};

/** `moat alert TOPIC [JSON]` */
export const alertCommand: Command = {
  kind: "command",
  name: "alert",
  summary: "send an alert on the bus",
  args: "TOPIC [JSON]",
  help: "Publishes JSON (default: null) as an alert with routing key TOPIC; prints nothing.\n\n" +
    EXCHANGES_HELP,
  minArgs: 1,
  maxArgs: 2,
  async run(ctx) {
    const topic = checkTopic(ctx.positionals[0]!);
    const data = jsonArg(ctx, 1, "the JSON argument");
    await withBus(ctx, (bus) => bus.alert(topic, data));
    return 0;
  },
};

/** `moat listen PATTERN [--count N]` */
export const listenCommand: Command = {
  kind: "command",
  name: "listen",
  summary: "print alerts that match a topic pattern as they arrive",
  args: "PATTERN",
  help: 'Prints one line "TOPIC JSON" per alert whose topic matches PATTERN ("*" matches\n' +
    'one word, "#" zero or more), until interrupted (Ctrl-C) or --count alerts arrived;\n' +
    'with --json one JSON object per line instead, {"topic": TOPIC, "data": JSON}.\n' +
    'Prints "listening to PATTERN" on standard error once subscribed.\n\n' + EXCHANGES_HELP,
  options: {
    count: { type: "string", arg: "N", help: "stop after N alerts" },
    json: { type: "boolean", help: 'print {"topic": …, "data": …} per line, for machines' },
  },
  minArgs: 1,
  maxArgs: 1,
  async run(ctx) {
    const pattern = checkPattern(ctx.positionals[0]!);
    const countText = ctx.values.count;
    let count = Infinity;
    if (countText !== undefined) {
      count = Number(countText);
      if (typeof countText !== "string" || !/^[1-9][0-9]*$/.test(countText)) {
        throw new UsageError(`--count must be a positive whole number, not "${String(countText)}"`);
      }
    }
    await withBus(ctx, async (bus) => {
      const done = Promise.withResolvers<void>();
      let seen = 0;
      const reg = await bus.onAlert(pattern, (topic, data) => {
        if (seen >= count) return;
        seen++;
        // Any peer may send any routing key and payload: both shown escaped.
        ctx.io.out(
          ctx.values.json === true
            ? terminalJson({ topic, data })
            : `${escapeControl(topic)} ${terminalJson(data)}`,
        );
        if (seen >= count) done.resolve();
      });
      const onSignal = () => done.resolve();
      Deno.addSignalListener("SIGINT", onSignal);
      Deno.addSignalListener("SIGTERM", onSignal);
      try {
        ctx.io.err(`listening to ${pattern}`);
        await done.promise;
      } finally {
        Deno.removeSignalListener("SIGINT", onSignal);
        Deno.removeSignalListener("SIGTERM", onSignal);
        await reg.close();
      }
    });
    return 0;
  },
};
