/**
 * `moat log` as a user runs it, over the real RabbitMQ: lines of tasks on
 * two hosts merged by time, across a task's restart and a move to another
 * process of its host, with and without --follow; escaped control
 * characters; --json; and a clear error without a broker.
 */

import { assert, assertEquals, assertIncludes } from "../_util/assert.ts";
import { startEtcd } from "../_util/etcd_server.ts";
import { errorLines, type MoatProcess, runMoat } from "../_util/cli.ts";
import { startMoatServices } from "../_util/moat_services.ts";

const HANG_MS = 60_000;

// Logs markup and a terminal escape on start, and whatever `t.say` carries.
const TALKER = `moat.setup();
moat.on_alert("t.say")((_topic, data) => moat.logger.info("said", data));
moat.on_start(() => moat.logger.warn("hello <script>x</script> \\x1b[31mred"));
`;

function count(p: MoatProcess, part: string): number {
  return p.lines.filter((l) => l.includes(part)).length;
}

Deno.test("moat log shows task lines from two hosts across a restart and a move, and follows them", async () => {
  const services = await startMoatServices("moat-log-");
  const { dir, spawn } = services;
  const env = services.env("cli");
  const moat = (...a: string[]) => runMoat(a, { env });
  try {
    await Deno.writeTextFile(`${dir}/talker.js`, TALKER);
    assertEquals((await moat("script", "def", "add", "talker", `${dir}/talker.js`)).code, 0);
    // ttl 10: the move below waits for h1's first process's lease to end.
    for (const t of ["h1/a", "h2/b"]) {
      const r = await moat("script", "add", "talker", t);
      assertEquals(r.code, 0, r.stderr);
    }
    assertEquals((await moat("script", "config", "h1/a", "ttl=10")).code, 0);
    const h1 = spawn("h1", "run");
    const h2 = spawn("h2", "run");
    await h1.waitForLine((l) => l.includes("[h1/a] hello"), HANG_MS, "h1/a says hello");
    await h2.waitForLine((l) => l.includes("[h2/b] hello"), HANG_MS, "h2/b says hello");

    // Every task, merged by time; markup and escapes as text.
    const all = await moat("log");
    assertEquals(all.code, 0, all.stderr);
    const lines = all.stdout.trim().split("\n");
    const a = lines.find((l) => l.includes("[h1/a] hello"));
    const b = lines.find((l) => l.includes("[h2/b] hello"));
    assert(a !== undefined && b !== undefined, all.stdout);
    assert(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z WARN {2}\[h1\/a\] /.test(a), a);
    assertIncludes(a, "hello <script>x</script> \\x1b[31mred");
    assert(!all.stdout.includes("\x1b"), "a raw escape reached the terminal");
    const times = lines.map((l) => l.slice(0, 24));
    assertEquals(times, [...times].sort(), "lines are merged by time");

    // A restart: the lines of both runs.
    assertEquals((await moat("script", "config", "h1/a", "ttl=11")).code, 0);
    await h1.waitForLine(
      () => count(h1, "[h1/a] hello") >= 2,
      HANG_MS,
      "h1/a says hello again after its restart",
    );
    const one = await moat("log", "h1/a", "--lines", "100");
    assertEquals(one.code, 0, one.stderr);
    assertEquals(one.stdout.split("\n").filter((l) => l.includes("[h1/a] hello")).length, 2);
    assertEquals(one.stdout.split("\n").filter((l) => l.includes("started script")).length, 2);
    assert(!one.stdout.includes("h2/b"), one.stdout);

    // --lines keeps the last N.
    const last = await moat("log", "h1/a", "--lines", "1");
    assertEquals(last.stdout.trim().split("\n").length, 1, last.stdout);

    // --json: one object per line, fields intact.
    const js = await moat("log", "h2/b", "--json");
    assertEquals(js.code, 0, js.stderr);
    const objs = js.stdout.trim().split("\n").map((l) => JSON.parse(l));
    const hello = objs.find((o) => String(o.message).startsWith("hello"));
    assertEquals(hello.task, "h2/b");
    assertEquals(hello.level, "warn");
    assertEquals(hello.host, "h2");
    assertEquals(hello.message, "hello <script>x</script> \x1b[31mred");

    // --follow: history, then lines as they come, only the task's own.
    const follow = spawn("cli", "log", "h1/a", "--follow");
    await follow.waitForLine((l) => l.startsWith("following h1/a"), HANG_MS, "following");
    assertEquals((await moat("alert", "t.say", '"live one"')).code, 0);
    await follow.waitForLine((l) => l.includes("[h1/a] said live one"), HANG_MS, "the live line");
    await h2.waitForLine((l) => l.includes("[h2/b] said live one"), HANG_MS, "h2/b's line");

    // A move: a second process of h1 takes h1/a over when the first stops
    // answering; the first keeps its lines and still answers afterwards.
    const h1b = spawn("h1", "run");
    await h1b.waitForLine((l) => l.includes("running tasks of host h1"), HANG_MS, "h1 again");
    h1.kill("SIGSTOP");
    await h1b.waitForLine((l) => l.includes("[h1/a] hello"), HANG_MS, "the takeover");
    h1.kill("SIGCONT");
    // Nothing says when the old process, unexpected now (it runs no task),
    // answers in time: ask again until it did, for a minute at most.
    const deadline = Date.now() + HANG_MS;
    let moved;
    for (;;) {
      moved = await moat("log", "h1/a", "--lines", "100");
      assertEquals(moved.code, 0, moved.stderr);
      const hellos = moved.stdout.split("\n").filter((l) => l.includes("[h1/a] hello"));
      if (hellos.length === 3) break;
      assert(hellos.length < 3 && Date.now() < deadline, moved.stdout + moved.stderr);
    }
    const pids = new Set(
      (await moat("log", "h1/a", "--lines", "100", "--json")).stdout.trim().split("\n")
        .map((l) => JSON.parse(l).pid),
    );
    assertEquals(pids.size, 2, "lines of both processes, each with its pid");
    await follow.waitForLine(
      () => count(follow, "[h1/a] hello") >= 3,
      HANG_MS,
      "the followed task's line from its new process",
    );
    follow.kill("SIGINT");
    assertEquals((await follow.status).code, 0, follow.lines.join("\n"));
    assert(!follow.lines.some((l) => l.includes("h2/b")), follow.lines.join("\n"));
    // A line comes once, though it came both as history and live.
    assertEquals(count(follow, "[h1/a] said live one"), 1, follow.lines.join("\n"));

    // Nothing below a path that holds no task.
    const none = await moat("log", "h3/zzz");
    assertEquals(none.code, 1);
    assertEquals(errorLines(none), ['error: no task at or below "h3/zzz"']);
  } finally {
    await services.stop();
  }
});

