/**
 * Sandbox groups: the scripts of one group (the `group` run setting) share
 * one sandbox process, one permission-less Worker each. Private to
 * `host/bridge/`; `sandbox.ts` starts members, `_sandbox_script.ts` runs
 * each one as it runs a whole process. See docs/security.md, "Why one
 * script per process".
 *
 * The wire: every line carries its member's number, `<n> <json>` both
 * ways. The process tags a line with the number of the Worker it came
 * from, which the script cannot choose; the host hands a line only to the
 * member with that number, and tags what it sends with the receiver's own
 * number. `+<n>` (host → process) adds member n, whose Worker's `ready`
 * comes back tagged; `-<n>` removes it and comes back as `-<n>` once its
 * Worker is terminated, or as `!<n>` when the Worker did not answer a ping
 * first (it spins, and `terminate()` cannot stop it): then the process goes.
 *
 * One crash domain: whatever ends the process (a heap overflow, the
 * group's memory or CPU budget, a member that stops answering its
 * heartbeat) ends every member, and each restarts as its task's settings
 * say. The culprit is named when it can be told: the member whose Worker
 * stopped answering its own ping, or, past the CPU budget, the member whose
 * OS threads (`#<n> <k>` lines name them) used the most CPU. The group's
 * budget is the sum of its members' `memory` and `cpu` (over the longest
 * `cpu_window` among them); memory cannot be told apart by member.
 *
 * @module
 */

import type { HostMessage } from "../../sandbox/protocol.ts";
import { type ChildExit, type ChildLink, describe, type SandboxChild } from "./_child.ts";
import type { SandboxLimits } from "./limits.ts";
import type { ProcSample, Watchdog, Watched } from "./_watchdog.ts";

/**
 * Longest wait for a member's Worker to be terminated before the whole
 * process goes, ms: the process gives a Worker 2 s to answer a ping first
 * (a Worker that spins cannot be terminated: sandbox/process.ts).
 */
const DROP_TIMEOUT_MS = 5000;

/** The most lines of a group's stderr the host prints (to its own stderr). */
const MAX_NOISE_LINES = 20;

/** What a member adds to its group's budget. */
type Budget = Pick<SandboxLimits, "memory" | "cpu" | "cpuWindow">;

/** One sandbox process running the scripts of one group. */
export class GroupProcess implements Watched {
  readonly name: string;
  readonly child: SandboxChild;
  #members = new Map<number, MemberLink>();
  #next = 0;
  #adding = 0;
  /** Why the host ended the process, once it did. */
  #why: string | undefined;
  #closing = false;
  #noise = 0;
  #unwatch: () => void;
  /** CPU samples (time ms, cpu ms), oldest first; [0] is the window's base. */
  #cpu: { t: number; cpu: number }[] = [];
  readonly #readyTimeoutMs: number;

  constructor(name: string, child: SandboxChild, watchdog: Watchdog, readyTimeoutMs: number) {
    this.name = name;
    this.child = child;
    this.#readyTimeoutMs = readyTimeoutMs;
    child.onLine = (line) => this.#line(line);
    child.onNoise = (stream, line) => {
      // Not a script's output (a Worker cannot reach the process's stdout
      // or stderr): Deno's or V8's own. Stderr (V8's out-of-memory report)
      // goes into the end message; stray stdout is printed.
      if (stream === "stdout") this.#noiseLine(`stdout: ${line.slice(0, 1000)}`);
    };
    this.#unwatch = watchdog.watch(child.pid, this);
    child.gone.then((exit) => {
      this.#unwatch();
      this.#closing = true;
      const message = this.#endMessage(exit);
      for (const m of this.#members.values()) m.end({ ...exit, message });
      this.#members.clear();
    });
  }

  /** Whether the group takes no more members (its process is ending or gone). */
  get closing(): boolean {
    return this.#closing || this.child.exited;
  }

  /** Members now (being added included). */
  get size(): number {
    return this.#members.size + this.#adding;
  }

  /**
   * Add a member: a new Worker in the process. Resolves with its link once
   * its Worker is ready; rejects if the process dies or it is not ready in time.
   */
  async add(script: string, task: string, budget: Budget): Promise<MemberLink> {
    if (this.closing) throw new Error(`sandbox group "${this.name}" is ending`);
    const n = ++this.#next;
    const link = new MemberLink(this, n, script, task, budget);
    this.#members.set(n, link);
    this.#adding++;
    this.child.sendLine(`+${n}`);
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      await Promise.race([
        link.ready,
        new Promise((_, reject) => {
          timer = setTimeout(
            () => reject(new Error(`not ready after ${this.#readyTimeoutMs} ms`)),
            this.#readyTimeoutMs,
          );
        }),
      ]);
    } catch (err) {
      this.drop(n);
      throw new Error(
        `Cannot start script "${script}" in sandbox group "${this.name}": ${
          (err as Error).message
        }`,
        { cause: err },
      );
    } finally {
      clearTimeout(timer);
      this.#adding--;
    }
    return link;
  }

