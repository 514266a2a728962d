/**
 * `moat time` and `moat script try` work in the installation's zone:
 * `/config/timezone` in etcd when etcd answers, `--tz` over it, the
 * machine's zone (quietly) without etcd. The CLI as a user runs it, against
 * a private etcd.
 */

import { assert, assertEquals, assertIncludes } from "../_util/assert.ts";
import { runMoat } from "../_util/cli.ts";
import { etcdctl, freePorts, startEtcd } from "../_util/etcd_server.ts";

const HELLO = new URL("../../examples/hello.ts", import.meta.url).pathname;
const MACHINE = new Intl.DateTimeFormat().resolvedOptions().timeZone;

Deno.test("moat time and moat script try use /config/timezone from etcd, and --tz over it", async () => {
  const etcd = await startEtcd();
  try {
    await etcdctl(etcd.endpoint, "put", "/moat/config/timezone", "Asia/Tokyo");
    const env = { MOAT_ETCD: etcd.endpoint };

    const time = await runMoat(["time", "12", "hr", "--now", "1772409600"], { env });
    assertEquals(time.code, 0, time.stderr);
    assertEquals(time.stdout, "2026-03-02T12:00:00+09:00  1772420400\n");
    assertEquals(time.stderr, "note: zone Asia/Tokyo (from /moat/config/timezone)\n");

    const given = await runMoat(["time", "12", "hr", "--now", "1772409600", "--tz", "UTC"], {
      env,
    });
    assertEquals(given.code, 0, given.stderr);
    assertEquals(given.stdout, "2026-03-02T12:00:00+00:00  1772452800\n");
    assertEquals(given.stderr, "");

    const tried = await runMoat(["script", "try", HELLO, "--at", "1772409600", "--for", "1h"], {
      env,
    });
    assertEquals(tried.code, 0, tried.stderr);
    assert(
      tried.stdout.startsWith(
        `2026-03-02T09:00:00+09:00 try   ${HELLO} as task try/hello, ` +
          "zone Asia/Tokyo (from /moat/config/timezone), until 2026-03-02T10:00:00+09:00\n",
      ),
      tried.stdout,
    );

    const triedTz = await runMoat(
      ["script", "try", HELLO, "--at", "1772409600", "--for", "1h", "--tz", "UTC"],
      { env },
    );
    assertEquals(triedTz.code, 0, triedTz.stderr);
    assertIncludes(triedTz.stdout, "as task try/hello, zone UTC, until 2026-03-02T01:00:00+00:00");
  } finally {
    await etcd.stop();
  }
});

Deno.test("without etcd, moat time and moat script try use the machine's zone quietly", async () => {
  // A loopback port nobody listens on.
  const [port] = freePorts(1);
  const env = { MOAT_ETCD: `http://127.0.0.1:${port}` };

  const time = await runMoat(["time", "12", "hr", "--now", "1772409600", "--json"], { env });
  assertEquals(time.code, 0, time.stderr);
  assertEquals(JSON.parse(time.stdout).zone, MACHINE);
  assertEquals(time.stderr, `note: zone ${MACHINE} (the machine's zone)\n`);

  const tried = await runMoat(["script", "try", HELLO, "--at", "1772409600", "--for", "1h"], {
    env,
  });
  assertEquals(tried.code, 0, tried.stderr);
  assertIncludes(tried.stdout, `zone ${MACHINE} (the machine's zone), until `);
  assert(!tried.stderr.includes("error"), tried.stderr);
});

Deno.test("moat time without a spec exits 2 with a usage error", async () => {
  const r = await runMoat(["time", "--tz", "UTC"]);
  assertEquals(r.code, 2, r.stderr);
  assertIncludes(r.stderr, "error: moat time needs a time specification");
  assertEquals(r.stdout, "");
});
