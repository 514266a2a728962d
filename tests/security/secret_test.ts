/**
 * Secret values (`types/<var>` = `secret`) on a real host with a private
 * etcd, real sandboxes and the embedded LocalBus, and the real `moat` CLI:
 * another task's secret is invisible to a script's tree lookups (of the
 * key, its directory and every parent), to its monitors, and to the owning
 * task's own tree view; the owner reads it through `moat.data.get` and
 * writes it with `moat.data.set`; it is masked in the logs, the debug
 * object, the status a run ends with, `moat status`, the web model and
 * `moat script param` (shown with `--show-secret`); it is set from a file
 * or standard input, refused on the command line, and deleted with its task.
 */

import { assert, assertEquals, assertIncludes } from "../_util/assert.ts";
import { withTimeout } from "../_util/wait.ts";
import { waitForKey } from "../_util/store_wait.ts";
import { runMoat } from "../_util/cli.ts";
import { startEtcd } from "../_util/etcd_server.ts";
import { EtcdStore } from "../../host/store/etcd_store.ts";
import { Layout, SCRIPT_KEYS, TASK_KEYS } from "../../host/layout.ts";
import { MemoryLogger } from "../../host/log.ts";
import { SandboxPool } from "../../host/bridge/sandbox.ts";
import { debugRpcName, Host } from "../../host/tasks/host.ts";
import { LocalBus } from "../../host/bus/local_bus.ts";
import { RpcNoServerError } from "../../host/bus/bus.ts";
import { WebModel } from "../../host/web/web_model.ts";
import { TEST_LIMITS } from "./_harness.ts";

/** Secrets long and odd enough that no other text holds them by chance. */
const FIRST = "s3cr3t-first-Qx7!";
const SECOND = "s3cr3t-second-Zp9#";
const STDIN = "s3cr3t-stdin-Mv2%";
const SECRETS = [FIRST, SECOND, STDIN];

/** Every path=value below a node, for a log line that shows all a script saw. */
const DUMP = `
const dump = (node, out = {}) => {
  if (!node) return out;
  if (node.value !== undefined) out[node.path] = node.value;
  for (const k of node.keys()) {
    const c = node.get(k);
    if (c && typeof c === "object" && typeof c.keys === "function" && typeof c.path === "string") {
      dump(c, out);
    } else out[node.path + "/" + k] = c;
  }
  return out;
};
`;

/** Task h/a: looks for h/b's secret through every tree path, and monitors h/. */
const SPY = `moat.setup();
${DUMP}
const show = (label, v) => moat.logger.info("R " + label + " " + JSON.stringify(v));
moat.rpc("spy.look")(async () => {
  show("leaf", (await moat.tree.lookup("task/h/b/:task/secret/pin")) ?? null);
  show("dir", (await moat.tree.lookup("task", "h", "b", ":task", "secret")) ?? null);
  for (const p of ["task/h/b/:task", "task/h/b", "task/h", "task"]) {
    show("parent " + p, dump(await moat.tree.lookup(p)));
  }
  return "looked";
});
moat.on_start(async () => {
  const node = await moat.tree.lookup("task", "h");
  moat.monitor(node)((c) => show("change", { node: dump(c.node), added: c.added }));
  moat.logger.info("R watching");
});
`;

/** Task h/b: owns the secret \`pin\` (and \`token\`, never set: its default is ignored). */
const KEEPER = `moat.setup();
${DUMP}
moat.rpc("keeper.go")(async () => {
  const pin = moat.data.get("pin");
  moat.logger.info("R pin " + pin);
  moat.logger.info("R wrapped [" + pin + "]");
  const own = dump(await moat.tree.lookup("task/h/b/:task"));
  moat.logger.info("R own " + JSON.stringify(Object.keys(own)));
  moat.logger.info("R own-has-it " + Object.values(own).includes(pin));
  moat.debug_obj({ note: "pin is " + pin, [String(pin)]: 1 });
  await moat.set_error("leak", "err " + pin);
  await moat.data.set("pin", ${JSON.stringify(SECOND)});
  await moat.data.set("count", 1);
  return { pin, token: moat.data.get("token"), now: moat.data.get("pin") };
});
moat.rpc("keeper.crash")(() => {
  setTimeout(() => { throw new Error("crash with " + moat.data.get("pin")); }, 0);
  return "crashing";
});
`;