  /** Terminate member `n`'s Worker; if it does not go in time, the whole process goes. */
  drop(n: number): void {
    const m = this.#members.get(n);
    if (m === undefined || m.dropping) return;
    m.dropping = true;
    this.child.sendLine(`-${n}`);
    const timer = setTimeout(() => {
      this.kill(
        `script "${m.script}" of task ${m.task} did not stop within ${DROP_TIMEOUT_MS} ms`,
      );
    }, DROP_TIMEOUT_MS);
    m.gone.then(() => clearTimeout(timer));
  }

  /** End the process (and so every member); `why` goes into each member's end message. */
  kill(why: string): void {
    this.#why ??= why;
    this.#closing = true;
    this.child.kill();
  }

  /** One sample of the process: the group's memory and CPU budget. */
  tick(now: number, sample: ProcSample | undefined): void {
    if (sample === undefined || this.#why !== undefined || this.#members.size === 0) return;
    const members = [...this.#members.values()];
    const memory = members.reduce((a, m) => a + m.budget.memory, 0);
    const rssMiB = sample.rssBytes / 2 ** 20;
    if (rssMiB > memory) {
      return this.kill(
        `out of memory: sandbox group "${this.name}" used ${rssMiB.toFixed(0)} MiB (limit: the ` +
          `sum of its members' memory = ${memory} MiB); which member used it cannot be told`,
      );
    }
    const cpu = members.reduce((a, m) => a + m.budget.cpu, 0);
    const windowS = Math.max(...members.map((m) => m.budget.cpuWindow));
    const used = this.#cpuUsed(now, sample.cpuMs, windowS * 1000);
    if (used > cpu * 1000) {
      this.kill(
        `CPU budget exceeded: sandbox group "${this.name}" used ${(used / 1000).toFixed(2)} s ` +
          `of CPU within ${windowS} s (limit: the sum of its members' cpu = ${cpu} s); ` +
          this.#busiest(members),
      );
    }
  }

  /**
   * Which member's threads (its Worker's and its `moat.thread`s', by their
   * OS thread names) used the most CPU since they started: read only once
   * the budget is exceeded. Threads that ended are not counted.
   */
  #busiest(members: MemberLink[]): string {
    const byThread = new Map<string, number>();
    try {
      for (const e of Deno.readDirSync(`/proc/${this.child.pid}/task`)) {
        const dir = `/proc/${this.child.pid}/task/${e.name}`;
        const comm = Deno.readTextFileSync(`${dir}/comm`).trim();
        if (!comm.startsWith("worker-")) continue;
        const stat = Deno.readTextFileSync(`${dir}/stat`);
        const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
        byThread.set(comm, (Number(f[11]) + Number(f[12])) * 10);
      }
    } catch { /* the process is going */ }
    let top: MemberLink | undefined;
    let topMs = 0;
    for (const m of members) {
      let ms = 0;
      for (const t of m.threads) ms += byThread.get(t) ?? 0;
      if (ms > topMs) [top, topMs] = [m, ms];
    }
    if (top === undefined) return "which member used it cannot be told";
    return `the member that used the most: script "${top.script}" of task ${top.task} ` +
      `(${(topMs / 1000).toFixed(2)} s of CPU since it started)`;
  }

  #cpuUsed(now: number, cpuMs: number, windowMs: number): number {
    const s = this.#cpu;
    const last = s[s.length - 1];
    if (last === undefined || now - last.t >= windowMs / 40) s.push({ t: now, cpu: cpuMs });
    while (s.length > 1 && s[1]!.t <= now - windowMs) s.shift();
    return cpuMs - s[0]!.cpu;
  }

