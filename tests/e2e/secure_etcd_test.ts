/**
 * End to end on a secured etcd: TLS with client certificates
 * (`--client-cert-auth`), authentication, and the least-privilege roles of
 * `moat admin roles --apply`. The CLI, a host and its task work with the
 * right files and user; every wrong input fails with its own one-line error
 * in bounded time; a host's user cannot write what is not its own; auth
 * tokens that expire (or die with an etcd restart) are renewed.
 */

import { assert, assertEquals, assertIncludes } from "../_util/assert.ts";
import { type SecureEtcd, startSecureEtcd } from "../_util/secure_etcd.ts";
import { errorLines, runMoat, spawnMoat } from "../_util/cli.ts";
import type { CertFiles } from "../_util/tls_certs.ts";

/** Every wrong input must fail well within this (the CLI's etcd deadline is 5 s). */
/**
 * A refused start ends by itself: this bound only catches one that hangs
 * or retries without end, not a slow machine.
 */
const FAIL_WITHIN_MS = 60_000;

const SCRIPT = `moat.setup();
moat.rpc("secure.echo")((args) => args);
moat.run(async () => {
  await moat.data.set("count", 1);
  // Idle for longer than etcd's --auth-token-ttl: the host's token expires.
  // (The wait also lets the host finish registering secure.echo.)
  const now = await moat.time_at([], { current: true });
  await moat.wait({ now: Math.floor(now) + 3 });
  const reply = await moat.call("secure.echo", { x: 1 }, { timeout: 5 });
  await moat.set_error("probe", "an error record from a host with its own role");
  await moat.data.set("count", 2);
  moat.logger.info("secure run done", JSON.stringify(reply));
  moat.end();
});
`;

const STAYS = `moat.setup();
moat.on_start(async () => {
  await moat.data.set("count", 7);
  moat.logger.info("stays up");
});
`;

interface Setup {
  etcd: SecureEtcd;
  dir: string;
  /** Environment of the admin: everything through MOAT_ETCD_* variables. */
  adminEnv: Record<string, string>;
  /** Global options of host h1: files and user as flags, password in a file. */
  h1Args: string[];
  h1Cert: CertFiles;
  passwords: { admin: string; h1: string; h2: string; reader: string };
  file(name: string, text: string): Promise<string>;
}

