/**
 * End to end: the real `moat` CLI against a real etcd. Define a script, add
 * tasks, run hosts, check every status key; two hosts share one task tree;
 * failover after kill -9; clean shutdown on SIGTERM; etcd restarting under
 * a running host.
 */

import { assert, assertEquals, assertIncludes } from "../_util/assert.ts";
import { etcdctl, startEtcd } from "../_util/etcd_server.ts";
import { MOAT_RUN_ARGS, runMoat, spawnMoat, waitForLineIn } from "../_util/cli.ts";
import { waitForKey } from "../_util/store_wait.ts";
import { withTimeout } from "../_util/wait.ts";
import { EtcdStore } from "../../host/store/etcd_store.ts";

const ENDS = 'moat.setup();\nmoat.logger.info("hello", 40 + 2);\nmoat.end();\n';
const THROWS =
  'moat.setup();\nmoat.run(async () => { await Promise.reject(new TypeError("nope")); });\n';
const NO_SETUP = 'moat.logger.info("x");\n';
const RUN_TWICE = "moat.setup();\nmoat.run(() => {});\nmoat.run(() => {});\n";
const STAYS = 'moat.setup();\nmoat.on_stop(() => moat.logger.info("on_stop ran"));\n' +
  'moat.on_start(() => moat.logger.info("up"));\n';

async function withEtcd(
  fn: (ctx: {
    endpoint: string;
    store: EtcdStore;
    env: Record<string, string>;
    file: (name: string, code: string) => Promise<string>;
    restart: () => Promise<void>;
  }) => Promise<void>,
) {
  const etcd = await startEtcd();
  const store = new EtcdStore({ endpoints: [etcd.endpoint] });
  const dir = await Deno.makeTempDir({ prefix: "moat-e2e-" });
  try {
    await fn({
      endpoint: etcd.endpoint,
      store,
      env: { MOAT_ETCD: etcd.endpoint, MOAT_HOST: "e2e", MOAT_AMQP: "none" },
      file: async (name, code) => {
        const p = `${dir}/${name}.ts`;
        await Deno.writeTextFile(p, code);
        return p;
      },
      restart: () => etcd.restart(),
    });
  } finally {
    await store.close();
    await Deno.remove(dir, { recursive: true });
    await etcd.stop();
  }
}

const st = (path: string, key: string) => `/moat/status/run/${path}/:task/${key}`;

Deno.test("moat run --once runs every task and writes every status key", async () => {
  await withEtcd(async ({ store, env, file, endpoint }) => {
    const moat = (...a: string[]) => runMoat(a, { env });
    const scripts: [string, string][] = [
      ["ends", ENDS],
      ["throws", THROWS],
      ["nosetup", NO_SETUP],
      ["runtwice", RUN_TWICE],
    ];
    for (const [n, code] of scripts) {
      assertEquals((await moat("script", "def", "add", n, await file(n, code))).code, 0);
      assertEquals((await moat("script", "add", n, `e2e/${n}`)).code, 0);
    }
    const r = await moat("run", "--once");
    assertEquals(r.code, 1, "some tasks failed, so --once exits 1");
    assertIncludes(r.stderr, "[e2e/ends] hello 42");
    const state = async (p: string) => (await store.get(st(p, "state")))?.value;
    const message = async (p: string) => (await store.get(st(p, "message")))?.value ?? "";
    assertEquals(await state("e2e/ends"), "ok");
    assertEquals(await state("e2e/throws"), "error");
    assertIncludes(await message("e2e/throws"), "nope");
    assertIncludes((await store.get(st("e2e/throws", "debug")))?.value ?? "", "TypeError");
    assertEquals(await state("e2e/nosetup"), "error");
    assertIncludes(await message("e2e/nosetup"), "setup");
    assertEquals(await state("e2e/runtwice"), "error");
    assertIncludes(await message("e2e/runtwice"), "run");
    for (const [n] of scripts) {
      assertEquals(await store.get(st(`e2e/${n}`, "running")), undefined);
      const started = Number((await store.get(st(`e2e/${n}`, "started")))?.value);
      const stopped = Number((await store.get(st(`e2e/${n}`, "stopped")))?.value);
      assert(started > 1e9 && stopped >= started, `${n}: ${started} ${stopped}`);
    }
    // Leases are revoked, not left to expire.
    const leases = await etcdctl(endpoint, "lease", "list");
    assert(!/[0-9a-f]{16}/.test(leases), leases);
    // etcdctl sees the same readable text.
    assertEquals(
      (await etcdctl(endpoint, "get", st("e2e/ends", "state"), "--print-value-only")).trim(),
      "ok",
    );

    const s = await moat("status");
    assertEquals(s.code, 0, s.stderr);
    const lines = s.stdout.trim().split("\n");
    assert(lines[0]!.startsWith("PATH"), s.stdout);
    assert(lines.some((l) => /^e2e\/ends\s+ok\s/.test(l)), s.stdout);
    assert(lines.some((l) => /^e2e\/throws\s+error\s.*nope/.test(l)), s.stdout);
    const j = JSON.parse((await moat("status", "e2e/ends", "--json")).stdout);
    assertEquals(j.length, 1);
    assertEquals(j[0].state, "ok");

    // Failed runs leave a "job" error record; good ones none.
    const e = await moat("errors", "e2e");
    assertEquals(e.code, 0, e.stderr);
    assert(/^e2e\/throws\s+job\s+1\s+\S+\s+nope/m.test(e.stdout), e.stdout);
    assert(!e.stdout.includes("e2e/ends"), e.stdout);
    const ej = JSON.parse((await moat("errors", "e2e/nosetup", "--json")).stdout);
    assertEquals(ej.map((r: { tag: string }) => r.tag), ["job"]);
  });
});

