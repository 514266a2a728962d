/**
 * A MoaT peer in qbroker's shape (tests/interop/qbroker_peer.py, pika,
 * written from docs/amqp.md) against a real `moat run` host on RabbitMQ:
 * it declares the exchanges and RPC queues with qbroker's arguments before
 * the host starts and after, calls a script's RPCs as both qbroker
 * generations do (application/json+obj, type rpc and request, null, "" and
 * empty bodies), reads errors in the m_err shape as qbroker's
 * raise_if_error does, serves an RPC in qbroker's shape that the script
 * calls, sends an application/json+obj alert, and receives task state
 * alerts. A call nobody serves fails with no_server, from `moat call` and
 * from the script.
 */

import { assert, assertEquals, assertIncludes } from "../_util/assert.ts";
import { startEtcd } from "../_util/etcd_server.ts";
import { runMoat, spawnMoat } from "../_util/cli.ts";
import {
  bindingsWith,
  deleteExchanges,
  queuesWith,
  RABBIT_URL,
  uniqueExchanges,
} from "../_util/rabbit.ts";
import { withTimeout } from "../_util/wait.ts";

const PYTHON = "/usr/bin/python3";
const PEER = new URL("./qbroker_peer.py", import.meta.url).pathname;
/** Bound of a wait for what must happen: generous, it only catches a hang. */
const HANG_MS = 60_000;

type Json = Record<string, unknown>;

/** A running qbroker_peer.py: its JSON lines, as they come. */
interface Peer {
  lines: Json[];
  next(what: string): Promise<Json>;
  status: Promise<Deno.CommandStatus>;
  stderr: () => string;
  kill(): void;
}

function peer(ex: Json, ...args: string[]): Peer {
  const child = new Deno.Command(PYTHON, {
    args: [PEER, RABBIT_URL, JSON.stringify(ex), ...args],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const lines: Json[] = [];
  let read = 0;
  let err = "";
  const wake = new Set<() => void>();
  const pump = async () => {
    let buf = "";
    for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
      buf += chunk;
      let nl;
      while ((nl = buf.indexOf("\n")) >= 0) {
        lines.push(JSON.parse(buf.slice(0, nl)));
        buf = buf.slice(nl + 1);
        for (const w of [...wake]) w();
      }
    }
    for (const w of [...wake]) w();
  };
  const errPump = (async () => {
    for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) err += chunk;
  })();
  const done = pump();
  const status = Promise.all([done, errPump]).then(() => child.status);
  let ended = false;
  status.then(() => ended = true);
  return {
    lines,
    status,
    stderr: () => err,
    kill: () => {
      try {
        child.kill("SIGKILL");
      } catch {
        // Gone already.
      }
    },
    next(what) {
      return withTimeout(
        new Promise<Json>((resolve, reject) => {
          let settled = false;
          const check = () => {
            if (settled) return;
            if (read < lines.length) {
              settled = true;
              wake.delete(check);
              resolve(lines[read++]!);
            } else if (ended) {
              settled = true;
              wake.delete(check);
              reject(new Error(`the peer ended before ${what}: ${JSON.stringify(lines)} ${err}`));
            }
          };
          wake.add(check);
          status.then(check);
          check();
        }),
        HANG_MS,
        what,
      );
    },
  };
}

/** Run the peer to its end and return its one line. */
async function once(ex: Json, ...args: string[]): Promise<Json> {
  const p = peer(ex, ...args);
  const line = await p.next(args.join(" "));
  const st = await p.status;
  assertEquals(st.code, 0, p.stderr());
  return line;
}

