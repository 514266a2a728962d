/**
 * `moat web` benchmarks against a private etcd, with the real `moat web`
 * in a child process and the page in headless chromium (playwright-core):
 *
 * - loading the page with 200 tasks until the last row shows, vs the same
 *   browser rendering a static 200-row table;
 * - state changes at 100 per second (status messages of the 200 tasks, from
 *   a writer in this process): put → the change in the page's server-sent
 *   state stream, vs a plain etcd watch of the same puts in the same run;
 *   and whether the browser shows the last change (it stays live).
 *
 * Run alone: `deno run --allow-all bench/web_bench.ts` (`BENCH_WEB_TASKS`,
 * default 200; `BENCH_WEB_RATE` changes per second, default 100;
 * `BENCH_WEB_SECONDS`, default 10).
 *
 * @module
 */

import { chromium } from "playwright-core";
import { type Figure, median, printFigures } from "./figure.ts";
import { startEtcd } from "../tests/_util/etcd_server.ts";
import { spawnMoat } from "../tests/_util/cli.ts";
import { EtcdStore } from "../host/store/etcd_store.ts";

const CHROMIUM = "/usr/bin/chromium";

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(s.length * p))]!;
}

const wall = () => performance.timeOrigin + performance.now();

/** Read a server-sent event stream; calls `fn` with each `state` event's data. */
async function readStates(url: string, fn: (data: string) => void, signal: AbortSignal) {
  const res = await fetch(url, { signal });
  let buf = "";
  try {
    for await (const chunk of res.body!.pipeThrough(new TextDecoderStream())) {
      buf += chunk;
      let at;
      while ((at = buf.indexOf("\n\n")) >= 0) {
        const ev = buf.slice(0, at);
        buf = buf.slice(at + 2);
        if (!ev.startsWith("event: state\n")) continue;
        fn(ev.slice(ev.indexOf("data: ") + 6));
      }
    }
  } catch (e) {
    if (!signal.aborted) throw e;
  }
}

