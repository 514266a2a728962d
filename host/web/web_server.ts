/**
 * The server of `moat web`: a read-only page over HTTP, live through
 * server-sent events fed by one etcd watch (WebModel) and the task log
 * stream of the bus (LogReader). Static files are served as they are; the
 * page builds everything with `textContent`, and every script-made string
 * is escaped on the server too.
 *
 * Routes: `/` (task list, errors, schedule preview), `/task?path=P` (one
 * task), `/static/*`, `/api/state`, `/api/events` (SSE `state`),
 * `/api/task?path=P`, `/api/log?path=P` (SSE `line`), `/api/time?spec=S`.
 *
 * @module
 */

import type { Bus } from "../bus/bus.ts";
import type { Store } from "../store/store.ts";
import type { Layout } from "../layout.ts";
import { WebModel } from "./web_model.ts";
import { expectedHosts, LogReader } from "../logs/log_reader.ts";
// The page's files, as they are, imported as text: `deno compile` embeds
// them, so the server needs no source tree at run time.
import INDEX_HTML from "./static/index.html" with { type: "text" };
import TASK_HTML from "./static/task.html" with { type: "text" };
import STYLE_CSS from "./static/style.css" with { type: "text" };
import COMMON_JS from "./static/common.js" with { type: "text" };
import LIST_JS from "./static/list.js" with { type: "text" };
import TASK_JS from "./static/task.js" with { type: "text" };
import type { LogLine } from "../logs/log_line.ts";
import { debugRpcName } from "../tasks/host.ts";
import { escapeControl, terminalJson } from "../text.ts";

/** Where `moat web` listens by default. */
export const DEFAULT_WEB_LISTEN = "127.0.0.1:8470";

/** The Content-Security-Policy of every answer: scripts only from files of this server. */
export const CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join("; ");

/** The cookie that carries the token once a browser has given it. */
const COOKIE = "moat_web_token";

/** One time of a schedule preview. */
export interface PreviewTime {
  time: string;
  unix: number;
  zone: string;
}

/** Options of a `WebServer`. */
export interface WebServerOptions {
  store: Store;
  layout: Layout;
  /** The bus for task logs and debug objects; without it the page says there is no broker. */
  bus?: Bus | undefined;
  /** `ADDR:PORT`. @default DEFAULT_WEB_LISTEN */
  listen?: string;
  /** The token a browser must give; required unless bound to loopback. */
  token?: string | undefined;
  /** The next `count` times of a time spec, as `moat time --json` prints them; throws to refuse. */
  preview(spec: string[], count: number): Promise<PreviewTime[]>;
  /** How long to wait for hosts' log answers and debug objects, ms. @default 3000 */
  busTimeoutMs?: number;
}

/** Whether `host` is a loopback address (or `localhost`). */
export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, "").toLowerCase();
  return h === "localhost" || h === "::1" || /^127\.\d+\.\d+\.\d+$/.test(h);
}

/** Split `ADDR:PORT` (`[v6]:PORT` too); throws RangeError. */
export function parseListen(text: string): { hostname: string; port: number } {
  const m = /^(\[[^\]]+\]|[^:]+):(\d{1,5})$/.exec(text);
  const port = m ? Number(m[2]) : NaN;
  if (!m || port > 65535) {
    throw new RangeError(`--listen must be ADDR:PORT, e.g. 127.0.0.1:8470, not "${text}"`);
  }
  return { hostname: m[1]!.replace(/^\[|\]$/g, ""), port };
}

const HTML = "text/html; charset=utf-8";
const JS = "text/javascript; charset=utf-8";

/** Every file of the page, by the address it is served at: [type, text]. */
const STATIC: Record<string, [string, string]> = {
  "/": [HTML, INDEX_HTML],
  "/task": [HTML, TASK_HTML],
  "/static/style.css": ["text/css; charset=utf-8", STYLE_CSS],
  "/static/common.js": [JS, COMMON_JS],
  "/static/list.js": [JS, LIST_JS],
  "/static/task.js": [JS, TASK_JS],
};

async function sha256(text: string): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text)));
}

/** Compare two secrets in time that does not depend on where they differ. */
async function sameSecret(a: string, b: string): Promise<boolean> {
  const [x, y] = await Promise.all([sha256(a), sha256(b)]);
  let diff = 0;
  for (let i = 0; i < x.length; i++) diff |= x[i]! ^ y[i]!;
  return diff === 0;
}

function cookieOf(req: Request, name: string): string | undefined {
  for (const part of (req.headers.get("cookie") ?? "").split(";")) {
    const i = part.indexOf("=");
    if (i > 0 && part.slice(0, i).trim() === name) return decodeURIComponent(part.slice(i + 1));
  }
  return undefined;
}