/** Poll until `check` holds (there is no event for a consumer appearing in the broker). */
async function eventually(check: () => Promise<boolean>, what: string): Promise<void> {
  const until = performance.now() + HANG_MS;
  while (!(await check())) {
    assert(performance.now() < until, `timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

const script = (u: string) =>
  `moat.setup();
const U = ${JSON.stringify(u)};
moat.rpc(U + ".echo")((a) => ({ got: a, type: a === null ? "null" : typeof a }));
moat.rpc(U + ".early")((a) => "early " + JSON.stringify(a));
moat.rpc(U + ".fail")(() => { throw new RangeError("lamp 7 is not dimmable"); });
moat.on_alert(U + ".go")(async (topic, data) => {
  moat.logger.info("go " + JSON.stringify(data));
  try { moat.logger.info("py " + JSON.stringify(await moat.call(U + ".py", { n: 1 }, { timeout: 30 }))); }
  catch (e) { moat.logger.info("py error " + e.code + " " + e.message); }
  try { await moat.call(U + ".py", "fail", { timeout: 30 }); moat.logger.info("py fail: no error"); }
  catch (e) { moat.logger.info("py fail " + e.code + " " + e.message); }
  try { await moat.call(U + ".nobody", 1, { timeout: 30 }); moat.logger.info("nobody: no error"); }
  catch (e) { moat.logger.info("nobody " + e.code + " " + e.message); }
});
moat.on_start(() => moat.logger.info("serving"));
`;

Deno.test("a qbroker-shaped Python peer and a moat host interoperate over RabbitMQ", async () => {
  const etcd = await startEtcd();
  const ex = uniqueExchanges();
  const exchanges = { alert: ex.alert, rpc: ex.rpc, reply: ex.reply, dead: ex.dead };
  const u = `q${crypto.randomUUID().slice(0, 8)}`;
  const dir = await Deno.makeTempDir({ prefix: "moat-qbroker-" });
  const env = {
    MOAT_ETCD: etcd.endpoint,
    MOAT_HOST: "qb",
    MOAT_AMQP: RABBIT_URL,
    MOAT_AMQP_EXCHANGES: JSON.stringify(exchanges),
  };
  const moat = (...a: string[]) => runMoat(a, { env });
  const peers: Peer[] = [];
  const start = (...a: string[]) => {
    const p = peer(exchanges, ...a);
    peers.push(p);
    return p;
  };
  let host: ReturnType<typeof spawnMoat> | undefined;
  try {
    // qbroker declares first: the host must accept its exchanges and RPC queue as they are.
    assertEquals(await once(exchanges, "declare", `${u}.early`), { declared: [`${u}.early`] });

    await Deno.writeTextFile(`${dir}/qb.js`, script(u));
    assertEquals((await moat("script", "def", "add", "qb", `${dir}/qb.js`)).code, 0);
    host = spawnMoat(["run"], { env });
    await host.waitForLine((l) => l.includes("running tasks of host"), HANG_MS, "the host");
    const tasks = start("listen", "moat.task.qb.#", "1");
    assertEquals(await tasks.next("listening"), { listening: "moat.task.qb.#" });
    assertEquals((await moat("script", "add", "qb", "qb/peer")).code, 0);
    await host.waitForLine((l) => l.includes("[qb/peer] serving"), HANG_MS, "serving");
    for (const name of ["echo", "early", "fail"]) {
      await eventually(
        async () =>
          (await queuesWith(`${ex.rpc}_${u}.${name}`)).includes(`${ex.rpc}_${u}.${name} 1`),
        `the script to serve ${name}`,
      );
    }
    await eventually(
      async () => (await bindingsWith(ex.prefix)).some((b) => b.endsWith(` ${u}.go`)),
      "the script's alert subscription",
    );

    // Task state alerts, with qbroker's fields.
    const alert = await tasks.next("the task's start alert");
    assertEquals(alert.topic, "moat.task.qb.peer");
    const data = alert.data as Json;
    assertEquals(data.task, "qb/peer");
    assertEquals(data.state, "start");
    assertEquals(data.status, "start");
    assertEquals(data.reason, null);
    assertEquals(data.parent, null);
    assertEquals(data.result, null);
    assertEquals((await tasks.status).code, 0, tasks.stderr());

    // qbroker declares after the host: the same arguments, so no 406.
    assertEquals(await once(exchanges, "declare", `${u}.echo`, `${u}.early`), {
      declared: [`${u}.echo`, `${u}.early`],
    });
    assert(!host.lines.some((l) => l.includes("exists with other")), host.lines.join("\n"));

    // Calls in both generations' shapes; the reply has the request's content type.
    const trio = await once(
      exchanges,
      "call",
      `${u}.echo`,
      "trio",
      '{"x":1,"at":{"_o":"datetime","t":1764516000,"s":"2025-11-30 15:20:00"}}',
    );
    assertEquals(trio, {
      content_type: "application/json+obj",
      type: "reply",
      data: { got: { x: 1, at: "2025-11-30T15:20:00.000Z" }, type: "object" },
    });
    const echo = async (gen: string, body: string) =>
      ((await once(exchanges, "call", `${u}.echo`, gen, body)).data as Json).got;
    assertEquals(await echo("trio", "null"), null);
    assertEquals(await echo("asyncio", '""'), null);
    assertEquals(await echo("asyncio", ""), null);
    assertEquals(await echo("asyncio", '"on"'), "on");
    assertEquals(await echo("trio", '""'), "");
    assertEquals((await once(exchanges, "call", `${u}.early`, "asyncio", "[1]")).data, "early [1]");
    const bad = await once(exchanges, "call", `${u}.echo`, "trio", '{"_o":"frob"}');
    assertEquals((bad.error as Json).c, "SyntaxError");
    assertIncludes(String((bad.error as Json).m), 'unknown application/json+obj tag "frob"');

    // Errors in the m_err shape, raised as qbroker's raise_if_error does.
    const failed = await once(exchanges, "call", `${u}.fail`, "trio", "null");
    assertEquals(failed.error, {
      qbroker_readable: true,
      s: "error",
      m: "lamp 7 is not dimmable",
      c: "RangeError",
      raised: { class: "ValueError", str: "lamp 7 is not dimmable" },
    });

    // The script calls an RPC a qbroker-shaped server serves, on a json+obj alert.
    const server = start("serve", `${u}.py`, "2");
    assertEquals(await server.next("serving"), { serving: `${u}.py` });
    assertEquals(
      await once(exchanges, "alert", `${u}.go`, '{"at":{"_o":"time","t":3600,"s":"01:00:00"}}'),
      { sent: `${u}.go` },
    );
    await host.waitForLine((l) => l.includes("[qb/peer] go "), HANG_MS, "the alert");
    assert(host.lines.some((l) => l.includes('go {"at":"01:00:00"}')), host.lines.join("\n"));
    const py = await host.waitForLine((l) => l.includes("[qb/peer] py "), HANG_MS, "the call");
    assertIncludes(
      py,
      'py {"echo":{"n":1},"at":"2025-11-30T15:20:00.000Z","day":"2025-11-30",' +
        '"raw":{"base64":"AP9oZWxsbw=="}}',
    );
    const pyFail = await host.waitForLine((l) => l.includes("[qb/peer] py fail"), HANG_MS, "fail");
    assertIncludes(pyFail, `py fail rpc_error ${u}.py failed: no such lamp (KeyError)`);
    assertEquals((await server.status).code, 0, server.stderr());

    // Nobody serves it: no_server, from the script and from moat call.
    const nobody = await host.waitForLine((l) => l.includes("[qb/peer] nobody"), HANG_MS, "nobody");
    assertIncludes(nobody, `nobody no_server ${u}.nobody failed: nobody serves "${u}.nobody"`);
    const r = await moat("call", `${u}.nobody`, "1", "--timeout", "60");
    assertEquals(r.code, 1, r.stderr);
    assertIncludes(r.stderr, `error: ${u}.nobody failed: nobody serves "${u}.nobody" (no_server)`);
  } finally {
    for (const p of peers) p.kill();
    await Promise.all(peers.map((p) => p.status));
    host?.kill("SIGTERM");
    await host?.status;
    await deleteExchanges(ex);
    await Deno.remove(dir, { recursive: true });
    await etcd.stop();
  }
});
