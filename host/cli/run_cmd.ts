/**
 * `moat run [PATH…]`: run this host's script tasks until stopped (SIGINT or
 * SIGTERM), or each once with `--once`.
 *
 * @module
 */

import type { Command } from "./command.ts";
import { EtcdAccessError, type EtcdStore } from "../store/etcd_store.ts";
import { Layout } from "../layout.ts";
import { isLogLevel, LineLogger, type Logger } from "../log.ts";
import { SandboxPool } from "../bridge/sandbox.ts";
import { Host } from "../tasks/host.ts";
import { SystemClock } from "../time/clock.ts";
import { CommandError, UsageError } from "./io.ts";
import type { Bus } from "../bus/bus.ts";
import { LocalBus } from "../bus/local_bus.ts";
import { AmqpBus } from "../bus/amqp_bus.ts";
import { parseExchanges } from "./bus_cmd.ts";
import { checkName } from "../names.ts";
import { amqpOptions, CLI_ETCD_TIMEOUT_MS, openEtcd } from "./services.ts";
import { MemoryReducer } from "../tasks/memory_reducer.ts";
import { type Quotas, readQuotas } from "../capabilities/quotas.ts";
import { TaskLogs } from "../logs/task_logs.ts";
import { DEFAULT_RING_LINES, TaskLogRing } from "../logs/task_log_ring.ts";

/** The install-wide quotas of `/config/run` (defaults when etcd cannot be read now). */
async function runQuotas(store: EtcdStore, layout: Layout, logger: Logger): Promise<Quotas> {
  const global: Record<string, string> = {};
  try {
    const { kvs } = await store.range(layout.runConfigPrefix);
    for (const kv of kvs) global[kv.key.slice(layout.runConfigPrefix.length)] = kv.value;
  } catch (e) {
    // A refused TLS handshake or user will not go away: say so at once.
    if (e instanceof EtcdAccessError) throw e;
    logger.log(
      "warn",
      "host",
      `cannot read /config/run for the queue bounds: ${(e as Error).message}`,
    );
  }
  return readQuotas(global, {}, (m) => logger.log("warn", "host", m));
}

/** How long a shutdown may take before the host gives up waiting, in ms. */
const SHUTDOWN_MS = 5000;