async function withSecureEtcd(fn: (s: Setup) => Promise<void>): Promise<void> {
  const etcd = await startSecureEtcd({ authTokenTtl: 2 });
  const dir = await Deno.makeTempDir({ prefix: "moat-secure-e2e-" });
  try {
    const passwords = {
      admin: "adm-" + crypto.randomUUID(),
      h1: "h1-" + crypto.randomUUID(),
      h2: "h2-" + crypto.randomUUID(),
      reader: "rd-" + crypto.randomUUID(),
    };
    const adminCert = await etcd.certs.client("moat-admin");
    const h1Cert = await etcd.certs.client("moat-host-h1");
    const file = async (name: string, text: string) => {
      const p = `${dir}/${name}`;
      await Deno.writeTextFile(p, text);
      return p;
    };
    const h1PasswordFile = await file("h1.password", passwords.h1 + "\n");
    await fn({
      etcd,
      dir,
      passwords,
      h1Cert,
      file,
      adminEnv: {
        MOAT_ETCD: etcd.endpoint,
        MOAT_ETCD_CACERT: etcd.certs.ca,
        MOAT_ETCD_CERT: adminCert.cert,
        MOAT_ETCD_KEY: adminCert.key,
        MOAT_ETCD_USER: "moat-admin",
        MOAT_ETCD_PASSWORD: passwords.admin,
        MOAT_AMQP: "none",
      },
      h1Args: [
        "--etcd",
        etcd.endpoint,
        "--etcd-cacert",
        etcd.certs.ca,
        "--etcd-cert",
        h1Cert.cert,
        "--etcd-key",
        h1Cert.key,
        "--etcd-user",
        "moat-host-h1",
        "--etcd-password-file",
        h1PasswordFile,
        "--amqp",
        "none",
      ],
    });
  } finally {
    await etcd.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

/** Run `moat admin roles --apply h1 h2` as etcd's root (its certificate and password). */
function applyRolesAsRoot(s: Setup) {
  return runMoat([
    "--etcd",
    s.etcd.endpoint,
    "--etcd-cacert",
    s.etcd.certs.ca,
    "--etcd-cert",
    s.etcd.rootCert.cert,
    "--etcd-key",
    s.etcd.rootCert.key,
    "--etcd-user",
    "root",
    "admin",
    "roles",
    "--apply",
    "h1",
    "h2",
  ], { env: { MOAT_ETCD_PASSWORD: s.etcd.rootPassword } });
}

/** Apply the roles as etcd's root and create one user per role. */
async function install(s: Setup): Promise<void> {
  const root = await applyRolesAsRoot(s);
  assertEquals(root.code, 0, root.stderr);
  assertIncludes(root.stdout, "added role moat-host-h1");
  assertIncludes(root.stdout, "granted readwrite /moat/status/run/h1/ (prefix) to moat-host-h1");
  await s.etcd.addUser("moat-admin", s.passwords.admin, ["moat-admin"]);
  await s.etcd.addUser("moat-host-h1", s.passwords.h1, ["moat-host-h1"]);
  await s.etcd.addUser("moat-host-h2", s.passwords.h2, ["moat-host-h2"]);
  await s.etcd.addUser("moat-reader", s.passwords.reader, ["moat-reader"]);
}

Deno.test("moat admin roles --apply is idempotent and needs etcd's root", async () => {
  await withSecureEtcd(async (s) => {
    await install(s);
    const again = await applyRolesAsRoot(s);
    assertEquals(again.code, 0, again.stderr);
    assertIncludes(again.stdout, "role moat-host-h1: unchanged");
    assert(!again.stdout.includes("granted"), again.stdout);
    // The admin role may write the tree, not etcd's users and roles.
    const admin = await runMoat(["admin", "roles", "--apply", "h3"], { env: s.adminEnv });
    assertEquals(admin.code, 1, admin.stdout + admin.stderr);
    assertIncludes(admin.stderr, 'error: etcd refused to add role "moat-admin"');
    assertIncludes(admin.stderr, 'permission denied for user "moat-admin"');
  });
});

Deno.test("the CLI, a host and a task work through TLS and auth with a host's own role", async () => {
  await withSecureEtcd(async (s) => {
    await install(s);
    const admin = (...a: string[]) => runMoat(a, { env: s.adminEnv });
    const code = await s.file("secure.ts", SCRIPT);
    let r = await admin("script", "def", "add", "secure", code, "a script");
    assertEquals(r.code, 0, r.stderr);
    r = await admin("script", "add", "secure", "h1/sec", "count=0");
    assertEquals(r.code, 0, r.stderr);
    r = await admin("script", "add", "secure", "h2/other", "count=0");
    assertEquals(r.code, 0, r.stderr);

    // The host with its own role, a password file and a secret in its
    // environment that must not reach the sandbox.
    const run = await runMoat([...s.h1Args, "--host", "h1", "run", "--once"], {
      env: { MOAT_AMQP_PASSWORD: "amqp-secret-never-seen" },
    });
    assertEquals(run.code, 0, run.stderr);
    assertIncludes(run.stderr, '[h1/sec] secure run done {"x":1}');

    const status = await runMoat([...s.h1Args, "status", "--json"]);
    assertEquals(status.code, 0, status.stderr);
    const rows = JSON.parse(status.stdout) as { path: string; state: string }[];
    assertEquals(rows.find((x) => x.path === "h1/sec")?.state, "ok");
    const data = await s.etcd.etcdctl([
      "get",
      "/moat/task/h1/sec/:task/data/count",
      "--print-value-only",
    ]);
    assertEquals(data.trim(), "2", "written after the token expired");
    const errors = await admin("errors", "h1/", "--json");
    assertEquals(errors.code, 0, errors.stderr);
    assertIncludes(errors.stdout, "an error record from a host with its own role");

    // Its own task's data: allowed; the reader reads.
    r = await runMoat([...s.h1Args, "script", "param", "h1/sec", "count=3"]);
    assertEquals(r.code, 0, r.stderr);
    const readerEnv = {
      ...s.adminEnv,
      MOAT_ETCD_USER: "moat-reader",
      MOAT_ETCD_PASSWORD: s.passwords.reader,
    };
    r = await runMoat(["status", "h2/"], { env: readerEnv });
    assertEquals(r.code, 0, r.stderr);
    // Everything that is not its own: refused, in one line. The reader writes nothing.
    const newCode = await s.file("new.ts", "moat.setup();\nmoat.end();\n");
    const refusals: {
      what: string;
      args: string[];
      env?: Record<string, string>;
      error: string;
    }[] = [
      {
        what: "h1 sets a parameter of h2's task",
        args: [...s.h1Args, "script", "param", "h2/other", "count=3"],
        error: 'permission denied for user "moat-host-h1"',
      },
      {
        what: "h1 updates a script",
        args: [...s.h1Args, "script", "def", "update", "secure", newCode],
        error: "permission denied",
      },
      {
        what: "the reader sets a parameter",
        args: ["script", "param", "h1/sec", "count=4"],
        env: readerEnv,
        error: 'permission denied for user "moat-reader"',
      },
      {
        // A client certificate alone: etcd takes its common name as the user.
        what: "h1's client certificate alone sets a parameter of h2's task",
        args: [
          "--etcd",
          s.etcd.endpoint,
          "--etcd-cacert",
          s.etcd.certs.ca,
          "--etcd-cert",
          s.h1Cert.cert,
          "--etcd-key",
          s.h1Cert.key,
          "script",
          "param",
          "h2/other",
          "count=5",
        ],
        error: "permission denied for the client certificate's user",
      },
    ];
    for (const c of refusals) {
      r = await runMoat(c.args, c.env ? { env: c.env } : {});
      assertEquals(r.code, 1, `${c.what}: ${r.stdout}${r.stderr}`);
      assertIncludes(r.stderr, c.error, c.what);
      assertEquals(errorLines(r).length, 1, `${c.what}: one line: ${r.stderr}`);
    }
    const asH1 = { user: "moat-host-h1", password: s.passwords.h1 };
    for (
      const key of [
        "/moat/status/run/h2/other/:task/state",
        "/moat/meta/script/secure/:code/code",
        "/moat/config/timezone",
        "/moat/task/h2/other/:task/data/count",
      ]
    ) {
      let refused = "";
      await s.etcd.etcdctl(["put", key, "x"], asH1).catch((e) => refused = (e as Error).message);
      assertIncludes(refused, "permission denied", `h1 must not write ${key}`);
    }
    await s.etcd.etcdctl(["put", "/moat/status/run/h1/sec/:task/probe", "x"], asH1);
  });
});

Deno.test("each wrong TLS or auth input gives its own error, in bounded time", async () => {
  await withSecureEtcd(async (s) => {
    await install(s);
    const foreign = await s.etcd.certs.foreignClient("moat-host-h1");
    const base = {
      etcd: s.etcd.endpoint,
      cacert: s.etcd.certs.ca,
      cert: s.h1Cert.cert,
      key: s.h1Cert.key,
    };
    const cases: {
      what: string;
      args: string[];
      env?: Record<string, string>;
      code: number;
      error: string;
    }[] = [
      {
        what: "the wrong CA",
        args: ["--etcd-cacert", s.etcd.certs.otherCa],
        code: 1,
        error: `error: TLS handshake with etcd at ${s.etcd.endpoint} failed:`,
      },
      {
        what: "no client certificate",
        args: ["--etcd-cert", "", "--etcd-key", ""],
        code: 1,
        error: `error: TLS handshake with etcd at ${s.etcd.endpoint} failed:`,
      },
      {
        what: "a client certificate of another CA",
        args: ["--etcd-cert", foreign.cert, "--etcd-key", foreign.key],
        code: 1,
        error: `error: TLS handshake with etcd at ${s.etcd.endpoint} failed:`,
      },
      {
        what: "a wrong password",
        args: [],
        env: { MOAT_ETCD_PASSWORD: "wrong" },
        code: 1,
        error: 'error: etcd refused user "moat-host-h1": authentication failed',
      },
      {
        what: "an unknown user",
        args: ["--etcd-user", "nobody"],
        code: 1,
        error: 'error: etcd refused user "nobody": authentication failed',
      },
      {
        what: "a missing CA file",
        args: ["--etcd-cacert", `${s.dir}/missing.crt`],
        code: 2,
        error: `error: cannot read --etcd-cacert "${s.dir}/missing.crt"`,
      },
      {
        what: "a certificate without its key",
        args: ["--etcd-key", ""],
        code: 2,
        error: "error: --etcd-cert needs --etcd-key too",
      },
      {
        what: "a user without a password",
        args: [],
        env: { MOAT_ETCD_PASSWORD: "" },
        code: 2,
        error: 'error: --etcd-user "moat-host-h1" needs a password',
      },
      {
        what: "a password on the command line",
        args: ["--etcd-user", "moat-host-h1:pass-on-cmdline"],
        code: 2,
        error: "error: --etcd-user must be a user name only",
      },
      {
        what: "TLS files with an http:// endpoint",
        args: ["--etcd", s.etcd.endpoint.replace("https:", "http:")],
        code: 2,
        error: "need https:// endpoints",
      },
    ];
    for (const c of cases) {
      const t0 = Date.now();
      const r = await runMoat([
        "--etcd",
        base.etcd,
        "--etcd-cacert",
        base.cacert,
        "--etcd-cert",
        base.cert,
        "--etcd-key",
        base.key,
        "--etcd-user",
        "moat-host-h1",
        ...c.args,
        "status",
      ], { env: { MOAT_ETCD_PASSWORD: s.passwords.h1, ...c.env } });
      const ms = Date.now() - t0;
      assertEquals(r.code, c.code, `${c.what}: ${r.stderr}`);
      assertIncludes(r.stderr, c.error, c.what);
      assertEquals(errorLines(r).length, 1, `${c.what}: one line: ${r.stderr}`);
      assert(ms < FAIL_WITHIN_MS, `${c.what}: took ${ms} ms`);
      assert(!r.stderr.includes("pass-on-cmdline"), `${c.what}: the password was printed`);
      assert(!r.stderr.includes(s.passwords.h1), `${c.what}: the password was printed`);
    }
  });
});

/** The pids of every descendant of `pid`. */
async function descendants(pid: number): Promise<number[]> {
  const parents = new Map<number, number[]>();
  for await (const e of Deno.readDir("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    try {
      const stat = await Deno.readTextFile(`/proc/${e.name}/stat`);
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      const list = parents.get(ppid) ?? [];
      list.push(Number(e.name));
      parents.set(ppid, list);
    } catch {
      // Gone meanwhile.
    }
  }
  const out: number[] = [];
  const walk = (p: number) => {
    for (const c of parents.get(p) ?? []) {
      out.push(c);
      walk(c);
    }
  };
  walk(pid);
  return out;
}

Deno.test("a host renews its token after etcd restarts and its secrets stay out of sandboxes", async () => {
  await withSecureEtcd(async (s) => {
    await install(s);
    const admin = (...a: string[]) => runMoat(a, { env: s.adminEnv });
    const code = await s.file("stays.ts", STAYS);
    assertEquals((await admin("script", "def", "add", "stays", code)).code, 0);
    assertEquals((await admin("script", "add", "stays", "h1/first", "count=0")).code, 0);
    const host = spawnMoat([...s.h1Args, "--host", "h1", "run"], {
      env: {
        MOAT_ETCD_PASSWORD: "etcd-secret-never-seen",
        MOAT_AMQP_PASSWORD: "amqp-secret-never-seen",
      },
    });
    try {
      await host.waitForLine((l) => l.includes("[h1/first] stays up"), 60_000, "the first task");
      // Nothing of the host's credentials in any sandbox process.
      const kids = await descendants(host.pid);
      assert(kids.length > 0, "the host runs its script in a child process");
      for (const pid of kids) {
        const environ = await Deno.readTextFile(`/proc/${pid}/environ`).catch(() => "");
        const cmdline = await Deno.readTextFile(`/proc/${pid}/cmdline`).catch(() => "");
        for (const secret of ["secret-never-seen", s.passwords.h1, "MOAT_ETCD", "MOAT_AMQP"]) {
          assert(!environ.includes(secret), `sandbox ${pid} has ${secret} in its environment`);
          assert(!cmdline.includes(secret), `sandbox ${pid} has ${secret} on its command line`);
        }
      }
      // etcd forgets every token when it restarts, and the host's watch
      // stream is opened again with the old one: it must get a new token.
      await s.etcd.restart();
      await new Promise((r) => setTimeout(r, 3_000)); // past --auth-token-ttl too
      assertEquals((await admin("script", "add", "stays", "h1/second", "count=0")).code, 0);
      await host.waitForLine((l) => l.includes("[h1/second] stays up"), 60_000, "the second task");
      const data = await s.etcd.etcdctl([
        "get",
        "/moat/task/h1/second/:task/data/count",
        "--print-value-only",
      ]);
      assertEquals(data.trim(), "7");
      // The stale token was replaced under the watch, without a re-read.
      assert(
        !host.lines.some((l) => l.includes("watch on /moat/ failed")),
        host.lines.join("\n"),
      );
      assertEquals(
        host.lines.filter((l) => l.includes("[h1/first] stays up")).length,
        1,
        `the first task kept running:\n${host.lines.join("\n")}`,
      );
    } finally {
      host.kill("SIGTERM");
      await host.status;
    }
  });
});
