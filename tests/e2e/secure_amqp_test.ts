/**
 * End to end over AMQP with TLS: stunnel (Debian's stunnel4) in front of
 * the local RabbitMQ, with certificates made by openssl here, and a broker
 * user of its own with the per-host permissions of docs/operations.md in a
 * vhost of its own. A script's RPC round trip works through it; wrong TLS
 * inputs fail with their own error in bounded time; passwords are never
 * printed; the user cannot touch other exchanges or queues.
 */

import { Buffer } from "node:buffer";
// @ts-types="@types/amqplib"
import amqp from "amqplib";
import { assert, assertEquals, assertIncludes } from "../_util/assert.ts";
import { startEtcd } from "../_util/etcd_server.ts";
import { rabbitmqctl } from "../_util/rabbit.ts";
import { errorLines, runMoat, spawnMoat } from "../_util/cli.ts";
import { makeCerts, type TestCerts } from "../_util/tls_certs.ts";
import { startStunnel, type Stunnel } from "../_util/stunnel.ts";

/** The per-host permission pattern of docs/operations.md (configure, write and read alike). */
const HOST_PERMISSIONS = "^(alert|rpc|reply|dead)$|^(alert|rpc|reply)_";

/**
 * A refused start ends by itself: this bound only catches one that hangs
 * or retries without end, not a slow machine.
 */
const FAIL_WITHIN_MS = 60_000;

const ECHO = `moat.setup();
moat.rpc("tls.echo")((args) => ({ got: args }));
moat.on_start(() => moat.logger.info("serving"));
`;

interface Setup {
  certs: TestCerts;
  tunnel: Stunnel;
  vhost: string;
  user: string;
  password: string;
  /** The environment of every command: etcd, broker URL (no password), CA file. */
  env: Record<string, string>;
  dir: string;
}