/** The `moat run` command. */
export const runCommand: Command = {
  kind: "command",
  name: "run",
  summary: "run this host's script tasks",
  args: "[PATH…]",
  help: [
    "Runs every script task below /task/<host>/<PATH> (default: all of this host's tasks),",
    "each in its own sandbox process, and follows the tree: new tasks start, deleted ones",
    "stop, changed ones restart. SIGINT or SIGTERM stop every script cleanly.",
  ].join("\n"),
  options: {
    once: { type: "boolean", help: "run each task once, without restarts, then exit" },
    "log-level": { type: "string", arg: "LEVEL", help: "debug, info (default), warn or error" },
    "log-lines": {
      type: "string",
      arg: "N",
      help:
        `recent log lines kept per task for moat log and moat web (default ${DEFAULT_RING_LINES})`,
    },
  },
  async run(ctx) {
    for (const p of ctx.positionals) {
      try {
        checkName(p, "path");
      } catch (e) {
        throw new UsageError((e as Error).message);
      }
    }
    const level = ctx.values["log-level"] ?? "info";
    if (typeof level !== "string" || !isLogLevel(level)) {
      throw new UsageError(
        `--log-level must be debug, info, warn or error, not "${String(level)}"`,
      );
    }
    const ringText = ctx.values["log-lines"];
    if (
      ringText !== undefined && (typeof ringText !== "string" || !/^[1-9][0-9]*$/.test(ringText))
    ) {
      throw new UsageError(
        `--log-lines must be a positive whole number, not "${String(ringText)}"`,
      );
    }
    // Every task's lines go to standard error, into the task's ring and onto
    // the bus (host/logs/task_logs.ts).
    const logger = new TaskLogs({
      host: ctx.globals.host,
      inner: new LineLogger({ level }),
      level,
      ring: new TaskLogRing(ringText === undefined ? {} : { lines: Number(ringText) }),
    });
    const clock = new SystemClock();
    // First: it refuses to run without /proc, before anything is opened.
    const isolation = new SandboxPool();
    let store: EtcdStore;
    let busOptions: Awaited<ReturnType<typeof amqpOptions>> | undefined;
    try {
      if (ctx.globals.amqp !== "none") busOptions = await amqpOptions(ctx.globals);
      store = await openEtcd(ctx.globals, { timeoutMs: CLI_ETCD_TIMEOUT_MS });
    } catch (e) {
      await isolation.close();
      throw e;
    }
    const once = ctx.values.once === true;
    // "--amqp none" runs without a broker: scripts of this host talk on an
    // in-process bus.
    let bus: Bus;
    if (ctx.globals.amqp === "none") {
      bus = new LocalBus();
    } else {
      // Queue bounds are install-wide (every declarer of a shared queue must
      // agree): /config/run/queue_ttl, queue_length and queue_bytes, read once
      // at start.
      const quotas = await runQuotas(store, new Layout(ctx.globals.root), logger).catch(
        async (e) => {
          await store.close();
          await isolation.close();
          throw e;
        },
      );
      const amqp = new AmqpBus({
        ...busOptions,
        exchanges: parseExchanges(Deno.env.get("MOAT_AMQP_EXCHANGES")),
        connectionName: `moat-run-${ctx.globals.host}`,
        queueTtlMs: quotas.queueTtl * 1000,
        queueLength: quotas.queueLength,
        queueBytes: quotas.queueBytes,
        log: (level, message) => logger.log(level, "amqp", message),
      });
      try {
        await amqp.connect();
      } catch (e) {
        await amqp.close();
        await store.close();
        await isolation.close();
        throw new CommandError(
          `${(e as Error).message} (use --amqp none to run without a broker)`,
          { cause: e },
        );
      }
      bus = amqp;
      // Task logs go on the broker only: on a host's own bus nobody reads them.
      await logger.serve(amqp).catch(async (e) => {
        await amqp.close();
        await store.close();
        await isolation.close();
        throw e;
      });
    }
    // After a burst of starts and stops, give V8's grown heap back to the
    // system once the host is quiet (host/tasks/memory_reducer.ts).
    const mib = (n: number) => (n / 1048576).toFixed(1);
    const memory = new MemoryReducer({
      onCollect: (c) =>
        logger.log(
          "debug",
          "host",
          `memory: heap ${mib(c.before.heapUsed)} -> ${mib(c.after.heapUsed)} MiB used, ` +
            `${mib(c.before.heapTotal)} -> ${mib(c.after.heapTotal)} MiB held, in ${c.ms} ms`,
        ),
    });
    const host = new Host({
      store,
      layout: new Layout(ctx.globals.root),
      hostName: ctx.globals.host,
      isolation,
      logger,
      clock,
      paths: ctx.positionals,
      once,
      bus,
      onTransition: () => memory.activity(),
    });
    let signalled: string | undefined;
    let wake!: () => void;
    const stopRequested = new Promise<void>((r) => wake = r);
    const onSignal = (name: string) => () => {
      if (signalled) return;
      signalled = name;
      logger.log("info", "host", `${name}: stopping every script`);
      wake();
    };
    const handlers = [["SIGINT", onSignal("SIGINT")], ["SIGTERM", onSignal("SIGTERM")]] as const;
    for (const [sig, fn] of handlers) Deno.addSignalListener(sig, fn);
    try {
      await host.start();
      logger.log("info", "host", `running tasks of host ${ctx.globals.host}`);
      memory.start();
      if (once) {
        const ends = await Promise.race([host.settled(), stopRequested.then(() => undefined)]);
        if (ends) {
          const bad = [...ends].filter(([, e]) => e?.state !== "ok");
          return bad.length === 0 ? 0 : 1;
        }
      } else {
        await stopRequested;
      }
      return 0;
    } finally {
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        host.close(),
        new Promise<void>((r) => timer = setTimeout(r, SHUTDOWN_MS)),
      ]);
      clearTimeout(timer);
      memory.close();
      await logger.close();
      await isolation.close();
      await bus.close();
      await store.close();
      for (const [sig, fn] of handlers) Deno.removeSignalListener(sig, fn);
    }
  },
};