  /** A line from the process: a member's message, or a member gone. */
  #line(line: string): void {
    if (line.startsWith("#")) {
      // `#<n> <k>`: the process's k-th Worker (OS thread `worker-k`) is member n's.
      const [n, k] = line.slice(1).split(" ").map(Number);
      const m = this.#members.get(n!);
      if (m !== undefined && Number.isSafeInteger(k)) m.threads.add(`worker-${k}`);
      return;
    }
    if (line.startsWith("!")) {
      // The member's Worker did not answer before it was to be terminated.
      const m = this.#members.get(Number(line.slice(1)));
      if (m !== undefined) {
        this.kill(
          `script "${m.script}" of task ${m.task} did not stop: its Worker stopped answering`,
        );
      }
      return;
    }
    if (line.startsWith("-")) {
      const n = Number(line.slice(1));
      const m = this.#members.get(n);
      if (m === undefined) return;
      this.#members.delete(n);
      m.end({ code: 0, signal: null, stderrTail: "" });
      // The last member left: the process goes (a new member spawns a new one).
      if (this.size === 0) this.kill(`sandbox group "${this.name}" has no members left`);
      return;
    }
    const sp = line.indexOf(" ");
    const m = sp > 0 ? this.#members.get(Number(line.slice(0, sp))) : undefined;
    if (m === undefined) {
      // Only the process writes tags, and it writes known members' only.
      this.#noiseLine(`a line for no member: ${line.slice(0, 200)}`);
      return;
    }
    const text = line.slice(sp + 1);
    let value: unknown;
    try {
      value = text.startsWith("{") ? JSON.parse(text) : undefined;
    } catch {
      value = undefined;
    }
    if (value === undefined) m.onNoise("stdout", text);
    else m.message(value);
  }

  #noiseLine(line: string): void {
    if (++this.#noise <= MAX_NOISE_LINES) {
      console.error(`moat: sandbox group "${this.name}": ${line}`);
    }
  }

  #endMessage(exit: ChildExit): string {
    const how = describe(exit);
    if (this.#why !== undefined) {
      return `sandbox group "${this.name}" ended (${this.#why}); every member restarts`;
    }
    if (/out of memory|heap limit/i.test(exit.stderrTail)) {
      return `sandbox group "${this.name}" ran out of memory (${how}): a member's heap ` +
        "overflowed, and which one cannot be told; every member restarts";
    }
    return `sandbox group "${this.name}" exited unexpectedly (${how}); every member restarts`;
  }
}

/** One member of a group as its script's host side sees it. */
export class MemberLink implements ChildLink {
  readonly pid: number;
  readonly gone: Promise<ChildExit>;
  readonly ready: Promise<void>;
  readonly script: string;
  readonly task: string;
  readonly budget: Budget;
  /** The OS thread names (`worker-k`) of its script's Worker and its threads. */
  readonly threads = new Set<string>();
  dropping = false;
  onMessage: (value: unknown) => void = () => {};
  onNoise: (stream: "stdout" | "stderr", line: string) => void = () => {};
  #group: GroupProcess;
  #n: number;
  #isReady = false;
  #setReady!: () => void;
  #failReady!: (e: Error) => void;
  #setGone!: (exit: ChildExit) => void;
  #gone = false;

  constructor(group: GroupProcess, n: number, script: string, task: string, budget: Budget) {
    this.#group = group;
    this.#n = n;
    this.pid = group.child.pid;
    this.script = script;
    this.task = task;
    this.budget = budget;
    this.ready = new Promise<void>((res, rej) => {
      this.#setReady = res;
      this.#failReady = rej;
    });
    this.ready.catch(() => {});
    this.gone = new Promise((res) => this.#setGone = res);
  }

  /** A message of this member's Worker (already routed by its tag). */
  message(value: unknown): void {
    if (this.#gone) return;
    if (!this.#isReady) {
      const v = value as { kind?: unknown };
      if (v.kind === "ready") {
        this.#isReady = true;
        this.#setReady();
      }
      return;
    }
    try {
      this.onMessage(value);
    } catch (err) {
      console.error("moat: sandbox message handler threw:", err);
    }
  }

  /** The member's Worker is gone (terminated, or with its process). */
  end(exit: ChildExit): void {
    if (this.#gone) return;
    this.#gone = true;
    this.#failReady(new Error(exit.message ?? `its Worker ended (${describe(exit)})`));
    this.#setGone(exit);
  }

  send(message: HostMessage): void {
    // Throws (before writing) for a value that is not JSON, as SandboxChild does.
    const line = `${this.#n} ${JSON.stringify(message)}`;
    if (!this.#gone) this.#group.child.sendLine(line);
  }

  sendJson(lines: readonly string[]): void {
    if (!this.#gone) this.#group.child.sendLines(lines.map((l) => `${this.#n} ${l}`));
  }

  kill(): void {
    if (!this.#gone) this.#group.drop(this.#n);
  }

  abort(reason: string): void {
    this.#group.kill(`script "${this.script}" of task ${this.task}: ${reason}`);
  }
}
