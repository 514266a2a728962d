/**
 * Shared parts of the reliability suite: the counting script whose log is
 * the proof, starting hosts as `moat run` child processes, reading the log
 * back, and checking it.
 *
 * The proof: every run of a task has an instance id. It logs `START id t`,
 * then increments its task's `data/n` every 100 ms with `moat.data.set`,
 * logging `ACK id n t` when the write resolved and `NACK id n t code` when
 * it rejected (`t` is the script's `Date.now()`). From both hosts' stderr
 * the test rebuilds, per task, the interval in which each run acted; two
 * runs of one task whose intervals overlap ran twice at once. etcd's
 * history of `data/n` (a watch from revision 1) must hold every acked
 * value, and never go backwards.
 *
 * @module
 */

import { assert } from "../_util/assert.ts";
import { type MoatProcess, spawnMoat } from "../_util/cli.ts";
import { withTimeout } from "../_util/wait.ts";
import type { EtcdStore } from "../../host/store/etcd_store.ts";
import type { WatchEvent } from "../../host/store/store.ts";
import { servicesOn } from "../../host/cli/services.ts";

/** Whether the heavy variants run (`deno task test:soak`). */
export const SOAK = Deno.env.get("MOAT_SOAK") === "1";

/** The host name every test host runs as (they share one task tree). */
export const HOST = "rel";

/** The counting script (JavaScript). */
export const COUNTER = `moat.setup();
const me = Math.random().toString(36).slice(2, 10);
moat.run(async () => {
  moat.logger.info("START " + me + " " + Date.now());
  let n = Number(moat.data.get("n") ?? 0);
  for (;;) {
    const next = n + 1;
    try {
      await moat.data.set("n", next);
      n = next;
      moat.logger.info("ACK " + me + " " + next + " " + Date.now());
    } catch (e) {
      moat.logger.info("NACK " + me + " " + next + " " + Date.now() + " " + e.code);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
});
`;

/** One parsed line of the proof. */
export interface Tick {
  kind: "START" | "ACK" | "NACK";
  task: string;
  /** Which host process logged it (index into the hosts array). */
  host: number;
  inst: string;
  /** The counter value (ACK/NACK), else 0. */
  n: number;
  /** The script's clock, ms. */
  t: number;
  /** NACK: the error code. */
  code: string;
}

const TICK = /\[([^\]]+)\] (START|ACK|NACK) (\S+)(?: (\d+))? (\d+)(?: (\S+))?$/;

/** Every tick logged by `hosts` so far. */
export function ticks(hosts: MoatProcess[]): Tick[] {
  const out: Tick[] = [];
  hosts.forEach((h, host) => {
    for (const line of h.lines) {
      const m = TICK.exec(line);
      if (!m) continue;
      out.push({
        kind: m[2] as Tick["kind"],
        task: m[1]!,
        host,
        inst: m[3]!,
        n: m[4] === undefined ? 0 : Number(m[4]),
        t: Number(m[5]),
        code: m[6] ?? "",
      });
    }
  });
  return out;
}

/** A run of a task, as the ticks show it. */
export interface Run {
  task: string;
  inst: string;
  host: number;
  start: number;
  /** The last tick that acted (START or ACK; with `nacks`, NACKs too). */
  last: number;
}

/** The runs in `ticks`, per task, sorted by start. */
export function runs(all: Tick[], options: { nacks?: boolean } = {}): Map<string, Run[]> {
  const byInst = new Map<string, Run>();
  for (const k of all) {
    const id = `${k.task} ${k.inst}`;
    let r = byInst.get(id);
    if (!r) {
      byInst.set(id, r = { task: k.task, inst: k.inst, host: k.host, start: k.t, last: k.t });
    }
    if (k.kind === "NACK" && !options.nacks) continue;
    r.start = Math.min(r.start, k.t);
    r.last = Math.max(r.last, k.t);
  }
  const out = new Map<string, Run[]>();
  for (const r of byInst.values()) {
    const list = out.get(r.task) ?? [];
    list.push(r);
    out.set(r.task, list);
  }
  for (const list of out.values()) list.sort((a, b) => a.start - b.start);
  return out;
}

/** Fail if two runs of one task acted at the same time. */
export function assertNoOverlap(all: Tick[], options: { nacks?: boolean } = {}): void {
  for (const [task, list] of runs(all, options)) {
    for (let i = 1; i < list.length; i++) {
      const a = list[i - 1]!, b = list[i]!;
      assert(
        a.last < b.start,
        `task ${task} ran twice at once: run ${a.inst} on host ${a.host} acted until ${a.last}, ` +
          `run ${b.inst} on host ${b.host} started at ${b.start} (${a.last - b.start} ms overlap)`,
      );
    }
  }
}

/** Every put of each task's `data/n` in etcd's history, in revision order. */
export async function counterHistory(
  store: EtcdStore,
  root = "/moat",
): Promise<Map<string, number[]>> {
  const prefix = `${root}/task/`;
  const now = (await store.range(prefix)).revision;
  const events: WatchEvent[] = [];
  let seen = 0;
  const { promise, resolve } = Promise.withResolvers<void>();
  const watch = await store.watch(prefix, (evs) => {
    events.push(...evs);
    seen = Math.max(seen, ...evs.map((e) => e.kv.modRevision));
    if (seen >= now) resolve();
  }, { startRevision: 1 });
  try {
    if (seen < now) {
      // The last revision under the prefix may be older than `now`.
      const last = Math.max(0, ...(await store.range(prefix)).kvs.map((kv) => kv.modRevision));
      if (seen < last) await withTimeout(promise, 60_000, "the history of data/n");
    }
  } finally {
    await watch.close();
  }
  const out = new Map<string, number[]>();
  for (const e of events) {
    const m = /^\/[^]*?\/task\/(.+)\/:task\/data\/n$/.exec(e.kv.key);
    if (!m || e.type !== "put") continue;
    const list = out.get(m[1]!) ?? [];
    list.push(Number(e.kv.value));
    out.set(m[1]!, list);
  }
  return out;
}

