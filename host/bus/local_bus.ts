/**
 * `LocalBus`: the embedded `Bus`, in one process, with the semantics of
 * `AmqpBus` on RabbitMQ: one shared queue per RPC name served round-robin
 * by whichever servers have room, topic patterns matched as a RabbitMQ
 * topic exchange matches them, JSON bodies with a size limit (so handlers
 * get copies, never shared objects), timeouts on both sides.
 *
 * @module
 */

import { withQbrokerTaskFields } from "./task_state.ts";
import type { LogLevel } from "../log.ts";
import {
  type AlertHandler,
  type Bus,
  type BusGroup,
  type BusState,
  BusUnavailableError,
  type CallOptions,
  checkChannels,
  checkPattern,
  checkPositive,
  checkRpcName,
  checkSize,
  checkTopic,
  decodeBody,
  DEFAULT_GROUP_CHANNELS,
  DEFAULT_HANDLER_TIMEOUT_MS,
  DEFAULT_MAX_IN_FLIGHT,
  DEFAULT_MAX_MESSAGE_BYTES,
  encodeBody,
  type GroupOptions,
  prepareCall,
  type Registration,
  type RemoteErrorInfo,
  remoteErrorOf,
  type RpcHandler,
  RpcNoServerError,
  RpcRemoteError,
  RpcTimeoutError,
  type ServeOptions,
  topicMatches,
} from "./bus.ts";

/** Options of `LocalBus`. */
export interface LocalBusOptions {
  /**
   * The largest message body (JSON, in bytes) sent or accepted.
   * @default 1048576
   */
  maxMessageBytes?: number;
  /**
   * How long one handler may run before the bus gives up on it (the caller
   * gets an `RpcRemoteError` of class "TimeoutError"; an alert subscriber
   * moves on to its next alert).
   * @default 60000
   */
  handlerTimeoutMs?: number;
  /**
   * How many requests one `serve` registration handles at once.
   * @default 16
   */
  maxInFlight?: number;
  /**
   * How many alerts may wait for one subscriber; more are dropped (and logged).
   * @default 10000
   */
  maxQueuedAlerts?: number;
  /**
   * How many requests may wait for the servers of one name; beyond it the
   * oldest waiting request is dropped (its caller times out), as RabbitMQ
   * does with `x-max-length` and `x-overflow: drop-head`.
   * @default 10000
   */
  queueLength?: number;
  /** Where the bus reports what it dropped. @default nothing is logged */
  log?: (level: LogLevel, message: string) => void;
}

interface Request {
  name: string;
  body: Uint8Array;
  done: boolean;
  answer(result: { body: Uint8Array } | { error: RemoteErrorInfo }): void;
}

interface Server {
  name: string;
  handler: RpcHandler;
  max: number;
  inFlight: Set<{ controller: AbortController; finish: (error: RemoteErrorInfo) => void }>;
  closed: boolean;
}

interface Subscription {
  pattern: string;
  handler: AlertHandler;
  queue: { topic: string; body: Uint8Array }[];
  running: boolean;
  closed: boolean;
}

/** The embedded `Bus`: everything happens in this process. */
export class LocalBus implements Bus {
  #maxBytes: number;
  #handlerTimeoutMs: number;
  #maxInFlight: number;
  #maxQueuedAlerts: number;
  #queueLength: number;
  #log: (level: LogLevel, message: string) => void;
  #servers = new Map<string, Server[]>();
  #next = new Map<string, number>();
  #waiting = new Map<string, Request[]>();
  #calls = new Set<{ fail: (e: Error) => void }>();
  #subs = new Set<Subscription>();
  #listeners = new Set<(state: BusState) => void>();
  #closed = false;