async function withTlsBroker(fn: (s: Setup) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "moat-secure-amqp-" });
  const id = crypto.randomUUID().slice(0, 8);
  const vhost = `moat-tls-${id}`;
  const user = `moat-host-${id}`;
  const password = `pw-${crypto.randomUUID()}`;
  const etcd = await startEtcd();
  let tunnel: Stunnel | undefined;
  let made = false;
  try {
    const certs = await makeCerts(dir);
    tunnel = await startStunnel(dir, certs.server, certs.ca);
    await rabbitmqctl("add_vhost", vhost);
    made = true;
    await rabbitmqctl("add_user", user, password);
    await rabbitmqctl(
      "set_permissions",
      "-p",
      vhost,
      user,
      HOST_PERMISSIONS,
      HOST_PERMISSIONS,
      HOST_PERMISSIONS,
    );
    await fn({
      certs,
      tunnel,
      vhost,
      user,
      password,
      dir,
      env: {
        MOAT_ETCD: etcd.endpoint,
        MOAT_HOST: "tls",
        MOAT_AMQP: `amqps://${user}@127.0.0.1:${tunnel.port}/${vhost}`,
        MOAT_AMQP_PASSWORD: password,
        MOAT_AMQP_CACERT: certs.ca,
      },
    });
  } finally {
    if (made) {
      await rabbitmqctl("delete_user", user).catch(() => {});
      await rabbitmqctl("delete_vhost", vhost).catch(() => {});
    }
    await tunnel?.stop();
    await etcd.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

Deno.test("a script's RPC round trip works over amqps:// with a CA file and a host's own broker user", async () => {
  await withTlsBroker(async (s) => {
    await Deno.writeTextFile(`${s.dir}/echo.ts`, ECHO);
    let r = await runMoat(["script", "def", "add", "echo", `${s.dir}/echo.ts`], { env: s.env });
    assertEquals(r.code, 0, r.stderr);
    r = await runMoat(["script", "add", "echo", "tls/echo"], { env: s.env });
    assertEquals(r.code, 0, r.stderr);
    const host = spawnMoat(["run"], { env: s.env });
    try {
      await host.waitForLine((l) => l.includes("[tls/echo] serving"), 60_000, "the script");
      // The script registers its RPC just after it starts: try a few times
      // (each with a timeout a busy machine does not reach).
      const echo = () =>
        runMoat(["call", "tls.echo", '{"a":1}', "--timeout", "20"], { env: s.env });
      let call = await echo();
      for (let i = 0; i < 10 && call.code !== 0; i++) call = await echo();
      assertEquals(call.code, 0, call.stderr);
      assertEquals(call.stdout.trim(), '{"got":{"a":1}}');
      const conns = await rabbitmqctl("list_connections", "-p", s.vhost, "user", "ssl");
      assertIncludes(conns, s.user, "the host is connected as its own user");
    } finally {
      host.kill("SIGTERM");
      await host.status;
    }
    assert(!host.lines.join("\n").includes(s.password), "the host printed the password");

    // The user may use MoaT's exchanges and queues of that vhost, nothing else.
    const conn = await amqp.connect(
      `amqp://${s.user}:${encodeURIComponent(s.password)}@127.0.0.1:5672/${s.vhost}`,
    );
    try {
      for (
        const [what, op] of [
          ["declare another exchange", (ch: amqp.Channel) => ch.assertExchange("other", "topic")],
          ["declare another queue", (ch: amqp.Channel) => ch.assertQueue("other-queue")],
          ["publish to the default exchange", async (ch: amqp.Channel) => {
            ch.publish("", "other-queue", Buffer.from([1]));
            await ch.checkExchange("rpc");
          }],
        ] as const
      ) {
        const ch = await conn.createChannel();
        ch.on("error", () => {});
        let refused = "";
        await Promise.resolve(op(ch)).catch((e: Error) => refused = e.message);
        assertIncludes(refused, "ACCESS_REFUSED", `${what} must be refused`);
      }
    } finally {
      await conn.close().catch(() => {});
    }
  });
});

Deno.test("wrong TLS inputs to the broker fail with their own error, without a password", async () => {
  await withTlsBroker(async (s) => {
    const client = await s.certs.client("moat-host");
    const mutual = `amqps://${s.user}@127.0.0.1:${s.tunnel.mutualPort}/${s.vhost}`;
    const cases: { what: string; env: Record<string, string>; code: number; error: string }[] = [
      {
        what: "the wrong CA",
        env: { MOAT_AMQP_CACERT: s.certs.otherCa },
        code: 1,
        error: `error: TLS handshake with the AMQP broker at ${s.env.MOAT_AMQP} failed:`,
      },
      {
        what: "no client certificate where one is wanted",
        env: { MOAT_AMQP: mutual },
        code: 1,
        error: `error: TLS handshake with the AMQP broker at ${mutual} failed:`,
      },
      {
        what: "a wrong password",
        env: { MOAT_AMQP_PASSWORD: "wrong-password" },
        code: 1,
        error: `error: AMQP broker at ${s.env.MOAT_AMQP} is not reachable:`,
      },
      {
        what: "TLS files with an amqp:// URL",
        env: { MOAT_AMQP: `amqp://${s.user}@127.0.0.1:5672/${s.vhost}` },
        code: 2,
        error: "error: --amqp-cacert, --amqp-cert and --amqp-key need an amqps:// broker URL",
      },
      {
        what: "a certificate without its key",
        env: { MOAT_AMQP_CERT: client.cert },
        code: 2,
        error: "error: --amqp-cert needs --amqp-key too",
      },
    ];
    for (const c of cases) {
      const t0 = Date.now();
      const r = await runMoat(["alert", "tls.test"], { env: { ...s.env, ...c.env } });
      const ms = Date.now() - t0;
      assertEquals(r.code, c.code, `${c.what}: ${r.stderr}`);
      assertIncludes(r.stderr, c.error, c.what);
      assertEquals(errorLines(r).length, 1, `${c.what}: one line: ${r.stderr}`);
      assert(ms < FAIL_WITHIN_MS, `${c.what}: took ${ms} ms`);
      assert(!r.stderr.includes(s.password), `${c.what}: the password was printed`);
      assert(!r.stderr.includes("wrong-password"), `${c.what}: the password was printed`);
    }
    // With the client certificate the service that wants one lets it in.
    const ok = await runMoat([
      "alert",
      "tls.test",
      "--amqp-cert",
      client.cert,
      "--amqp-key",
      client.key,
    ], {
      env: { ...s.env, MOAT_AMQP: mutual },
    });
    assertEquals(ok.code, 0, ok.stderr);
  });
});
