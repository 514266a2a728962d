/**
 * Text from scripts, and names typed into etcd by hand, reach the terminal
 * escaped: `moat status`, `moat errors`, the script and task lists, `moat
 * script param`, `moat call` and `moat listen`, run as a user runs them.
 * Forged rows ("\n", "\r"), terminal escapes (OSC 52 sets the clipboard,
 * "\x1b[2J" clears the screen) and bidi overrides are put straight into a
 * private etcd or sent by a peer on the local RabbitMQ.
 */

import { assert, assertEquals, assertIncludes } from "../_util/assert.ts";
import { startEtcd } from "../_util/etcd_server.ts";
import { type CliResult, MOAT_RUN_ARGS, runMoat } from "../_util/cli.ts";
import { deleteExchanges, RABBIT_URL, rawPeer, uniqueExchanges } from "../_util/rabbit.ts";
import { withTimeout } from "../_util/wait.ts";
import { EtcdStore } from "../../host/store/etcd_store.ts";
import { AmqpBus } from "../../host/bus/amqp_bus.ts";
import { debugRpcName } from "../../host/tasks/host.ts";

const OSC52 = "\x1b]52;c;aGk=\x07";
const CLEAR = "\x1b[2J";
const RLO = "\u202e";
/** A message that tries everything: a forged row, a carriage return, escapes, a bidi override. */
const EVIL = `boom\ntesthost/fake  ok  -  all good\rhidden${OSC52}${CLEAR}${RLO}txt.exe`;
/** How `EVIL` must be shown. */
const EVIL_SHOWN =
  "boom\\ntesthost/fake  ok  -  all good\\rhidden\\x1b]52;c;aGk=\\x07\\x1b[2J\\u202etxt.exe";

/** Bound of a wait for what must happen: generous, it only catches a hang. */
const EVENT_MS = 60_000;

/** No raw control character but the newline that ends each line, and no ESC at all. */
function assertClean(text: string, what: string): void {
  assert(!text.includes("\x1b"), `ESC in ${what}: ${JSON.stringify(text)}`);
  const bad = [...text].find((c) =>
    (c < " " && c !== "\n") || (c >= "\x7f" && c <= "\x9f") ||
    /[\u2028\u2029\u202a-\u202e\u2066-\u2069]/.test(c)
  );
  assert(
    bad === undefined,
    `raw U+${bad?.charCodeAt(0).toString(16)} in ${what}: ${JSON.stringify(text)}`,
  );
}

/** The lines of a command's output (without the empty string after the last newline). */
function lines(r: CliResult): string[] {
  assert(r.stdout.endsWith("\n"), `no final newline: ${JSON.stringify(r.stdout)}`);
  return r.stdout.slice(0, -1).split("\n");
}

/** Every column of the header starts at the same offset in every row. */
function assertAligned(rows: string[], headers: string[]): void {
  const header = rows[0]!;
  for (const h of headers.slice(1)) {
    const at = header.indexOf(`  ${h}`) + 2;
    assert(at >= 2, `no column ${h} in ${header}`);
    for (const row of rows.slice(1)) {
      // An empty last cell is trimmed away.
      if (h === headers.at(-1) && row.length <= at - 2) continue;
      assertEquals(row.slice(at - 2, at), "  ", `column ${h} misaligned in ${JSON.stringify(row)}`);
      assert(row[at] !== " ", `column ${h} misaligned in ${JSON.stringify(row)}`);
    }
  }
}

