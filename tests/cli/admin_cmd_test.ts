/**
 * `moat admin roles`, run as a user runs it: what it prints, where the
 * hosts come from, and its usage errors. (Applying the roles to an etcd
 * with authentication is in tests/e2e/secure_etcd_test.ts.)
 */

import { assert, assertEquals, assertIncludes } from "../_util/assert.ts";
import { runMoat } from "../_util/cli.ts";
import { etcdctl, startEtcd } from "../_util/etcd_server.ts";

Deno.test("moat admin roles prints etcdctl commands of every role from the layout", async () => {
  // Hosts given: nothing is read from etcd (none listens there).
  const r = await runMoat(["--etcd", "http://127.0.0.1:1", "admin", "roles", "kitchen", "cellar"]);
  assertEquals(r.code, 0, r.stderr);
  assertEquals(r.stderr, "");
  const lines = r.stdout.trim().split("\n");
  assertEquals(lines[0], "# etcd roles for the tree at /moat (hosts: kitchen, cellar)");
  const commands = lines.filter((l) => !l.startsWith("#"));
  assertEquals(commands, [
    "etcdctl role add moat-admin",
    "etcdctl role grant-permission moat-admin --prefix=true readwrite /moat/",
    "etcdctl role add moat-reader",
    "etcdctl role grant-permission moat-reader --prefix=true read /moat/",
    "etcdctl role add moat-host-kitchen",
    "etcdctl role grant-permission moat-host-kitchen --prefix=true read /moat/",
    "etcdctl role grant-permission moat-host-kitchen --prefix=true readwrite /moat/task/kitchen/",
    "etcdctl role grant-permission moat-host-kitchen --prefix=true readwrite /moat/status/run/kitchen/",
    "etcdctl role grant-permission moat-host-kitchen --prefix=true readwrite /moat/status/errors/",
    "etcdctl role grant-permission moat-host-kitchen --prefix=true readwrite /moat/status/rpc/",
    "etcdctl role add moat-host-cellar",
    "etcdctl role grant-permission moat-host-cellar --prefix=true read /moat/",
    "etcdctl role grant-permission moat-host-cellar --prefix=true readwrite /moat/task/cellar/",
    "etcdctl role grant-permission moat-host-cellar --prefix=true readwrite /moat/status/run/cellar/",
    "etcdctl role grant-permission moat-host-cellar --prefix=true readwrite /moat/status/errors/",
    "etcdctl role grant-permission moat-host-cellar --prefix=true readwrite /moat/status/rpc/",
  ]);
  // No role may write config or scripts.
  assert(!r.stdout.includes("/moat/config/"), r.stdout);
  assert(!r.stdout.includes("/moat/meta/"), r.stdout);
});

Deno.test("moat admin roles names roles after the root", async () => {
  const r = await runMoat([
    "--etcd",
    "http://127.0.0.1:1",
    "--root",
    "/house/moat",
    "admin",
    "roles",
    "h1",
  ]);
  assertEquals(r.code, 0, r.stderr);
  assertIncludes(r.stdout, "etcdctl role add house-moat-admin\n");
  assertIncludes(
    r.stdout,
    "etcdctl role grant-permission house-moat-host-h1 --prefix=true readwrite /house/moat/status/run/h1/\n",
  );
});

Deno.test("moat admin roles takes the hosts from the tasks in etcd", async () => {
  const etcd = await startEtcd();
  try {
    await etcdctl(etcd.endpoint, "put", "/moat/task/alpha/a/:task/taskdef", "task/script");
    await etcdctl(etcd.endpoint, "put", "/moat/task/beta/x/y/:task/taskdef", "task/script");
    const r = await runMoat(["--etcd", etcd.endpoint, "admin", "roles"]);
    assertEquals(r.code, 0, r.stderr);
    assertIncludes(r.stdout, "(hosts: alpha, beta)");
    assertIncludes(r.stdout, "etcdctl role add moat-host-alpha\n");
    assertIncludes(r.stdout, "etcdctl role add moat-host-beta\n");
    // --apply on an etcd without authentication: etcd's auth API works
    // (as the anonymous root), and a second run changes nothing.
    const a = await runMoat(["--etcd", etcd.endpoint, "admin", "roles", "--apply", "alpha"]);
    assertEquals(a.code, 0, a.stderr);
    assertIncludes(a.stdout, "added role moat-host-alpha\n");
    assertIncludes(a.stdout, "granted readwrite /moat/task/alpha/ (prefix) to moat-host-alpha\n");
    const again = await runMoat(["--etcd", etcd.endpoint, "admin", "roles", "--apply", "alpha"]);
    assertEquals(again.code, 0, again.stderr);
    assertEquals(
      again.stdout,
      "role moat-admin: unchanged\nrole moat-reader: unchanged\nrole moat-host-alpha: unchanged\n",
    );
    const perms = await etcdctl(etcd.endpoint, "role", "get", "moat-host-alpha");
    assertIncludes(perms, "/moat/status/run/alpha/");
  } finally {
    await etcd.stop();
  }
});

Deno.test("moat admin roles refuses a bad host name and shows help", async () => {
  const bad = await runMoat(["--etcd", "http://127.0.0.1:1", "admin", "roles", "a/b"]);
  assertEquals(bad.code, 2);
  assertEquals(bad.stdout, "");
  assertEquals(
    bad.stderr,
    'error: "a/b" is not a valid host name\nTry "moat admin roles --help" for more information.\n',
  );
  const help = await runMoat(["admin", "--help"]);
  assertEquals(help.code, 0);
  assertIncludes(
    help.stdout,
    "roles  print (or create) the etcd roles of a least-privilege install",
  );
  const top = await runMoat(["--help"]);
  assertIncludes(top.stdout, "--etcd-cacert FILE");
  assertIncludes(top.stdout, "--amqp-cacert FILE");
});