/**
 * Data safety: every acked write is in etcd's history, and a task's
 * counter never goes backwards there (a stale run writing after the new
 * owner would make it). Returns the number of acked writes checked.
 */
export async function assertAckedWritesKept(store: EtcdStore, all: Tick[]): Promise<number> {
  const history = await counterHistory(store);
  let checked = 0;
  for (const k of all) {
    if (k.kind !== "ACK") continue;
    const values = history.get(k.task) ?? [];
    assert(
      values.includes(k.n),
      `task ${k.task}: write n=${k.n} resolved in the script (run ${k.inst}) but is not in etcd`,
    );
    checked++;
  }
  for (const [task, values] of history) {
    for (let i = 1; i < values.length; i++) {
      assert(
        values[i]! >= values[i - 1]!,
        `task ${task}: data/n went backwards in etcd: ${values.slice(0, i + 1).join(",")}`,
      );
    }
  }
  return checked;
}

/** Define the counting script and `count` tasks `rel/c<i>` using it. */
export async function addCounters(store: EtcdStore, count: number): Promise<string[]> {
  const s = servicesOn(store, "/moat");
  await s.scripts.add("counter", COUNTER, { language: "javascript" });
  const paths: string[] = [];
  for (let i = 0; i < count; i++) {
    const p = `${HOST}/c${i}`;
    await s.tasks.add("counter", p, { data: [["n", "0"]] });
    paths.push(p);
  }
  return paths;
}

/** Set the install-wide run settings (`/config/run/<key>`). */
export async function setRunConfig(store: EtcdStore, config: Record<string, number>) {
  for (const [k, v] of Object.entries(config)) await store.put(`/moat/config/run/${k}`, String(v));
}

/** Start `moat run` hosts sharing host name `rel`. */
export function startHosts(
  count: number,
  env: Record<string, string>,
): MoatProcess[] {
  return Array.from(
    { length: count },
    () => spawnMoat(["run"], { env: { MOAT_HOST: HOST, MOAT_AMQP: "none", ...env } }),
  );
}

/** SIGTERM every host (SIGCONT first, in case one is stopped) and wait, ≤ 15 s, then SIGKILL. */
export async function stopHosts(hosts: MoatProcess[]): Promise<void> {
  await Promise.all(hosts.map(async (h) => {
    h.kill("SIGCONT");
    h.kill("SIGTERM");
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      h.status,
      new Promise<void>((r) => timer = setTimeout(() => (h.kill("SIGKILL"), r()), 15_000)),
    ]);
    clearTimeout(timer);
    await h.status;
  }));
}

/**
 * Wait until `pred(ticks)` holds, polling as lines arrive, at most `ms`.
 * Fails with the tail of every host's output.
 */
export function waitTicks(
  hosts: MoatProcess[],
  pred: (all: Tick[]) => boolean,
  ms: number,
  what: string,
): Promise<void> {
  if (pred(ticks(hosts))) return Promise.resolve();
  return new Promise<void>((resolve, reject) => {
    const unsubs: (() => void)[] = [];
    let pending = false;
    const done = () => {
      clearTimeout(timer);
      for (const u of unsubs) u();
    };
    const timer = setTimeout(() => {
      done();
      const tail = hosts.map((h, i) => `--- host ${i}\n` + h.lines.slice(-40).join("\n"))
        .join("\n");
      reject(new Error(`Timed out after ${ms} ms waiting for ${what}; output:\n${tail}`));
    }, ms);
    // Parsing every line again is O(n): check at most every 50 ms.
    const check = () => {
      if (pending) return;
      pending = true;
      setTimeout(() => {
        pending = false;
        if (!pred(ticks(hosts))) return;
        done();
        resolve();
      }, 50);
    };
    for (const h of hosts) unsubs.push(h.subscribe(check));
  });
}

/** The latest ACK time per task among `all`, after `since`. */
export function ackedSince(all: Tick[], since: number): Map<string, number> {
  const out = new Map<string, number>();
  for (const k of all) {
    if (k.kind === "ACK" && k.t > since) out.set(k.task, Math.max(out.get(k.task) ?? 0, k.t));
  }
  return out;
}

/**
 * The longest time any task went without an ACK within [from, to] (ms),
 * counting from `from` to the first ACK and between ACKs.
 */
export function longestGap(all: Tick[], tasks: string[], from: number, to: number): number {
  let worst = 0;
  for (const task of tasks) {
    const times = all.filter((k) => k.task === task && k.kind === "ACK" && k.t >= from && k.t <= to)
      .map((k) => k.t).sort((a, b) => a - b);
    let prev = from;
    for (const t of times) {
      worst = Math.max(worst, t - prev);
      prev = t;
    }
    worst = Math.max(worst, to - prev);
  }
  return worst;
}

/** Log a measured figure so that the run shows it (the closing note quotes these). */
export function report(what: string, value: string): void {
  console.log(`  [measured] ${what}: ${value}`);
}