Deno.test("moat status, errors and the lists show text from scripts and etcd escaped", async (t) => {
  const etcd = await startEtcd();
  const store = new EtcdStore({ endpoints: [etcd.endpoint] });
  const env = { MOAT_ETCD: etcd.endpoint, MOAT_HOST: "testhost" };
  const moat = (...args: string[]) => runMoat(args, { env });
  const put = (key: string, value: string) => store.put(`/moat/${key}`, value);
  try {
    // A script and a task as `moat script def add` / `add` would store them,
    // but with descriptions and a data value a script or a person could write.
    const script = "meta/script/evil/:code/";
    await put(script + "code", "moat.setup();\n");
    await put(script + "language", "typescript");
    await put(script + "descr", `lights${CLEAR}\non`);
    await put(script + "created", "1700000000");
    await put(script + "timestamp", "1700000000");
    const task = "task/testhost/forge/:task/";
    await put(task + "taskdef", "task/script");
    await put(task + "script", "evil");
    await put(task + "script_loc", "abc");
    await put(task + "descr", `porch${OSC52}\rlight`);
    await put(task + "data/light", `on\n${OSC52}${RLO}`);

    // Status: the script's end message and debug text, a task path typed by
    // hand with control characters, a hand-written runner.
    const run = "status/run/testhost/";
    await put(run + "forge/:task/started", "1700000000");
    await put(run + "forge/:task/stopped", "1700000100");
    await put(run + "forge/:task/state", "error");
    await put(run + "forge/:task/message", EVIL);
    await put(run + "forge/:task/debug", `debug${CLEAR}\n${OSC52}`);
    await put(run + `x${CLEAR}\ny/:task/started`, "1700000000");
    await put(run + `x${CLEAR}\ny/:task/stopped`, "1700000100");
    await put(run + `x${CLEAR}\ny/:task/state`, "ok");
    await put(run + "busy/:task/started", "1700000000");
    await put(run + "busy/:task/running", `me${OSC52}\nfake`);

    // Error records: one a script set with moat.set_error, one with a tag and
    // a location typed by hand.
    const rec = (tag: string, id: string, loc: string, msg: string) =>
      Promise.all([
        put(`status/errors/${tag}/${id}/loc`, loc),
        put(`status/errors/${tag}/${id}/msg`, msg),
        put(`status/errors/${tag}/${id}/counter`, "3"),
        put(`status/errors/${tag}/${id}/created`, "1700000000"),
        put(`status/errors/${tag}/${id}/timestamp`, "1700000100"),
      ]);
    await rec("sensor", "id1", "testhost/forge", EVIL);
    await rec(`t${CLEAR}`, "id2", `testhost/z\r${RLO}`, "plain");

    await t.step("moat status: one row per task, messages and paths escaped", async () => {
      const r = await moat("status");
      assertEquals(r.code, 0, r.stderr);
      assertClean(r.stdout, "moat status");
      const rows = lines(r);
      assertEquals(rows.length, 4, r.stdout);
      assertAligned(rows, ["PATH", "STATE", "SINCE", "MESSAGE"]);
      assert(/^testhost\/busy\s+run\s/.test(rows[1]!), rows[1]);
      assertIncludes(rows[1]!, "on me\\x1b]52;c;aGk=\\x07\\nfake");
      assert(/^testhost\/forge\s+error\s/.test(rows[2]!), rows[2]);
      assert(rows[2]!.endsWith(EVIL_SHOWN), rows[2]);
      assert(/^testhost\/x\\x1b\[2J\\ny\s+ok\s/.test(rows[3]!), rows[3]);
      assert(!r.stdout.includes("debug"), "the debug text is not part of moat status");
      assertEquals(r.stderr, "");
    });

    await t.step("moat status --json stays JSON with the exact texts", async () => {
      const r = await moat("status", "testhost/forge", "--json");
      assertEquals(r.code, 0, r.stderr);
      assert(!r.stdout.includes("\x1b"), r.stdout);
      const rows = JSON.parse(r.stdout) as { message: string }[];
      assertEquals(rows.map((row) => row.message), [EVIL]);
    });

    await t.step("moat errors: one row per record, messages, tags and paths escaped", async () => {
      const r = await moat("errors");
      assertEquals(r.code, 0, r.stderr);
      assertClean(r.stdout, "moat errors");
      const rows = lines(r);
      assertEquals(rows.length, 3, r.stdout);
      assertAligned(rows, ["PATH", "TAG", "COUNT", "LAST", "MESSAGE"]);
      assert(/^testhost\/forge\s+sensor\s+3\s/.test(rows[1]!), rows[1]);
      assert(rows[1]!.endsWith(EVIL_SHOWN), rows[1]);
      assert(/^testhost\/z\\r\\u202e\s+t\\x1b\[2J\s+3\s.*\splain$/.test(rows[2]!), rows[2]);
      const json = JSON.parse((await moat("errors", "--json")).stdout) as { msg: string }[];
      assertEquals(json.map((e) => e.msg).sort(), [EVIL, "plain"].sort());
    });

    await t.step("the script and task lists and moat script param show escaped text", async () => {
      const defs = await moat("script", "def", "list");
      assertEquals(defs.code, 0, defs.stderr);
      assertClean(defs.stdout, "moat script def list");
      assertEquals(lines(defs), ["evil  typescript  lights\\x1b[2J\\non"]);

      const tasks = await moat("script", "list");
      assertEquals(tasks.code, 0, tasks.stderr);
      assertClean(tasks.stdout, "moat script list");
      assertEquals(lines(tasks), ["testhost/forge  evil  porch\\x1b]52;c;aGk=\\x07\\rlight"]);

      const param = await moat("script", "param", "testhost/forge");
      assertEquals(param.code, 0, param.stderr);
      assertClean(param.stdout, "moat script param");
      assertEquals(lines(param), ["light=on\\n\\x1b]52;c;aGk=\\x07\\u202e"]);
    });

    await t.step(
      "moat run logs a script's messages and its error escaped, one line each",
      async () => {
        const dir = await Deno.makeTempDir({ prefix: "moat-output-" });
        try {
          const file = `${dir}/shout.ts`;
          await Deno.writeTextFile(
            file,
            `moat.setup();\nmoat.logger.info(${JSON.stringify(`said ${EVIL}`)});\n` +
              `throw new Error(${JSON.stringify(EVIL)});\n`,
          );
          assertEquals((await moat("script", "def", "add", "shout", file)).code, 0);
          assertEquals((await moat("script", "add", "shout", "testhost/shout")).code, 0);
          const r = await moat("run", "shout", "--once", "--amqp", "none");
          assertEquals(r.code, 1, r.stderr);
          assertClean(r.stderr, "moat run's log");
          const log = r.stderr.split("\n");
          assert(log.some((l) => l.endsWith(`[testhost/shout] said ${EVIL_SHOWN}`)), r.stderr);
          assert(
            log.some((l) =>
              l.includes(`[testhost/shout] ended: error: `) &&
              l.endsWith(EVIL_SHOWN)
            ),
            r.stderr,
          );
        } finally {
          await Deno.remove(dir, { recursive: true });
        }
      },
    );
  } finally {
    await store.close();
    await etcd.stop();
  }
});

/** Run `fn` with a bus on exchanges of its own and the env that points `moat` at them. */
async function withBus(
  fn: (
    bus: AmqpBus,
    env: Record<string, string>,
    exchanges: ReturnType<typeof uniqueExchanges>,
  ) => Promise<void>,
): Promise<void> {
  const ex = uniqueExchanges();
  const bus = await AmqpBus.open({ url: RABBIT_URL, exchanges: ex });
  const { prefix: _, ...names } = ex;
  try {
    await fn(bus, { MOAT_AMQP: RABBIT_URL, MOAT_AMQP_EXCHANGES: JSON.stringify(names) }, ex);
  } finally {
    await bus.close();
    await deleteExchanges(ex);
  }
}

Deno.test("moat call shows a peer's reply and error message escaped", async () => {
  await withBus(async (bus, env) => {
    const reply = { msg: EVIL, c1: "\x9b2J\x7f", ls: "a\u2028b\u2066c", ok: "Grüße 👋" };
    await bus.serve("evil.reply", () => Promise.resolve(reply));
    await bus.serve("evil.fail", () => Promise.reject(new Error(EVIL)));

    const r = await runMoat(["call", "evil.reply"], { env });
    assertEquals(r.code, 0, r.stderr);
    assertClean(r.stdout, "moat call");
    assertEquals(lines(r).length, 1);
    // Still JSON, and the same value.
    assertEquals(JSON.parse(r.stdout), reply);
    assertIncludes(r.stdout, "Grüße 👋");

    const f = await runMoat(["call", "evil.fail"], { env });
    assertEquals(f.code, 1, f.stderr);
    assertEquals(f.stdout, "");
    assertClean(f.stderr, "moat call's error");
    assertEquals(f.stderr, `error: evil.fail failed: ${EVIL_SHOWN} (Error)\n`);
  });
});

Deno.test("moat debug shows a host's debug objects as JSON with controls escaped", async () => {
  await withBus(async (bus, env) => {
    const answer = {
      task: { script: { "testhost/forge": { note: EVIL, c1: "\x85\x9b", ok: "Grüße 👋" } } },
    };
    await bus.serve(debugRpcName("testhost"), () => Promise.resolve(answer));
    const r = await runMoat(["debug", "--host", "testhost"], { env });
    assertEquals(r.code, 0, r.stderr);
    assertClean(r.stdout, "moat debug");
    assertEquals(JSON.parse(r.stdout), answer);
    assertIncludes(r.stdout, "\\u202etxt.exe");
    assertIncludes(r.stdout, "Grüße 👋");
  });
});

Deno.test("moat listen shows a peer's topic, payload and dropped messages escaped", async () => {
  await withBus(async (_bus, env, ex) => {
    const child = new Deno.Command(Deno.execPath(), {
      args: [...MOAT_RUN_ARGS, "listen", "#", "--count", "2"],
      env: { NO_COLOR: "1", ...env },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const dec = new TextDecoder();
    const stdout = new Response(child.stdout).text();
    let stderr = "";
    const listening = Promise.withResolvers<void>();
    const stderrDone = (async () => {
      for await (const chunk of child.stderr) {
        stderr += dec.decode(chunk, { stream: true });
        if (stderr.includes("listening to")) listening.resolve();
      }
      listening.reject(new Error(`moat listen ended before listening: ${stderr}`));
    })();
    const peer = await rawPeer();
    try {
      await withTimeout(listening.promise, EVENT_MS, "moat listen to subscribe");
      // A peer that breaks the rules: control characters in routing keys and payloads.
      peer.publish(ex.alert, `bad${CLEAR}\nkey`, "x", { contentType: "image/png" });
      peer.publish(ex.alert, `door${OSC52}.front${RLO}`, JSON.stringify({ m: EVIL }));
      peer.publish(ex.alert, "text.topic", `plain\x9b${CLEAR}`, { contentType: "text/plain" });
      const status = await withTimeout(child.status, EVENT_MS, "moat listen to exit");
      await stderrDone;
      const out = await stdout;
      assertEquals(status.code, 0, stderr);
      assertClean(out, "moat listen");
      assertClean(stderr, "moat listen's warnings");
      const rows = out.slice(0, -1).split("\n");
      assertEquals(rows.length, 2, out);
      assert(rows[0]!.startsWith("door\\x1b]52;c;aGk=\\x07.front\\u202e {"), rows[0]);
      assertEquals(JSON.parse(rows[0]!.slice(rows[0]!.indexOf(" ") + 1)), { m: EVIL });
      assertEquals(rows[1], 'text.topic "plain\\u009b\\u001b[2J"');
      assertIncludes(stderr, 'dropped a message for "bad\\x1b[2J\\nkey"');
    } finally {
      await peer.close();
      try {
        child.kill();
      } catch {
        // It has exited.
      }
      await child.status;
      await Promise.allSettled([stdout, stderrDone]);
    }
  });
});

Deno.test("moat script try shows a script's log lines, errors and data writes escaped", async () => {
  const dir = await Deno.makeTempDir({ prefix: "moat-output-" });
  try {
    const file = `${dir}/evil.ts`;
    await Deno.writeTextFile(
      file,
      `moat.setup();
moat.run(async () => {
  moat.logger.info(${JSON.stringify(`hello ${EVIL}`)});
  await moat.set_error("tag", ${JSON.stringify(EVIL)});
  await moat.data.set("light", ${JSON.stringify(`on${OSC52}\n${RLO}`)});
  throw new Error(${JSON.stringify(EVIL)});
});
`,
    );
    const r = await runMoat([
      "script",
      "try",
      file,
      "light=off",
      "--at",
      "2026-03-02T12:00",
      "--tz",
      "UTC",
      "--for",
      "1h",
    ]);
    assertEquals(r.code, 1, r.stderr);
    assertClean(r.stdout, "moat script try");
    assertClean(r.stderr, "moat script try's errors");
    const rows = lines(r);
    const only = (what: string) => rows.filter((l) => l.slice(26).startsWith(what));
    const info = only("info ").map((l) => l.slice(32));
    assert(info.includes(`hello ${EVIL_SHOWN}`), info.join("\n"));
    // The script's own record, then the host's record of the failed run.
    assertEquals(only("error").map((l) => l.slice(32)), [
      `tag set: ${EVIL_SHOWN}`,
      `job set: ${EVIL_SHOWN}`,
    ]);
    assertEquals(
      only("data ").map((l) => l.slice(32)),
      ["light = off", "light = on\\x1b]52;c;aGk=\\x07\\n\\u202e"],
    );
    assertIncludes(r.stderr, `error: the script ended with error: ${EVIL_SHOWN}\n`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
