/**
 * `moat web` end to end: etcd, RabbitMQ, two hosts with a few tasks, and the
 * page driven in a real browser (Debian's chromium through playwright-core,
 * headless). Screenshots of each view go to docs/img/.
 */

import { chromium, type Page } from "playwright-core";
import { assert, assertEquals, assertIncludes } from "../_util/assert.ts";
import { etcdctl, startEtcd } from "../_util/etcd_server.ts";
import { errorLines, type MoatProcess, runMoat, spawnMoat } from "../_util/cli.ts";
import { startMoatServices } from "../_util/moat_services.ts";

const HANG_MS = 60_000;
const CHROMIUM = "/usr/bin/chromium";
const IMG = new URL("../../docs/img/", import.meta.url).pathname;

// Runs until the alert its data's `end` names; logs markup and an escape sequence on start
// and whatever `t.say` carries.
const STEADY = `moat.setup();
moat.debug_obj({ seen: "<b>bold</b>", n: 1 });
moat.on_alert("t.say")((_topic, data) => moat.logger.info("said", data));
moat.on_alert(String(moat.data.get("end") ?? "t.never"))(() => moat.end());
moat.on_start(() => moat.logger.warn("hello <script>window.pwned = 1</script> \\x1b[31mred"));
`;

const FAULTY = `moat.setup();
moat.on_start(async () => {
  await moat.set_error("sensor", "too warm: <img src=x onerror=alert(1)>");
  moat.logger.error("sensor too warm");
});
`;

/**
 * Wait until `selector` (with `text`, when given) is in the page. Locators,
 * not predicate functions: the page's Content-Security-Policy forbids the
 * eval those need, as it should.
 */
function waitOn(page: Page, selector: string, what: string, text?: string): Promise<void> {
  const loc = page.locator(selector, text === undefined ? {} : { hasText: text }).first();
  return loc.waitFor({ timeout: HANG_MS }).catch((e) => {
    throw new Error(`waiting for ${what}: ${(e as Error).message}`);
  });
}

Deno.test("moat web shows every task live, its log, errors and the schedule preview in a browser", async () => {
  const services = await startMoatServices("moat-web-");
  const { dir, etcd, spawn } = services;
  const moat = (...a: string[]) => runMoat(a, { env: services.env("cli") });
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true });
  try {
    await etcdctl(etcd.endpoint, "put", "/moat/config/timezone", "Europe/Berlin");
    // A hidden task: the page never shows it.
    await etcdctl(etcd.endpoint, "put", "/moat/config/script/hidden", "task/h2/secret");
    await Deno.writeTextFile(`${dir}/steady.js`, STEADY);
    await Deno.writeTextFile(`${dir}/faulty.js`, FAULTY);
    assertEquals((await moat("script", "def", "add", "steady", `${dir}/steady.js`)).code, 0);
    assertEquals((await moat("script", "def", "add", "faulty", `${dir}/faulty.js`)).code, 0);
    const tasks = [
      ["steady", "h1/porch/light", "room=porch <i>"],
      ["steady", "h1/ender", "end=t.end.ender"],
      ["faulty", "h1/freezer"],
      ["steady", "h2/garden"],
      ["steady", "h2/secret"],
    ];
    for (const [s, t, ...kv] of tasks) {
      const r = await moat("script", "add", "--restart", "0", s!, t!, ...kv);
      assertEquals(r.code, 0, r.stderr);
    }
    const h1 = spawn("h1", "run");
    const h2 = spawn("h2", "run");
    await h1.waitForLine((l) => l.includes("[h1/ender] hello"), HANG_MS, "h1/ender runs");
    await h2.waitForLine((l) => l.includes("[h2/garden] hello"), HANG_MS, "h2/garden runs");
    const web = spawn("w", "web", "--listen", "127.0.0.1:0");
    const listening = await web.waitForLine(
      (l) => l.startsWith("listening on http://"),
      HANG_MS,
      "moat web listening",
    );
    const url = listening.slice("listening on ".length);

    const page = await browser.newPage({ viewport: { width: 1100, height: 800 } });
    page.on("dialog", (d) => void d.dismiss());
    await page.goto(url);
    // Every task with its state, grouped by host; the hidden one nowhere.
    for (const p of ["h1/porch/light", "h1/ender", "h2/garden"]) {
      await waitOn(page, `tr[data-path="${p}"] .state[data-state="run"]`, `${p} running`);
    }
    await waitOn(page, 'tr[data-path="h1/freezer"] .state', "h1/freezer");
    assertEquals(
      await page.$$eval("section.host", (s) => s.map((x) => x.getAttribute("data-host"))),
      ["h1", "h2"],
    );
    assertEquals(await page.$('tr[data-path="h2/secret"]'), null);
    const api = await (await fetch(new URL("/api/state", url))).text();
    assert(!api.includes("secret"), api);
    await waitOn(page, '#errors tr[data-loc="h1/freezer"]', "the error record");
    // The record's markup is text, not an element.
    assertIncludes(
      await page.textContent('#errors tr[data-loc="h1/freezer"]') ?? "",
      "too warm: <img src=x onerror=alert(1)>",
    );
    assertEquals(await page.$$("#errors img"), []);
    await page.screenshot({ path: `${IMG}web-tasks.png`, fullPage: true });

    // A task that ends changes colour without a reload.
    await page.evaluate("window.stillHere = true");
    const colour = () =>
      page.evaluate(
        `getComputedStyle(document.querySelector('tr[data-path="h1/ender"] .state')).backgroundColor`,
      ) as Promise<string>;
    const before = await colour();
    assertEquals((await moat("alert", "t.end.ender")).code, 0);
    await waitOn(page, 'tr[data-path="h1/ender"] .state[data-state="ok"]', "h1/ender as ok");
    assert(await page.evaluate("window.stillHere === true"), "the page was reloaded");
    const after = await colour();
    assert(before !== after, `the colour stayed ${before}`);

    // The filter.
    await page.fill("#filter", "h2");
    await page.locator('tr[data-path="h1/ender"]').waitFor({ state: "detached", timeout: HANG_MS });
    assertEquals(
      await page.$$eval("tr[data-path]", (l) => l.map((e) => e.getAttribute("data-path"))),
      ["h2/garden"],
    );
    await page.fill("#filter", "");

    // The schedule preview shows what moat time prints.
    await page.fill("#spec", "mon 7 hr 30 min");
    await page.fill("#count", "3");
    await page.click("#schedule button");
    await waitOn(page, "#times li:nth-child(3)", "the preview");
    const shown = await page.$$eval("#times li .iso", (l) => l.map((x) => x.textContent));
    const cli = await moat("time", "mon", "7", "hr", "30", "min", "--count", "3", "--json");
    assertEquals(cli.code, 0, cli.stderr);
    const times = cli.stdout.trim().split("\n").map((l) => JSON.parse(l).time);
    assertEquals(shown, times);
    assert(times.every((t: string) => /\+0[12]:00$/.test(t)), "times in Europe/Berlin");
    await page.screenshot({ path: `${IMG}web-schedule.png`, fullPage: true });

    // A task's page: state, data, debug object, and its log following live,
    // markup and escapes as text.
    const tp = await browser.newPage({ viewport: { width: 1100, height: 800 } });
    tp.on("dialog", (d) => void d.dismiss());
    await tp.goto(new URL("/task?path=h1/porch/light", url).href);
    await waitOn(tp, "#log .msg", "the log's first line", "hello");
    const hello = await tp.$$eval("#log .msg", (l) => l.map((x) => x.textContent ?? ""));
    assert(
      hello.some((m) => m.includes("hello <script>window.pwned = 1</script> \\x1b[31mred")),
      hello.join("\n"),
    );
    assertEquals(await tp.evaluate("window.pwned"), undefined);
    assertEquals(await tp.$$("#log script"), []);
    await waitOn(tp, "#debug", "the debug object", "<b>bold</b>");
    assertEquals(await tp.$$("#debug b"), []);
    await waitOn(tp, "#data td.value", "the task's data", "porch <i>");
    assertEquals(await tp.$$("#data i"), []);
    assertEquals((await moat("alert", "t.say", '"a line from the test"')).code, 0);
    await waitOn(tp, "#log .msg", "the live log line", "said a line from the test");
    await tp.screenshot({ path: `${IMG}web-task.png`, fullPage: true });

    // Every answer forbids inline script.
    const r = await fetch(url);
    await r.body?.cancel();
    assertIncludes(r.headers.get("content-security-policy") ?? "", "script-src 'self'");
    await browser.close();
    web.kill("SIGTERM");
    assertEquals((await web.status).code, 0, web.lines.join("\n"));
  } finally {
    await browser.close();
    await services.stop();
  }
});