Deno.test("moat log and moat run --log-lines refuse a bad count as a usage error", async () => {
  const log = await runMoat(["log", "--lines", "0", "--amqp", "none"]);
  assertEquals(log.code, 2, log.stderr);
  assertEquals(errorLines(log), ['error: --lines must be a positive whole number, not "0"']);
  const run = await runMoat(["run", "--log-lines", "x", "--amqp", "none"]);
  assertEquals(run.code, 2, run.stderr);
  assertEquals(errorLines(run), ['error: --log-lines must be a positive whole number, not "x"']);
});

Deno.test("moat log without a broker says so", async () => {
  const etcd = await startEtcd();
  try {
    const none = await runMoat(["log", "--amqp", "none"], { env: { MOAT_ETCD: etcd.endpoint } });
    assertEquals(none.code, 1);
    assertIncludes(none.stderr, "moat log reads the task logs over the broker");
    const [port] = [await freePort()];
    const away = await runMoat(["log", "--amqp", `amqp://guest:guest@127.0.0.1:${port}`], {
      env: { MOAT_ETCD: etcd.endpoint },
    });
    assertEquals(away.code, 1, away.stderr);
    assert(/^error: .*/.test(away.stderr.trim()), away.stderr);
  } finally {
    await etcd.stop();
  }
});

async function freePort(): Promise<number> {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  await Promise.resolve();
  return port;
}
