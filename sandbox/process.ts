/**
 * The sandbox process: the main module of each `deno run` the host spawns
 * for one script. It runs with no permissions at all, creates the script's
 * Worker (itself with `permissions: "none"`) and relays, line by line,
 * between the host (stdin/stdout) and the Worker (`postMessage`), checking
 * what the Worker sends before it reaches the host.
 *
 * Why a `blob:` Worker: a process without read permission cannot start a
 * Worker from a file, and `--allow-read=<bootstrap file>` would tie the
 * sandbox to a source tree on disk (no good for `deno compile`). The main
 * module and its static imports load without any permission, so this module
 * imports the bootstrap's *function* and turns its (already transpiled)
 * source text into a `blob:` URL. Measured on Deno 2.9.6: the Worker posts
 * its first message a few ms after `new Worker`, and nothing is read from
 * disk or written to the cache for it.
 *
 * Threads (`moat.thread`): the script's Worker asks for one with a
 * structured clone (not a JSON line); this process starts it as a sibling
 * Worker (sandbox/_thread_runner.ts), after the host made room for it in
 * the data-size rlimit (`threads` / `thread_room`), relays its log lines
 * like the Worker's and hands its result back to the Worker. Nothing of a
 * thread but checked log lines reaches the host.
 *
 * Why stdout is safe: the script cannot reach it. Its Worker has no `Deno`,
 * no `process`, and every `node:` import (e.g. `node:fs` `writeSync(1, …)`)
 * is mapped by the host's import map to a module that throws. The same holds
 * for its threads, whose `console` (which Deno would write to stdout) is
 * replaced too.
 *
 * @module
 */

import {
  type LogLevel,
  MAX_END_TEXT_CHARS,
  MAX_LINE_BYTES,
  MAX_LOG_CHARS,
  MAX_THREADS,
  MAX_THREADS_WAITING,
  PROTOCOL_VERSION,
  SANDBOX_KINDS,
  type SandboxMessage,
} from "./protocol.ts";
import { workerSource } from "./worker.ts";
import { threadSource } from "./_thread_main.ts";
import { ThreadDenied, ThreadRunner } from "./_thread_runner.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Write one line to the host, all of it, now (the host always reads). */
function writeLine(text: string): void {
  const bytes = encoder.encode(text + "\n");
  let off = 0;
  while (off < bytes.length) off += Deno.stdout.writeSync(bytes.subarray(off));
}

const isId = (v: unknown): boolean => Number.isSafeInteger(v) && (v as number) >= 0;

/** Whether `text` takes at least `MAX_LINE_BYTES` as UTF-8. */
function tooLarge(text: string): boolean {
  // UTF-8 takes at most 3 bytes per UTF-16 unit: encode only near the limit.
  return text.length >= MAX_LINE_BYTES ||
    (text.length * 3 >= MAX_LINE_BYTES && encoder.encode(text).length >= MAX_LINE_BYTES);
}

/** The fields each kind of message carries: nothing else reaches the host. */
const FIELDS: { readonly [K in SandboxMessage["kind"]]: readonly string[] } = {
  ready: ["version"],
  call: ["id", "method", "args"],
  cancel: ["id"],
  log: ["level", "message"],
  ended: ["state", "message", "debug"],
  settled: ["seen", "nextMs", "fired", "ending"],
  threads: ["need"],
  pong: ["id"],
};

/** What `check` made of a message: the line to forward, or why not. */
type Checked = { line: string } | { why: string; callId?: number };

/** Why a message (at most `MAX_LINE_BYTES`) may not go to the host, if it may not. */
function refuse(text: string, ended: boolean): { why: string; callId?: number } | undefined {
  let msg: unknown;
  try {
    msg = JSON.parse(text);
  } catch {
    return { why: "not JSON" };
  }
  if (msg === null || typeof msg !== "object" || Array.isArray(msg)) {
    return { why: "not an object" };
  }
  const m = msg as Record<string, unknown>;
  const kind = m.kind;
  if (typeof kind !== "string" || !(SANDBOX_KINDS as readonly string[]).includes(kind)) {
    return { why: `unknown kind ${JSON.stringify(kind)}` };
  }
  if ((kind === "call" || kind === "cancel") && !isId(m.id)) return { why: `${kind} without id` };
  if (kind === "call" && (typeof m.method !== "string" || !Array.isArray(m.args))) {
    return { why: "malformed call", callId: m.id as number };
  }
  if (kind === "log" && (typeof m.message !== "string" || m.message.length > 2 * MAX_LOG_CHARS)) {
    return { why: "malformed log" };
  }
  if (kind === "ended" && ended) return { why: "second ended" };
  return undefined;
}

