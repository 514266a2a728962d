/**
 * `moat web [--listen ADDR:PORT] [--token T]`: serve the read-only live
 * status page (host/web/web_server.ts) until interrupted.
 *
 * @module
 */

import type { Command } from "./command.ts";
import { CommandError, UsageError } from "./io.ts";
import { CLI_ETCD_TIMEOUT_MS, openEtcd } from "./services.ts";
import { Layout } from "../layout.ts";
import { AmqpBus } from "../bus/amqp_bus.ts";
import { amqpOptions } from "./services.ts";
import { parseExchanges } from "./bus_cmd.ts";
import { escapeControl } from "../text.ts";
import { timeCommand } from "./time_cmd.ts";
import {
  DEFAULT_WEB_LISTEN,
  isLoopback,
  parseListen,
  type PreviewTime,
  WebServer,
} from "../web/web_server.ts";

/** The `moat web` command. */
export const webCommand: Command = {
  kind: "command",
  name: "web",
  summary: "serve a live, read-only status page of every task",
  args: "",
  help: [
    `Serves the page on --listen (default ${DEFAULT_WEB_LISTEN}) until interrupted: every task`,
    "grouped by host with its state, live; a task's data, error records, debug object",
    "and log; the installation's error records; a schedule preview (the times of",
    'moat time). Prints "listening on http://ADDR:PORT/" on standard error once ready.',
    "An address that is not loopback needs a token (--token, or the environment",
    "variable MOAT_WEB_TOKEN; prefer the variable: a command line is visible to other",
    'users): open the page once as /?token=TOKEN, or send "Authorization: Bearer TOKEN".',
    "Task logs and debug objects come over the broker; with --amqp none the page",
    "shows everything else.",
  ].join("\n"),
  options: {
    listen: {
      type: "string",
      arg: "ADDR:PORT",
      help: `where to listen (default ${DEFAULT_WEB_LISTEN})`,
    },
    token: {
      type: "string",
      arg: "TOKEN",
      help: "the token the page asks for (env MOAT_WEB_TOKEN)",
    },
  },
  maxArgs: 0,
  async run(ctx) {
    const listen = typeof ctx.values.listen === "string" ? ctx.values.listen : DEFAULT_WEB_LISTEN;
    let addr;
    try {
      addr = parseListen(listen);
    } catch (e) {
      throw new UsageError((e as Error).message);
    }
    const token = typeof ctx.values.token === "string"
      ? ctx.values.token
      : Deno.env.get("MOAT_WEB_TOKEN") || undefined;
    if (!isLoopback(addr.hostname) && !token) {
      throw new UsageError(
        `moat web on ${listen} (not loopback) needs a token: --token or MOAT_WEB_TOKEN`,
      );
    }
    const store = await openEtcd(ctx.globals, { timeoutMs: CLI_ETCD_TIMEOUT_MS });
    let bus: AmqpBus | undefined;
    if (ctx.globals.amqp !== "none") {
      bus = new AmqpBus({
        ...await amqpOptions(ctx.globals),
        exchanges: parseExchanges(Deno.env.get("MOAT_AMQP_EXCHANGES")),
        connectionName: `moat-web-${ctx.globals.host}`,
        log: (level, message) => {
          if (level === "warn" || level === "error") {
            ctx.io.err(`warning: ${escapeControl(message)}`);
          }
        },
      });
      try {
        await bus.connect();
      } catch (e) {
        await bus.close();
        await store.close();
        throw new CommandError(
          `${(e as Error).message} (use --amqp none to serve the page without logs)`,
          { cause: e },
        );
      }
    }
    const preview = async (spec: string[], count: number): Promise<PreviewTime[]> => {
      const out: string[] = [];
      const err: string[] = [];
      // "--" first: whatever was typed is the spec, never an option
      // (an option could name another etcd).
      await timeCommand(["--count", String(count), "--json", "--", ...spec], {
        out: (l) => out.push(l),
        err: (l) => err.push(l),
      }, ctx.globals);
      return out.map((l) => JSON.parse(l) as PreviewTime);
    };
    const server = new WebServer({
      store,
      layout: new Layout(ctx.globals.root),
      bus,
      listen,
      token,
      preview,
    });
    const done = Promise.withResolvers<void>();
    const onSignal = () => done.resolve();
    Deno.addSignalListener("SIGINT", onSignal);
    Deno.addSignalListener("SIGTERM", onSignal);
    try {
      await server.start();
      const a = server.addr;
      const host = a.hostname.includes(":") ? `[${a.hostname}]` : a.hostname;
      ctx.io.err(`listening on http://${host}:${a.port}/`);
      await done.promise;
      return 0;
    } finally {
      Deno.removeSignalListener("SIGINT", onSignal);
      Deno.removeSignalListener("SIGTERM", onSignal);
      await server.close();
      await bus?.close();
      await store.close();
    }
  },
};