Deno.test("moat web bound beyond loopback refuses to start without a token, and asks for it", async () => {
  const etcd = await startEtcd();
  const procs: MoatProcess[] = [];
  try {
    const env = { MOAT_ETCD: etcd.endpoint };
    const bare = await runMoat(["web", "--listen", "0.0.0.0:0", "--amqp", "none"], { env });
    assertEquals(bare.code, 2, bare.stderr);
    assertEquals(errorLines(bare), [
      "error: moat web on 0.0.0.0:0 (not loopback) needs a token: --token or MOAT_WEB_TOKEN",
    ]);
    const web = spawnMoat(["web", "--listen", "0.0.0.0:0", "--amqp", "none"], {
      env: { ...env, MOAT_WEB_TOKEN: "s3cret-token" },
    });
    procs.push(web);
    const line = await web.waitForLine((l) => l.startsWith("listening on"), HANG_MS, "web");
    const port = /:(\d+)\/$/.exec(line)![1];
    const base = `http://127.0.0.1:${port}`;
    const denied = await fetch(`${base}/api/state`);
    await denied.body?.cancel();
    assertEquals(denied.status, 401);
    const wrong = await fetch(`${base}/api/state`, { headers: { authorization: "Bearer nope" } });
    await wrong.body?.cancel();
    assertEquals(wrong.status, 401);
    const bearer = await fetch(`${base}/api/state`, {
      headers: { authorization: "Bearer s3cret-token" },
    });
    assertEquals(bearer.status, 200);
    assertEquals((await bearer.json()).tasks, []);
    // The token in the address is traded for a cookie, and dropped from it.
    const login = await fetch(`${base}/?token=s3cret-token`, { redirect: "manual" });
    await login.body?.cancel();
    assertEquals(login.status, 303);
    assertEquals(login.headers.get("location"), "/");
    const cookie = (login.headers.get("set-cookie") ?? "").split(";")[0]!;
    assertIncludes(login.headers.get("set-cookie") ?? "", "HttpOnly");
    const page = await fetch(`${base}/`, { headers: { cookie } });
    assertEquals(page.status, 200);
    const html = await page.text();
    assert(!/<script>/.test(html), "no inline script");
    const post = await fetch(`${base}/api/state`, { method: "POST", headers: { cookie } });
    await post.body?.cancel();
    assertEquals(post.status, 405);
    web.kill("SIGTERM");
    assertEquals((await web.status).code, 0, web.lines.join("\n"));
  } finally {
    for (const p of procs) p.kill("SIGKILL");
    for (const p of procs) await p.status;
    await etcd.stop();
  }
});