// How fast: host.shutdown_sigterm in deno task bench.
Deno.test("SIGTERM stops every script cleanly: on_stop, status, leases", async () => {
  await withEtcd(async ({ store, env, file, endpoint }) => {
    const moat = (...a: string[]) => runMoat(a, { env });
    assertEquals((await moat("script", "def", "add", "stays", await file("stays", STAYS))).code, 0);
    for (const n of ["a", "b"]) {
      assertEquals((await moat("script", "add", "stays", `e2e/${n}`)).code, 0);
    }
    const host = spawnMoat(["run"], { env });
    try {
      for (const n of ["a", "b"]) {
        await host.waitForLine((l) => l.includes(`[e2e/${n}] up`), 60_000, `${n} up`);
      }
      for (const n of ["a", "b"]) {
        assert((await store.get(st(`e2e/${n}`, "running"))) !== undefined);
      }
      host.kill("SIGTERM");
      const status = await withTimeout(host.status, 60_000, "the host to stop");
      assertEquals(status.code, 0, host.lines.join("\n"));
      for (const n of ["a", "b"]) {
        assert(host.lines.some((l) => l.includes(`[e2e/${n}] on_stop ran`)), host.lines.join("\n"));
        assertEquals(await store.get(st(`e2e/${n}`, "running")), undefined);
        assertEquals((await store.get(st(`e2e/${n}`, "state")))?.value, "ok");
      }
      assert(!/[0-9a-f]{16}/.test(await etcdctl(endpoint, "lease", "list")));
    } finally {
      host.kill("SIGKILL");
      await host.status;
    }
  });
});