const config = {
  version: PROTOCOL_VERSION,
  maxLineBytes: MAX_LINE_BYTES,
  maxLogChars: MAX_LOG_CHARS,
  maxEndTextChars: MAX_END_TEXT_CHARS,
  maxThreads: MAX_THREADS,
  maxThreadsWaiting: MAX_THREADS_WAITING,
};

/** How the host's refusal of a thread (`thread_room` with `denied`) begins. */
const THREAD_ROOM_PREFIX = '{"kind":"thread_room",';

/** The host's answer to `threads` with `need`, exactly as the host writes it. */
const THREAD_ROOM_LINE = JSON.stringify({ kind: "thread_room" });

/** The ping a leaving member's Worker must answer (`DROP_PONG`) before it is terminated. */
const DROP_ID = Number.MAX_SAFE_INTEGER;
const DROP_PING = JSON.stringify({ kind: "ping", id: DROP_ID });
const DROP_PONG = JSON.stringify({ kind: "pong", id: DROP_ID });

/** The Worker may send every kind but `threads`, which only this process sends. */
const WORKER_KINDS = SANDBOX_KINDS.filter((k) => k !== "threads");

/** The Worker's source as a `blob:` URL, made once (a group starts many). */
let workerUrl: string | undefined;
/** The threads' bootstrap, made once. */
let threadText: string | undefined;
/**
 * Workers created in this process so far. Deno names the OS thread of its
 * k-th Worker `worker-k` (measured on 2.9.6): a group tells the host which
 * are a member's, so that the host can tell whose threads use the CPU.
 */
let workerCount = 0;

/**
 * One script: its Worker, its threads, and the checked relay between them
 * and the host. `write` puts one line on the way to the host; in a group
 * it tags the line with this member's number, which the script cannot
 * choose: the tag is the Worker object the message came from.
 */
class Member {
  #write: (line: string) => void;
  #ended = false;
  #worker: Worker;
  #threads: ThreadRunner;
  /** Thread starts waiting for the host's `thread_room`, in order. */
  #roomWaiters: { go: () => void; no: (why: string) => void }[] = [];
  /** The Worker was terminated after an error it could not handle. */
  #failed = false;
  /** While leaving: called when the Worker answers the ping `drop` sent. */
  #onPong: (() => void) | undefined;