  /** A bus inside this process, with no broker. */
  constructor(options: LocalBusOptions = {}) {
    this.#maxBytes = checkPositive(
      options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES,
      "maxMessageBytes",
    );
    this.#handlerTimeoutMs = checkPositive(
      options.handlerTimeoutMs ?? DEFAULT_HANDLER_TIMEOUT_MS,
      "handlerTimeoutMs",
    );
    this.#maxInFlight = checkPositive(options.maxInFlight ?? DEFAULT_MAX_IN_FLIGHT, "maxInFlight");
    this.#maxQueuedAlerts = checkPositive(options.maxQueuedAlerts ?? 10_000, "maxQueuedAlerts");
    this.#queueLength = checkPositive(options.queueLength ?? 10_000, "queueLength");
    this.#log = options.log ?? (() => {});
  }

  /** Always true until `close()`. */
  get connected(): boolean {
    return !this.#closed;
  }

  onState(listener: (state: BusState) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  #checkOpen(what: string): void {
    if (this.#closed) throw new BusUnavailableError(`cannot ${what}: the bus is closed`);
  }

  serve(name: string, handler: RpcHandler, options: ServeOptions = {}): Promise<Registration> {
    try {
      checkRpcName(name);
      this.#checkOpen(`serve "${name}"`);
      const server: Server = {
        name,
        handler,
        max: checkPositive(options.maxInFlight ?? this.#maxInFlight, "maxInFlight"),
        inFlight: new Set(),
        closed: false,
      };
      const list = this.#servers.get(name) ?? [];
      list.push(server);
      this.#servers.set(name, list);
      return Promise.resolve({ close: () => Promise.resolve(this.#stopServer(server)) });
    } catch (e) {
      return Promise.reject(e);
    }
  }

  #stopServer(server: Server): void {
    if (server.closed) return;
    server.closed = true;
    const list = (this.#servers.get(server.name) ?? []).filter((s) => s !== server);
    for (const job of [...server.inFlight]) {
      job.finish({ s: "error", m: `the server of "${server.name}" stopped`, c: "BusError" });
    }
    if (list.length > 0) {
      this.#servers.set(server.name, list);
      return;
    }
    // Like an auto-delete queue: with its last server gone, waiting requests vanish.
    this.#servers.delete(server.name);
    this.#next.delete(server.name);
    this.#waiting.delete(server.name);
  }

  call(name: string, args: unknown, options: CallOptions = {}): Promise<unknown> {
    let body: Uint8Array;
    let timeoutMs: number;
    try {
      ({ body, timeoutMs } = prepareCall(name, args, options, this.#maxBytes));
      this.#checkOpen(`call "${name}"`);
    } catch (e) {
      return Promise.reject(e);
    }
    const { promise, resolve, reject } = Promise.withResolvers<unknown>();
    const call = {
      fail: (e: Error) => {
        if (request.done) return;
        request.done = true;
        clearTimeout(timer);
        this.#calls.delete(call);
        reject(e);
      },
    };
    const request: Request = {
      name,
      body,
      done: false,
      answer: (result) => {
        if (request.done) return;
        request.done = true;
        clearTimeout(timer);
        this.#calls.delete(call);
        if ("error" in result) reject(new RpcRemoteError(name, result.error));
        else {
          try {
            checkSize(result.body.length, this.#maxBytes, `the reply from "${name}"`);
            resolve(decodeBody(result.body, `the reply from "${name}"`));
          } catch (e) {
            reject(e);
          }
        }
      },
    };
    const timer = setTimeout(() => {
      const queue = this.#waiting.get(name);
      if (queue) this.#waiting.set(name, queue.filter((r) => r !== request));
      call.fail(new RpcTimeoutError(name, timeoutMs));
    }, timeoutMs);
    this.#calls.add(call);
    // Like an unroutable request on AMQP (the `dead` alternate exchange):
    // with no server at all, the caller learns so at once.
    if (!this.#servers.has(name)) {
      queueMicrotask(() => call.fail(new RpcNoServerError(name, `nobody serves "${name}"`)));
    } else {
      const queue = this.#waiting.get(name) ?? [];
      if (queue.length >= this.#queueLength) {
        queue.shift();
        this.#log("debug", `dropped the oldest request to "${name}": ${queue.length} are waiting`);
      }
      queue.push(request);
      this.#waiting.set(name, queue);
      queueMicrotask(() => this.#dispatch(name));
    }
    return promise;
  }

  /** Hand waiting requests of `name` to servers with room, round-robin. */
  #dispatch(name: string): void {
    const queue = this.#waiting.get(name);
    const servers = this.#servers.get(name);
    if (!queue || !servers) return;
    while (queue.length > 0) {
      let chosen: Server | undefined;
      const start = this.#next.get(name) ?? 0;
      for (let i = 0; i < servers.length; i++) {
        const s = servers[(start + i) % servers.length]!;
        if (s.inFlight.size < s.max) {
          chosen = s;
          this.#next.set(name, (start + i + 1) % servers.length);
          break;
        }
      }
      if (!chosen) return;
      const request = queue.shift()!;
      if (!request.done) this.#run(chosen, request);
    }
  }

  #run(server: Server, request: Request): void {
    const controller = new AbortController();
    let finished = false;
    const job = {
      controller,
      finish: (outcome: RemoteErrorInfo | { body: Uint8Array }) => {
        if (finished) return;
        finished = true;
        clearTimeout(timer);
        server.inFlight.delete(job);
        if ("s" in outcome) {
          controller.abort(new Error(outcome.m));
          request.answer({ error: outcome });
        } else request.answer(outcome);
        queueMicrotask(() => this.#dispatch(server.name));
      },
    };
    const timer = setTimeout(() => {
      this.#log(
        "warn",
        `handler of "${server.name}" did not finish within ${this.#handlerTimeoutMs} ms`,
      );
      job.finish({
        s: "error",
        m: `the handler of "${server.name}" did not finish within ${this.#handlerTimeoutMs} ms`,
        c: "TimeoutError",
      });
    }, this.#handlerTimeoutMs);
    server.inFlight.add(job);
    const name = server.name;
    Promise.resolve()
      .then(() =>
        server.handler(decodeBody(request.body, `the request to "${name}"`), {
          name,
          signal: controller.signal,
        })
      )
      .then((result) => {
        const body = encodeBody(result, `the result of "${name}"`);
        checkSize(body.length, this.#maxBytes, `the reply from "${name}"`);
        job.finish({ body });
      })
      .catch((e: unknown) => job.finish(remoteErrorOf(e)));
  }

  onAlert(pattern: string, handler: AlertHandler): Promise<Registration> {
    try {
      checkPattern(pattern);
      this.#checkOpen(`listen to "${pattern}"`);
    } catch (e) {
      return Promise.reject(e);
    }
    const sub: Subscription = { pattern, handler, queue: [], running: false, closed: false };
    this.#subs.add(sub);
    return Promise.resolve({
      close: () => {
        sub.closed = true;
        sub.queue.length = 0;
        this.#subs.delete(sub);
        return Promise.resolve();
      },
    });
  }

  alert(topic: string, data: unknown): Promise<void> {
    try {
      checkTopic(topic);
      const body = encodeBody(withQbrokerTaskFields(topic, data), `the data of alert "${topic}"`);
      checkSize(body.length, this.#maxBytes, `the alert "${topic}"`);
      this.#checkOpen(`send alert "${topic}"`);
      for (const sub of this.#subs) {
        if (!topicMatches(sub.pattern, topic)) continue;
        if (sub.queue.length >= this.#maxQueuedAlerts) {
          this.#log("warn", `dropped alert "${topic}": subscriber of "${sub.pattern}" is behind`);
          continue;
        }
        sub.queue.push({ topic, body });
        if (!sub.running) {
          sub.running = true;
          queueMicrotask(() => void this.#pump(sub));
        }
      }
      return Promise.resolve();
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** Deliver a subscriber's alerts one at a time, in order. */
  async #pump(sub: Subscription): Promise<void> {
    while (!sub.closed && sub.queue.length > 0) {
      const { topic, body } = sub.queue.shift()!;
      let timer: ReturnType<typeof setTimeout> | undefined;
      try {
        await Promise.race([
          Promise.resolve().then(() => sub.handler(topic, decodeBody(body, `alert "${topic}"`))),
          new Promise<void>((resolve) => {
            timer = setTimeout(() => {
              this.#log(
                "warn",
                `alert handler of "${sub.pattern}" did not finish within ${this.#handlerTimeoutMs} ms`,
              );
              resolve();
            }, this.#handlerTimeoutMs);
          }),
        ]);
      } catch (e) {
        this.#log("warn", `alert handler of "${sub.pattern}" failed on "${topic}": ${String(e)}`);
      } finally {
        clearTimeout(timer);
      }
    }
    sub.running = false;
  }

  /**
   * A group of registrations. There are no channels in one process: the
   * count is only checked, and the group ends its registrations together.
   */
  group(options: GroupOptions = {}): BusGroup {
    checkChannels(options.channels ?? DEFAULT_GROUP_CHANNELS);
    const regs = new Set<Registration>();
    let closed = false;
    const add = async (what: string, make: () => Promise<Registration>) => {
      if (closed) throw new BusUnavailableError(`cannot ${what}: the group is closed`);
      const reg = await make();
      let done = false;
      const mine: Registration = {
        close: async () => {
          if (done) return;
          done = true;
          regs.delete(mine);
          await reg.close();
        },
      };
      regs.add(mine);
      return mine;
    };
    return {
      serve: (name, handler, o) => add(`serve "${name}"`, () => this.serve(name, handler, o)),
      onAlert: (pattern, handler) =>
        add(`listen to "${pattern}"`, () => this.onAlert(pattern, handler)),
      get size() {
        return regs.size;
      },
      close: async () => {
        closed = true;
        await Promise.all([...regs].map((r) => r.close()));
      },
    };
  }

  close(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    this.#closed = true;
    for (const call of [...this.#calls]) {
      call.fail(new BusUnavailableError("the call failed: the bus was closed"));
    }
    for (const servers of [...this.#servers.values()]) {
      for (const s of servers) this.#stopServer(s);
    }
    for (const sub of this.#subs) {
      sub.closed = true;
      sub.queue.length = 0;
    }
    this.#subs.clear();
    for (const l of this.#listeners) l("closed");
    this.#listeners.clear();
    return Promise.resolve();
  }
}