/** Measure the page; see the module doc. */
export async function benchWeb(
  tasks = Number(Deno.env.get("BENCH_WEB_TASKS") ?? "200"),
  rate = Number(Deno.env.get("BENCH_WEB_RATE") ?? "100"),
  seconds = Number(Deno.env.get("BENCH_WEB_SECONDS") ?? "10"),
): Promise<Figure[]> {
  const etcd = await startEtcd({ name: "bench-web" });
  const store = new EtcdStore({ endpoints: [etcd.endpoint] });
  const watcher = new EtcdStore({ endpoints: [etcd.endpoint] });
  const web = spawnMoat(["web", "--listen", "127.0.0.1:0", "--amqp", "none"], {
    env: { MOAT_ETCD: etcd.endpoint },
  });
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true });
  const abort = new AbortController();
  try {
    const now = Math.floor(Date.now() / 1000);
    const path = (i: number) => `bench/t${i}`;
    await store.put("/moat/meta/script/s/:code/timestamp", String(now));
    for (let i = 0; i < tasks; i++) {
      const t = `/moat/task/${path(i)}/:task/`;
      const s = `/moat/status/run/${path(i)}/:task/`;
      await store.put(t + "taskdef", "task/script");
      await store.put(t + "script", "s");
      await store.put(s + "started", String(now - 1));
      await store.put(s + "stopped", String(now));
      await store.put(s + "state", i % 2 ? "ok" : "error");
      await store.put(s + "message", "0");
    }
    const line = await web.waitForLine((l) => l.startsWith("listening on"), 60_000, "moat web");
    const url = line.slice("listening on ".length);
    const last = `tr[data-path="${path(tasks - 1)}"]`;

    // --- loading the page ---------------------------------------------------
    const page = await browser.newPage();
    const loads: number[] = [];
    for (let i = 0; i < 6; i++) {
      const t0 = performance.now();
      await page.goto(url);
      await page.locator(last).waitFor({ timeout: 60_000 });
      if (i > 0) loads.push(performance.now() - t0); // the first warms the caches
    }
    const rows = Array.from(
      { length: tasks },
      (_, i) => `<tr data-path="${path(i)}"><td>${path(i)}</td><td>ok</td><td>0</td></tr>`,
    ).join("");
    const statics: number[] = [];
    const raw = await browser.newPage();
    for (let i = 0; i < 6; i++) {
      const t0 = performance.now();
      await raw.setContent(`<!doctype html><table><tbody>${rows}</tbody></table>`);
      await raw.locator(last).waitFor({ timeout: 60_000 });
      if (i > 0) statics.push(performance.now() - t0);
    }

    // --- 100 changes per second -----------------------------------------------
    const sse: number[] = [];
    const seen = new Map<string, number>();
    const streaming = readStates(new URL("/api/events", url).href, (data) => {
      const t = wall();
      const state = JSON.parse(data) as { tasks: { path: string; message: string }[] };
      for (const task of state.tasks) {
        const v = Number(task.message);
        if (v > (seen.get(task.path) ?? 0)) {
          seen.set(task.path, v);
          sse.push(t - v);
        }
      }
    }, abort.signal);
    const watched: number[] = [];
    const watch = await watcher.watch("/moat/status/run/", (events) => {
      const t = wall();
      for (const e of events) {
        if (e.kv.key.endsWith("/message")) watched.push(t - Number(e.kv.value));
      }
    });
    const total = Math.round(rate * seconds);
    const finals = new Map<string, string>();
    const t0 = performance.now();
    const puts: Promise<unknown>[] = [];
    for (let i = 0; i < total; i++) {
      const wait = t0 + (i / rate) * 1000 - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      const p = path(i % tasks);
      const v = String(wall());
      finals.set(p, v);
      puts.push(store.put(`/moat/status/run/${p}/:task/message`, v));
    }
    await Promise.all(puts);
    const achieved = total / ((performance.now() - t0) / 1000);
    // The browser shows the last change of every task: it kept up.
    const lastPath = path((total - 1) % tasks);
    const tLast = Number(finals.get(lastPath));
    await page.locator(`tr[data-path="${lastPath}"] td.message`, { hasText: finals.get(lastPath)! })
      .waitFor({ timeout: 60_000 });
    const browserLast = wall() - tLast;
    const shown = await page.$$eval(
      "tr[data-path]",
      (trs) =>
        trs.map((
          tr,
        ) => [tr.getAttribute("data-path") ?? "", tr.querySelector(".message")?.textContent ?? ""]),
    );
    const stale = shown.filter(([p, v]) => v !== (finals.get(p!) ?? "0")).length;
    await watch.close();
    abort.abort();
    await streaming;
    return [
      {
        name: `web.load_${tasks}_tasks`,
        value: median(loads),
        unit: "ms",
        rawName: `static ${tasks}-row table, same browser`,
        raw: median(statics),
        target: "< 1000 ms",
      },
      {
        name: `web.change_to_stream_p50_at_${rate}/s`,
        value: median(sse),
        unit: "ms",
        rawName: "etcd watch of the same puts",
        raw: median(watched),
      },
      {
        name: `web.change_to_stream_p99_at_${rate}/s`,
        value: pct(sse, 0.99),
        unit: "ms",
        rawName: "etcd watch of the same puts",
        raw: pct(watched, 0.99),
      },
      {
        name: "web.browser_shows_last_change",
        value: browserLast,
        unit: "ms",
        rawName: "etcd watch p99",
        raw: pct(watched, 0.99),
      },
      {
        name: "web.changes_written",
        value: achieved,
        unit: "/s",
        rawName: "",
        raw: NaN,
        target: `${rate}/s`,
      },
      {
        name: "web.stale_rows_after_burst",
        value: stale,
        unit: "rows",
        rawName: "",
        raw: NaN,
        target: "0",
      },
    ];
  } finally {
    abort.abort();
    await browser.close();
    web.kill("SIGTERM");
    await web.status;
    await watcher.close();
    await store.close();
    await etcd.stop();
  }
}

if (import.meta.main) printFigures(await benchWeb());