// How fast the failover is: host.failover_after_kill in deno task bench.
Deno.test("two hosts share a task tree: one runner per task, failover after kill -9", async () => {
  await withEtcd(async ({ store, env, file }) => {
    const moat = (...a: string[]) => runMoat(a, { env });
    // A ttl that a live host renews however busy the machine is; the
    // survivor takes over once it runs out.
    await store.put("/moat/config/run/ttl", "10");
    assertEquals((await moat("script", "def", "add", "stays", await file("stays", STAYS))).code, 0);
    const names = ["a", "b", "c", "d"];
    for (const n of names) assertEquals((await moat("script", "add", "stays", `e2e/${n}`)).code, 0);
    const h1 = spawnMoat(["run"], { env });
    const h2 = spawnMoat(["run"], { env });
    try {
      const holder = async (n: string) =>
        JSON.parse((await store.get(st(`e2e/${n}`, "running")))?.value ?? "{}").pid as number;
      for (const n of names) {
        await waitForKey(store, st(`e2e/${n}`, "running"), (v) => v !== undefined, 60_000);
      }
      for (const n of names) {
        const up = (l: string) => l.includes(`[e2e/${n}] up`);
        await waitForLineIn([h1, h2], up, 60_000, `${n} up`);
      }
      const ups = () => [...h1.lines, ...h2.lines].filter((l) => / up$/.test(l)).length;
      assertEquals(ups(), names.length, "each task runs on exactly one host");
      const before = new Map<string, number>();
      for (const n of names) before.set(n, await holder(n));
      // Kill the host running task a; all its tasks move to the other host.
      const victim = before.get("a") === h1.pid ? h1 : h2;
      const survivor = victim === h1 ? h2 : h1;
      const moved = names.filter((n) => before.get(n) === victim.pid);
      victim.kill("SIGKILL");
      await victim.status;
      for (const n of moved) {
        await waitForKey(
          store,
          st(`e2e/${n}`, "running"),
          (v) => v !== undefined && v.includes(`"pid":${survivor.pid}`),
          60_000,
        );
      }
      for (const n of names) assertEquals(await holder(n), survivor.pid);
    } finally {
      for (const h of [h1, h2]) {
        h.kill("SIGTERM");
        await h.status;
      }
    }
  });
});

Deno.test("a running host survives an etcd restart without running a task twice", async () => {
  await withEtcd(async ({ store, env, file, restart }) => {
    const moat = (...a: string[]) => runMoat(a, { env });
    // A ttl far longer than any restart, however slow the machine.
    await store.put("/moat/config/run/ttl", "300");
    assertEquals((await moat("script", "def", "add", "stays", await file("stays", STAYS))).code, 0);
    assertEquals((await moat("script", "add", "stays", "e2e/a")).code, 0);
    const host = spawnMoat(["run"], { env });
    try {
      await host.waitForLine((l) => l.includes("[e2e/a] up"), 60_000, "up");
      const token = (await store.get(st("e2e/a", "running")))?.value;
      await restart();
      // The lease survives the restart: same runner, no second start.
      assertEquals((await store.get(st("e2e/a", "running")))?.value, token);
      assertEquals(host.lines.filter((l) => l.includes("[e2e/a] up")).length, 1);
      // And the host still follows the tree through the restarted etcd.
      assertEquals((await moat("script", "add", "stays", "e2e/b")).code, 0);
      await host.waitForLine((l) => l.includes("[e2e/b] up"), 60_000, "b up after the restart");
      assertEquals(host.lines.filter((l) => l.includes("[e2e/a] up")).length, 1);
    } finally {
      host.kill("SIGTERM");
      await host.status;
    }
  });
});

Deno.test("a lost lease stops the script at once; a dead host's run reads crash", async () => {
  await withEtcd(async ({ store, env, file, endpoint }) => {
    const moat = (...a: string[]) => runMoat(a, { env });
    // Long enough that a live host keeps its lease on a busy machine; the
    // dead host's lease runs out within the bounded wait below.
    await store.put("/moat/config/run/ttl", "10");
    await store.put("/moat/config/run/retry", "0.2");
    assertEquals((await moat("script", "def", "add", "stays", await file("stays", STAYS))).code, 0);
    assertEquals((await moat("script", "add", "stays", "e2e/a")).code, 0);
    const host = spawnMoat(["run"], { env });
    try {
      await host.waitForLine((l) => l.includes("[e2e/a] up"), 60_000, "up");
      // Revoke the lease behind the host's back, as an etcd partition would.
      // `etcdctl lease list` prints "found 1 leases" and then one id per line.
      const list = (await etcdctl(endpoint, "lease", "list")).trim().split("\n");
      assertEquals(list.length, 2, list.join("\n"));
      const id = list[1]!.trim();
      await etcdctl(endpoint, "lease", "revoke", id);
      await host.waitForLine(
        (l) => l.includes("[e2e/a] ended: fail: lease lost"),
        60_000,
        "lease lost",
      );
      assert(
        !host.lines.some((l) => l.includes("[e2e/a] on_stop ran")),
        "no on_stop after a lost lease",
      );
      // It is retried, and runs again.
      const ups = () => host.lines.filter((x) => x.includes("[e2e/a] up")).length;
      await host.waitForLine(() => ups() >= 2, 60_000, "up again");
      // Now the host dies: its run is neither running nor stopped.
      host.kill("SIGKILL");
      await host.status;
      await waitForKey(store, st("e2e/a", "running"), (v) => v === undefined, 60_000);
      const s = await moat("status", "e2e");
      assert(/^e2e\/a\s+crash\s/m.test(s.stdout), s.stdout);
    } finally {
      host.kill("SIGKILL");
      await host.status;
    }
  });
});