Deno.test("a task's secret value is invisible to every other path on a real host", async (t) => {
  const etcd = await startEtcd();
  const store = new EtcdStore({ endpoints: [etcd.endpoint] });
  const layout = new Layout("/moat");
  const logger = new MemoryLogger();
  const bus = new LocalBus();
  const tmpDir = await Deno.makeTempDir({ prefix: "moat-secret-" });
  const pool = new SandboxPool({ warm: 1, limits: TEST_LIMITS, tmpDir, readyTimeoutMs: 120_000 });
  const host = new Host({ store, layout, hostName: "h", isolation: pool, logger, bus });
  const env = { MOAT_ETCD: etcd.endpoint, MOAT_HOST: "h" };
  const moat = (...args: string[]) => runMoat(args, { env });
  const stdinMoat = (stdin: string, ...args: string[]) => runMoat(args, { env, stdin });
  const lines = (task: string) =>
    logger.lines.filter((l) => l.source === task).map((l) => l.message);
  const waitLine = async (task: string, pred: (m: string) => boolean, what: string) => {
    try {
      await withTimeout(
        logger.waitFor((l) => l.source === task && pred(l.message)),
        60_000,
        what,
      );
    } catch (e) {
      const log = logger.lines.map((l) => `${l.source} ${l.message}`).join("\n");
      throw new Error(`${(e as Error).message}; log:\n${log}`);
    }
  };
  /**
   * Call RPC `name` of `task`'s script once it serves it: a script's
   * `moat.rpc` does not wait for its registration, whose claim of the name
   * is in etcd just before the bus has it; the gap after the claim is
   * bridged by retries, bounded at 60 s (far beyond the gap on a busy
   * machine).
   */
  const callServed = async (name: string, task: string): Promise<unknown> => {
    const claim = `${layout.rpcPrefix}${name}/task/${task}`;
    await waitForKey(store, claim, (v) => v !== undefined, 60_000);
    for (let i = 0;; i++) {
      try {
        return await bus.call(name, null, { timeoutMs: 60_000 });
      } catch (e) {
        if (!(e instanceof RpcNoServerError) || i >= 3000) throw e;
        await new Promise((r) => setTimeout(r, 20));
      }
    }
  };
  const noSecret = (text: string, where: string) => {
    for (const s of SECRETS) assert(!text.includes(s), `${where} shows a secret: ${text}`);
  };
  const secretKey = layout.taskDir("h/b") + TASK_KEYS.secret + "pin";
  const kdir = layout.scriptDir("keeper");
  try {
    await t.step(
      "the CLI sets a secret from stdin or a file, never from the command line",
      async () => {
        await Deno.writeTextFile(`${tmpDir}/spy.js`, SPY);
        await Deno.writeTextFile(`${tmpDir}/keeper.js`, KEEPER);
        for (const s of ["spy", "keeper"]) {
          const r = await moat("script", "def", "add", s, `${tmpDir}/${s}.js`);
          assertEquals(r.code, 0, r.stderr);
        }
        await store.put(kdir + SCRIPT_KEYS.types + "pin", "secret");
        await store.put(kdir + SCRIPT_KEYS.types + "token", "secret");
        await store.put(kdir + SCRIPT_KEYS.types + "count", "int");
        // A default in code is readable by every script: it is never used.
        await store.put(kdir + SCRIPT_KEYS.values + "token", "default-token-value");

        const onAdd = await moat("script", "add", "keeper", "h/b", "count=0", `pin=${FIRST}`);
        assertEquals(onAdd.code, 2, onAdd.stdout);
        assertIncludes(onAdd.stderr, "--secret-file");
        assertEquals(await store.get(layout.taskDir("h/b") + TASK_KEYS.taskdef), undefined);
        const added = await moat("script", "add", "keeper", "h/b", "count=0");
        assertEquals(added.code, 0, added.stderr);

        const onLine = await moat("script", "param", "h/b", `pin=${FIRST}`);
        assertEquals(onLine.code, 2, onLine.stdout);
        assertIncludes(onLine.stderr, '"pin" is a secret');
        assertIncludes(onLine.stderr, "--secret-file FILE");
        assertEquals(await store.get(secretKey), undefined);
        assertEquals(await store.get(layout.taskDir("h/b") + TASK_KEYS.data + "pin"), undefined);
        const notSecret = await stdinMoat(
          FIRST,
          "script",
          "param",
          "h/b",
          "count",
          "--secret-file",
          "-",
        );
        assertEquals(notSecret.code, 2, notSecret.stdout);
        assertIncludes(notSecret.stderr, '"count" is not a secret');

        const fromStdin = await stdinMoat(
          `${STDIN}\n`,
          "script",
          "param",
          "h/b",
          "pin",
          "--secret-file",
          "-",
        );
        assertEquals(fromStdin.code, 0, fromStdin.stderr);
        assertEquals(fromStdin.stdout.trim(), "pin=***");
        assertEquals((await store.get(secretKey))?.value, STDIN);
        await Deno.writeTextFile(`${tmpDir}/pin.txt`, `${FIRST}\n`);
        const fromFile = await moat(
          "script",
          "param",
          "h/b",
          "pin",
          "--secret-file",
          `${tmpDir}/pin.txt`,
        );
        assertEquals(fromFile.code, 0, fromFile.stderr);
        assertEquals((await store.get(secretKey))?.value, FIRST);
      },
    );

    await t.step("moat script param masks a secret unless --show-secret names it", async () => {
      const all = await moat("script", "param", "h/b");
      assertEquals(all.code, 0, all.stderr);
      assertEquals(all.stdout.trim().split("\n"), ["count=0", "pin=***"]);
      const json = await moat("script", "param", "h/b", "--json");
      assertEquals(json.code, 0, json.stderr);
      assertEquals(JSON.parse(json.stdout), { count: 0, pin: "***" });
      const one = await moat("script", "param", "h/b", "pin");
      assertEquals([one.code, one.stdout.trim()], [0, "***"]);
      const shown = await moat("script", "param", "h/b", "pin", "--show-secret");
      assertEquals([shown.code, shown.stdout.trim()], [0, FIRST]);
      const listed = await moat("script", "list", "--json");
      assertEquals(listed.code, 0, listed.stderr);
      noSecret(listed.stdout, "moat script list");
      const config = await moat("script", "config", "h/b", "--json");
      assertEquals(config.code, 0, config.stderr);
      noSecret(config.stdout, "moat script config");
    });

    await t.step("no tree view of another task, nor of its own, has the secret", async () => {
      const spy = await moat("script", "add", "spy", "h/a");
      assertEquals(spy.code, 0, spy.stderr);
      await host.start();
      await waitLine("h/a", (m) => m === "R watching", "the spy's monitor");
      await waitLine("h/b", (m) => m.startsWith("started script"), "the keeper's start");
      assertEquals(await callServed("spy.look", "h/a"), "looked");
      const got = await callServed("keeper.go", "h/b");
      // The owner reads its secret (and no default in code), and writes it.
      assertEquals(got, { pin: FIRST, token: null, now: SECOND });
      assertEquals((await store.get(secretKey))?.value, SECOND);
      await waitLine(
        "h/a",
        (m) => m.startsWith("R change") && m.includes('"task/h/b/:task/data/count":1'),
        "the spy to see count=1",
      );
      const spyLines = lines("h/a");
      for (const m of spyLines) {
        noSecret(m, "the spy's log");
        assert(!m.includes("secret/pin") && !m.includes(":task/secret"), m);
      }
      assert(spyLines.includes("R leaf null"), spyLines.join("\n"));
      assert(spyLines.includes("R dir null"), spyLines.join("\n"));
      // The parents are there, with the task's data: only the secret is not.
      for (const p of ["task/h/b/:task", "task/h/b", "task/h", "task"]) {
        const line = spyLines.find((m) => m.startsWith(`R parent ${p} `));
        assert(line?.includes('"task/h/b/:task/data/count":0'), line);
      }
      const own = lines("h/b");
      assert(own.includes("R own-has-it false"), own.join("\n"));
      const ownKeys = own.find((m) => m.startsWith("R own ["));
      assertIncludes(ownKeys ?? "", "task/h/b/:task/data/count");
      assert(!ownKeys?.includes("secret"), ownKeys);
    });

    await t.step("the logs and the debug object show the secret masked", async () => {
      const own = lines("h/b");
      assert(own.includes("R pin ***"), own.join("\n"));
      assert(own.includes("R wrapped [***]"), own.join("\n"));
      for (const l of logger.lines) noSecret(l.message, `the log of ${l.source}`);
      const debug = await bus.call(debugRpcName("h"), "h/b", { timeoutMs: 60_000 });
      const text = JSON.stringify(debug);
      noSecret(text, "moat debug");
      // Keys too, and the value read when the object was made (the secret changed since).
      assertIncludes(text, '"pin is ***"');
      assertIncludes(text, '"***":1');
      const records = await store.range(layout.errorsPrefix + "leak/");
      const msg = records.kvs.find((kv) => kv.key.endsWith("/msg"))?.value;
      assertEquals(msg, "err ***");
    });

    await t.step("moat status and the web model never show it", async () => {
      assertEquals(await callServed("keeper.crash", "h/b"), "crashing");
      const status = layout.statusKey("h/b", "message");
      await waitForKey(store, status, (v) => v !== undefined && v.includes("crash with"), 60_000);
      const message = (await store.get(status))!.value;
      assertIncludes(message, "crash with ***");
      noSecret(message, "the status message");
      for (const args of [["status"], ["status", "--json"]]) {
        const r = await moat(...args);
        assertEquals(r.code, 0, r.stderr);
        assertIncludes(r.stdout, "h/b");
        noSecret(r.stdout, `moat ${args.join(" ")}`);
      }
      const model = new WebModel(store, layout);
      try {
        await model.start();
        const detail = model.task("h/b");
        assertEquals(detail?.data, { count: "1", pin: "***" });
        noSecret(JSON.stringify(detail), "the web's task page");
        noSecret(JSON.stringify(model.state()), "the web's state");
      } finally {
        await model.close();
      }
    });

    await t.step("deleting the task deletes its secret", async () => {
      const r = await moat("script", "delete", "h/b");
      assertEquals(r.code, 0, r.stderr);
      assertEquals(await store.get(secretKey), undefined);
      const left = await store.range(layout.taskDir("h/b"));
      assertEquals(left.kvs, []);
    });
  } finally {
    await host.close();
    await pool.close();
    await bus.close();
    await store.close();
    await etcd.stop();
    await Deno.remove(tmpDir, { recursive: true }).catch(() => {});
  }
});