  /** `spawned`: called with the number (`workerCount`) of each Worker made for this script. */
  constructor(write: (line: string) => void, spawned: (k: number) => void = () => {}) {
    this.#write = write;
    workerUrl ??= URL.createObjectURL(
      new Blob([workerSource(config)], { type: "text/javascript" }),
    );
    const worker = new Worker(
      workerUrl,
      { type: "module", name: "moat-script", deno: { permissions: "none" } } as WorkerOptions,
    );
    this.#worker = worker;
    spawned(++workerCount);
    /** The script's `moat.thread` Workers: siblings of its Worker, in this process. */
    this.#threads = new ThreadRunner({
      source: threadText ??= threadSource(config),
      maxThreads: MAX_THREADS,
      done: (msg) => {
        if (!this.#ended) worker.postMessage(msg);
      },
      line: (text) => {
        if (this.#ended) return;
        // A thread may only log; it has no calls and no end of its own to report.
        const bad = this.#check(text, ["log"]);
        if ("line" in bad) this.#write(bad.line);
        else this.#log("warn", `sandbox refused a message from a thread: ${bad.why}`);
      },
      warn: (message) => {
        if (!this.#ended) this.#log("warn", message);
      },
      room: (need) => {
        if (this.#ended) return new Promise<void>(() => {}); // the host kills us soon
        this.#write(JSON.stringify({ kind: "threads", need }));
        if (!need) return Promise.resolve();
        return new Promise<void>((go, no) =>
          this.#roomWaiters.push({ go, no: (why) => no(new ThreadDenied(why)) })
        );
      },
      spawned: () => spawned(++workerCount),
    });
    worker.onmessage = (e: MessageEvent) => this.#fromWorker(e);
    // An error the Worker's own handlers did not catch (e.g. in the bootstrap)
    // would kill this process; instead the script ends with state error.
    worker.onerror = (e: ErrorEvent) => {
      e.preventDefault();
      this.#sendEnded("error", String(e.message ?? "uncaught error in the script's Worker"), "");
      this.#failed = true;
      worker.terminate();
    };
    worker.onmessageerror = () => {
      this.#log("warn", "sandbox could not deserialise a message from the script");
    };
  }

  /** A line from the host for this script. */
  fromHost(line: string): void {
    if (line === THREAD_ROOM_LINE) this.#roomWaiters.shift()?.go();
    else if (line.startsWith(THREAD_ROOM_PREFIX)) this.#roomDenied(line);
    else this.#worker.postMessage(line);
  }

  /** The host's `thread_room` with `denied`: the waiting start may not run. */
  #roomDenied(line: string): void {
    let why: unknown;
    try {
      why = (JSON.parse(line) as { denied?: unknown }).denied;
    } catch { /* not from our host: refused below */ }
    const waiter = this.#roomWaiters.shift();
    if (typeof why === "string") waiter?.no(why);
    else waiter?.no("moat.thread(): the host refused the thread");
  }

  /**
   * A group's member leaves: end its Worker and its threads. Measured on
   * Deno 2.9.6, `terminate()` does not stop a Worker that spins, so the
   * Worker must first answer a ping (its message loop turns, so nothing
   * spins now): `done(true)` then, else `done(false)` after `waitMs`, and
   * the host ends the whole process.
   */
  drop(waitMs: number, done: (terminated: boolean) => void): void {
    const finish = (ok: boolean) => {
      clearTimeout(timer);
      this.#onPong = undefined;
      this.#ended = true;
      this.#threads.close();
      if (ok) this.#worker.terminate();
      done(ok);
    };
    if (this.#failed) return done(true); // terminated already, after its error
    const timer = setTimeout(() => finish(false), waitMs);
    this.#onPong = () => finish(true);
    this.#worker.postMessage(DROP_PING);
  }

  #fromWorker(e: MessageEvent): void {
    if (this.#onPong !== undefined && e.data === DROP_PONG) return this.#onPong();
    if (this.#ended) return; // after `ended` the host kills us; nothing more matters
    // JSON text is for the host; a structured clone asks for a thread.
    if (typeof e.data !== "string") {
      this.#threads.start(e.data);
      return;
    }
    const bad = this.#check(e.data, WORKER_KINDS);
    if ("line" in bad) {
      this.#write(bad.line);
      return;
    }
    this.#log("warn", `sandbox refused a message from the script: ${bad.why}`);
    if (bad.callId !== undefined) {
      // Every call is answered exactly once: this one will never reach the host.
      this.#worker.postMessage(JSON.stringify({
        kind: "reply",
        id: bad.callId,
        ok: false,
        error: { code: "bad_message", message: `call refused by the sandbox: ${bad.why}` },
      }));
    }
  }