Deno.test("a quiet host gives V8's unused heap back and logs it at --log-level debug", async () => {
  await withEtcd(async ({ env, file }) => {
    const moat = (...a: string[]) => runMoat(a, { env });
    assertEquals((await moat("script", "def", "add", "stays", await file("stays", STAYS))).code, 0);
    assertEquals((await moat("script", "add", "stays", "e2e/a")).code, 0);
    const host = spawnMoat(["run", "--log-level", "debug"], { env });
    try {
      await host.waitForLine((l) => l.includes("[e2e/a] up"), 60_000, "a up");
      // The first check after the start only sees the start; the next quiet one collects.
      const line = await host.waitForLine(
        (l) => l.includes("[host] memory: heap"),
        60_000,
        "a memory collection",
      );
      const m = /heap ([\d.]+) -> ([\d.]+) MiB used, ([\d.]+) -> ([\d.]+) MiB held, in \d+ ms$/
        .exec(line);
      assert(m, line);
      const [usedBefore, usedAfter, heldBefore, heldAfter] = m.slice(1).map(Number) as [
        number,
        number,
        number,
        number,
      ];
      assert(usedAfter <= usedBefore && heldAfter <= heldBefore, line);
      assert(usedAfter <= heldAfter, line);
    } finally {
      host.kill("SIGTERM");
      await host.status;
    }
  });
});

Deno.test("moat run stops a spinning script by its CPU budget, not only by the heartbeat", async () => {
  await withEtcd(async ({ store, env, file }) => {
    const moat = (...a: string[]) => runMoat(a, { env });
    const spin = "moat.setup();\nmoat.on_start(() => { for (;;) { /* spin */ } });\n";
    assertEquals((await moat("script", "def", "add", "spin", await file("spin", spin))).code, 0);
    assertEquals((await moat("script", "add", "spin", "e2e/spin")).code, 0);
    // Half a second of CPU in a window so long that it counts however slowly
    // the machine hands it out; the heartbeat, which would end it too with
    // another message, far out of reach: this proves the host reads its
    // sandboxes' CPU time from /proc.
    await store.put("/moat/task/e2e/spin/:task/cpu", "0.5");
    await store.put("/moat/task/e2e/spin/:task/cpu_window", "3600");
    await store.put("/moat/task/e2e/spin/:task/heartbeat", "3600");
    const host = spawnMoat(["run"], { env });
    try {
      const message = await waitForKey(
        store,
        st("e2e/spin", "message"),
        (v) => v !== undefined && v !== "",
        120_000,
      );
      assert(message?.startsWith("CPU budget exceeded"), `${message}\n${host.lines.join("\n")}`);
    } finally {
      host.kill("SIGTERM");
      await host.status;
    }
  });
});

Deno.test("moat run refuses to start without access to /proc, where it watches its sandboxes", async () => {
  const narrow = ["--allow-net", "--allow-env", "--allow-sys", "--allow-read", "--allow-write"];
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", ...narrow, "--allow-run", MOAT_RUN_ARGS.at(-1)!, "run"],
    env: { NO_COLOR: "1", MOAT_ETCD: "http://127.0.0.1:1", MOAT_AMQP: "none" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(out.stderr);
  assertEquals(out.code, 1, stderr);
  assertIncludes(
    stderr,
    "error: Cannot run sandboxes: the host watches their CPU time and memory in /proc",
  );
  assertIncludes(stderr, "--allow-all");
  assert(!stderr.includes("Stack backtrace") && !stderr.includes("    at "), stderr);
});