interface Client {
  send(event: string, data: string): boolean;
  close(): void;
}

/** The `moat web` server. */
export class WebServer {
  #o: WebServerOptions;
  #model: WebModel;
  #server: Deno.HttpServer<Deno.NetAddr> | undefined;
  #clients = new Set<Client>();
  #pending: ReturnType<typeof setTimeout> | undefined;
  #abort = new AbortController();
  #closed = false;
  #listen: { hostname: string; port: number };

  /** A server that listens once `start()` is called; refuses a non-loopback address without a token. */
  constructor(options: WebServerOptions) {
    this.#o = options;
    this.#listen = parseListen(options.listen ?? DEFAULT_WEB_LISTEN);
    // Anyone who can reach a non-loopback address could read every task's
    // state, data and logs: such a page must ask for the token.
    if (!isLoopback(this.#listen.hostname) && !options.token) {
      throw new RangeError(
        `moat web on "${options.listen}" (not loopback) needs a token: --token or MOAT_WEB_TOKEN`,
      );
    }
    this.#model = new WebModel(options.store, options.layout, { onChange: () => this.#changed() });
  }

  /** The address it listens on, once started. */
  get addr(): Deno.NetAddr {
    if (!this.#server) throw new Error("the web server is not started");
    return this.#server.addr;
  }

  /** Read the tree, watch it, and listen. */
  async start(): Promise<void> {
    await this.#model.start();
    const ready = Promise.withResolvers<void>();
    this.#server = Deno.serve({
      hostname: this.#listen.hostname,
      port: this.#listen.port,
      signal: this.#abort.signal,
      onListen: () => ready.resolve(),
    }, (req) => this.#handle(req));
    await ready.promise;
  }

  #changed(): void {
    // Coalesce: at most one snapshot per 50 ms, always the newest.
    if (this.#pending !== undefined || this.#closed) return;
    this.#pending = setTimeout(() => {
      this.#pending = undefined;
      const data = JSON.stringify(this.#model.state());
      for (const c of this.#clients) c.send("state", data);
    }, 50);
  }

  #headers(type: string): Headers {
    return new Headers({
      "content-type": type,
      "content-security-policy": CSP,
      "x-content-type-options": "nosniff",
      "referrer-policy": "no-referrer",
      "cache-control": "no-store",
    });
  }