  #log(level: LogLevel, message: string): void {
    this.#write(JSON.stringify({ kind: "log", level, message }));
  }

  #sendEnded(state: "ok" | "error", message: string, debug: string): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#write(JSON.stringify({ kind: "ended", state, message, debug }));
  }

  /**
   * Check a message from the Worker (or a thread, which may send only `kinds`).
   * Returns the line to send to the host,
   * made from what was checked (the message's own fields, parsed and written
   * out again), else why not (and the call id to answer, if any). The host
   * checks everything again; this keeps a broken or hostile Worker from
   * putting anything but well-formed lines on the pipe.
   */
  #check(text: unknown, kinds: readonly SandboxMessage["kind"][] = SANDBOX_KINDS): Checked {
    if (typeof text !== "string") return { why: "not a string" };
    if (tooLarge(text)) return { why: `message too large (${text.length} characters)` };
    const bad = refuse(text, this.#ended);
    if (bad) return bad;
    const m = JSON.parse(text) as Record<string, unknown>;
    const kind = m.kind as SandboxMessage["kind"];
    if (!kinds.includes(kind)) return { why: `${kind} not allowed here` };
    const out: Record<string, unknown> = { kind };
    for (const f of FIELDS[kind]) if (Object.hasOwn(m, f)) out[f] = m[f];
    const line = JSON.stringify(out);
    // Written out again, lone surrogates take six characters: check again.
    if (tooLarge(line)) return { why: `message too large (${line.length} characters)` };
    if (kind === "ended") this.#ended = true;
    return { line };
  }
}

/**
 * A sandbox group (`--group`): many scripts, one Worker each, in this one
 * process. Every line carries a member number: `<n> <json>` both ways;
 * `+<n>` from the host adds member n (its Worker's `ready` comes back as
 * `<n> {"kind":"ready",…}`), `-<n>` removes it: once its Worker answered a
 * ping, it is terminated and `-<n>` goes back; a Worker that does not
 * answer within 2 s gets `!<n>` instead (the host then ends the process).
 * `#<n> <k>` says that the process's k-th Worker (OS thread `worker-k`) is
 * member n's, its script's or a thread's. The process itself says `ready`
 * once, untagged.
 */
const GROUP = Deno.args.includes("--group");
/** How long a leaving member's Worker has to answer its ping, ms. */
const DROP_WAIT_MS = 2000;
const members = new Map<number, Member>();

/** One line from the host. */
function hostLine(line: string, single: Member | undefined): void {
  if (single !== undefined) return single.fromHost(line);
  const sp = line.indexOf(" ");
  const head = sp < 0 ? line : line.slice(0, sp);
  if (head.startsWith("+")) {
    const n = Number(head.slice(1));
    if (!isId(n) || members.has(n)) return;
    members.set(
      n,
      new Member((text) => writeLine(`${n} ${text}`), (k) => writeLine(`#${n} ${k}`)),
    );
  } else if (head.startsWith("-")) {
    const n = Number(head.slice(1));
    const m = members.get(n);
    members.delete(n);
    if (m === undefined) return writeLine(`-${n}`);
    m.drop(DROP_WAIT_MS, (terminated) => writeLine(`${terminated ? "-" : "!"}${n}`));
  } else {
    members.get(Number(head))?.fromHost(line.slice(sp + 1));
  }
}

const single = GROUP ? undefined : new Member(writeLine);
if (GROUP) writeLine(JSON.stringify({ kind: "ready", version: PROTOCOL_VERSION }));

/** Relay host lines to the Worker(s); each Worker parses and checks its own. */
async function readHost(): Promise<void> {
  // `Deno.stdin.read`, not `.readable`: web streams would be loaded for this
  // one use (about 2 ms and some memory of every sandbox, Deno 2.9.6).
  const block = new Uint8Array(64 * 1024);
  let buf = new Uint8Array(0);
  for (let n = await Deno.stdin.read(block); n !== null; n = await Deno.stdin.read(block)) {
    const chunk = block.subarray(0, n);
    let data = chunk;
    if (buf.length > 0) {
      data = new Uint8Array(buf.length + chunk.length);
      data.set(buf);
      data.set(chunk, buf.length);
    }
    let start = 0;
    for (let nl = data.indexOf(10, start); nl >= 0; nl = data.indexOf(10, start)) {
      if (nl > start) hostLine(decoder.decode(data.subarray(start, nl)), single);
      start = nl + 1;
    }
    buf = data.slice(start);
  }
}

// The host owns us: when it closes stdin, or dies however it dies (the
// kernel closes the pipe then, SIGKILL included), we go, Worker and all.
// This is the only way a sandbox learns of its host's death: it runs in a
// session and process group of its own (host/bridge/_child.ts), so signals
// to the host's group (Ctrl-C, a service manager's SIGTERM) do not reach it.
readHost().finally(() => Deno.exit(0));