  #json(value: unknown, status = 200): Response {
    return new Response(JSON.stringify(value), {
      status,
      headers: this.#headers("application/json; charset=utf-8"),
    });
  }

  async #authorized(req: Request, url: URL): Promise<Response | true> {
    const token = this.#o.token;
    if (!token) return true;
    const given = url.searchParams.get("token");
    if (given !== null && req.method === "GET" && await sameSecret(given, token)) {
      // Trade the token in the address for a cookie, and drop it from the
      // address (and so from history and logs).
      url.searchParams.delete("token");
      const h = this.#headers("text/plain; charset=utf-8");
      h.set("location", url.pathname + url.search);
      h.set(
        "set-cookie",
        `${COOKIE}=${encodeURIComponent(token)}; HttpOnly; SameSite=Strict; Path=/`,
      );
      return new Response("", { status: 303, headers: h });
    }
    const auth = req.headers.get("authorization");
    const bearer = auth?.startsWith("Bearer ") ? auth.slice(7) : undefined;
    const cookie = cookieOf(req, COOKIE);
    for (const t of [bearer, cookie]) {
      if (t !== undefined && await sameSecret(t, token)) return true;
    }
    return new Response("this page needs its token: open it as /?token=TOKEN\n", {
      status: 401,
      headers: this.#headers("text/plain; charset=utf-8"),
    });
  }

  async #handle(req: Request): Promise<Response> {
    const url = new URL(req.url);
    const ok = await this.#authorized(req, url);
    if (ok !== true) return ok;
    if (req.method !== "GET" && req.method !== "HEAD") {
      return new Response("read-only\n", { status: 405, headers: this.#headers("text/plain") });
    }
    if (Object.hasOwn(STATIC, url.pathname)) {
      const [type, text] = STATIC[url.pathname]!;
      return new Response(text, { headers: this.#headers(type) });
    }
    if (url.pathname === "/favicon.ico") {
      return new Response(null, { status: 204, headers: this.#headers("image/x-icon") });
    }
    const path = (url.searchParams.get("path") ?? "").replace(/\/+$/, "");
    switch (url.pathname) {
      case "/api/state":
        return this.#json(this.#model.state());
      case "/api/events":
        return this.#events((c) => c.send("state", JSON.stringify(this.#model.state())));
      case "/api/task":
        return await this.#task(path);
      case "/api/log":
        return this.#log(path);
      case "/api/time":
        return await this.#time(url);
    }
    return new Response("not found\n", { status: 404, headers: this.#headers("text/plain") });
  }

  /** A server-sent event stream; `first` sends what the client starts with. */
  #events(first: (c: Client) => void, onClose?: () => void): Response {
    const enc = new TextEncoder();
    let client: Client | undefined;
    let beat: ReturnType<typeof setInterval> | undefined;
    const stop = () => {
      if (client === undefined) return;
      this.#clients.delete(client);
      client = undefined;
      clearInterval(beat);
      onClose?.();
    };
    const body = new ReadableStream<Uint8Array>({
      start: (controller) => {
        const c: Client = {
          send: (event, data) => {
            // A reader that does not keep up misses snapshots, never
            // grows the server's memory; the next one is complete again.
            if ((controller.desiredSize ?? 1) <= 0) return false;
            try {
              controller.enqueue(enc.encode(`event: ${event}\ndata: ${data}\n\n`));
              return true;
            } catch {
              stop();
              return false;
            }
          },
          close: () => {
            stop();
            try {
              controller.close();
            } catch {
              // Already closed.
            }
          },
        };
        client = c;
        this.#clients.add(c);
        // A comment now and then keeps proxies from closing an idle stream.
        beat = setInterval(() => {
          try {
            controller.enqueue(enc.encode(": beat\n\n"));
          } catch {
            stop();
          }
        }, 15_000);
        first(c);
      },
      cancel: () => stop(),
    }, { highWaterMark: 64 });
    const h = this.#headers("text/event-stream; charset=utf-8");
    h.set("x-accel-buffering", "no");
    return new Response(body, { headers: h });
  }

  async #task(path: string): Promise<Response> {
    const detail = path === "" ? undefined : this.#model.task(path);
    if (detail === undefined) return this.#json({ error: "no such task" }, 404);
    let debug = "";
    const bus = this.#o.bus;
    if (bus === undefined) {
      debug = "(no broker: moat web runs with --amqp none)";
    } else {
      try {
        const answer = await bus.call(debugRpcName(path.split("/")[0]!), path, {
          timeoutMs: this.#o.busTimeoutMs ?? 3000,
        }) as { task?: { script?: Record<string, unknown> } } | null;
        const obj = answer?.task?.script?.[path];
        debug = obj === undefined ? "" : terminalJson(obj, 2);
      } catch (e) {
        debug = `(not available: ${escapeControl((e as Error).message)})`;
      }
    }
    return this.#json({ ...detail, debug });
  }

  #log(path: string): Response {
    const bus = this.#o.bus;
    if (path === "" || this.#model.isHiddenTask(path)) {
      return this.#json({ error: "no such task" }, 404);
    }
    let reader: LogReader | undefined;
    let closed = false;
    const shown = (l: LogLine) =>
      JSON.stringify({
        time: l.time,
        level: l.level,
        task: escapeControl(l.task),
        message: escapeControl(l.message),
      });
    return this.#events((c) => {
      if (bus === undefined) {
        c.send("note", JSON.stringify("no broker: task logs need one"));
        return;
      }
      void (async () => {
        try {
          const r = await LogReader.open(bus, path);
          if (closed) return void await r.close();
          reader = r;
          const rows = this.#model.tasks().filter((t) =>
            t.path === path || t.path.startsWith(path + "/")
          );
          const h = await r.history(expectedHosts(rows), 200, this.#o.busTimeoutMs ?? 3000);
          // A task's page shows its own lines, not those of tasks below it.
          for (const l of h.lines) if (l.task === path) c.send("line", shown(l));
          r.follow((l) => {
            if (l.task === path) c.send("line", shown(l));
          });
          c.send("note", JSON.stringify("following"));
        } catch (e) {
          c.send("note", JSON.stringify(`cannot read the log: ${(e as Error).message}`));
        }
      })();
    }, () => {
      closed = true;
      void reader?.close();
    });
  }

  async #time(url: URL): Promise<Response> {
    const spec = (url.searchParams.get("spec") ?? "").trim().split(/\s+/).filter((w) => w !== "");
    const count = Math.min(20, Math.max(1, Number(url.searchParams.get("count") ?? 5) || 5));
    if (spec.length === 0) return this.#json({ error: "type a time specification" }, 400);
    try {
      return this.#json({ times: await this.#o.preview(spec, count) });
    } catch (e) {
      return this.#json({ error: escapeControl((e as Error).message) }, 400);
    }
  }

  /** Stop listening, end every stream and the watch. Safe twice. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#pending);
    for (const c of [...this.#clients]) c.close();
    this.#abort.abort();
    await this.#server?.finished;
    await this.#model.close();
  }
}
