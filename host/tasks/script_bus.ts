/**
 * What one running script does on the bus (AMQP or the embedded LocalBus):
 * the RPC names it serves, the alert patterns it listens to, its calls and
 * alerts, and its debug object. Every registration dies with the run.
 *
 * RPC requests and alerts reach the script as `rpc` and `alert` events;
 * the script answers a request with the `rpc_reply` bridge method.
 *
 * @module
 */

import {
  type Bus,
  BusUnavailableError,
  checkPattern,
  checkRpcName,
  checkTopic,
  type Registration,
  RpcRemoteError,
  RpcTimeoutError,
} from "../bus/bus.ts";
import { BridgeError } from "../bridge/validate.ts";
import type { Json } from "../../sandbox/protocol.ts";

/** Most registrations (RPC names plus alert patterns) one run may hold. */
export const MAX_REGISTRATIONS = 100;

/** A script's error, as an RPC caller sees it: its message and its class name. */
export class ScriptRpcError extends Error {
  constructor(message: string, className: string) {
    super(message);
    // The caller sees the script's own class name (e.g. "RangeError").
    this.name = /^[A-Za-z_$][\w$]{0,99}$/.test(className) ? className : "Error";
  }
}

function badName(e: unknown): never {
  throw new BridgeError("bad_name", (e as Error).message);
}

/** The bus as one run of a script uses it. */
export class ScriptBus {
  #bus: Bus;
  #send: (event: string, data: Json) => void;
  #regs: Registration[] = [];
  #nextId = 1;
  #pending = new Map<number, { resolve(v: unknown): void; reject(e: Error): void }>();
  #nextCall = 1;
  #closed = false;
  /** The value of `moat.debug_obj`, if any. */
  debug: Json | undefined;

  constructor(bus: Bus, send: (event: string, data: Json) => void) {
    this.#bus = bus;
    this.#send = send;
  }

  #room(): void {
    if (this.#regs.length >= MAX_REGISTRATIONS) {
      throw new BridgeError(
        "too_many",
        `a script may register at most ${MAX_REGISTRATIONS} handlers`,
      );
    }
  }

  async #keep(reg: Registration, id: number): Promise<number> {
    if (this.#closed) {
      await reg.close();
      throw new BridgeError("ended", "the script has ended");
    }
    this.#regs.push(reg);
    return id;
  }

  /** Serve RPC `name`: requests become `rpc` events; returns the registration id. */
  async serve(name: string): Promise<number> {
    try {
      checkRpcName(name);
    } catch (e) {
      badName(e);
    }
    this.#room();
    // Take the id now: registrations made at once (two moat.rpc calls in a
    // row) await the broker concurrently, and each handler must keep its own.
    const id = this.#nextId++;
    const reg = await this.#bus.serve(name, (args, info) => {
      if (this.#closed) return Promise.reject(new ScriptRpcError("the script has ended", "Ended"));
      const call = this.#nextCall++;
      return new Promise((resolve, reject) => {
        this.#pending.set(call, { resolve, reject });
        info.signal.addEventListener("abort", () => this.#pending.delete(call), { once: true });
        this.#send("rpc", { id, call, name, args: (args ?? null) as Json });
      });
    }).catch((e) => {
      if (e instanceof RangeError) badName(e);
      throw new BridgeError("unavailable", `cannot serve "${name}": ${(e as Error).message}`);
    });
    return await this.#keep(reg, id);
  }

  /** The script's answer to request `call`. Unknown or late answers are ignored. */
  reply(call: number, ok: boolean, value: Json): void {
    const p = this.#pending.get(call);
    if (!p) return;
    this.#pending.delete(call);
    if (ok) p.resolve(value);
    else {
      const v = (value ?? {}) as { message?: unknown; class?: unknown };
      p.reject(new ScriptRpcError(String(v.message ?? "error"), String(v.class ?? "Error")));
    }
  }

  /** Listen to alerts matching `pattern`: they become `alert` events. */
  async listen(pattern: string): Promise<number> {
    try {
      checkPattern(pattern);
    } catch (e) {
      badName(e);
    }
    this.#room();
    // Take the id now: registrations made at once (two moat.rpc calls in a
    // row) await the broker concurrently, and each handler must keep its own.
    const id = this.#nextId++;
    const reg = await this.#bus.onAlert(pattern, (topic, data) => {
      this.#send("alert", { id, topic, data: (data ?? null) as Json });
    }).catch((e) => {
      throw new BridgeError(
        "unavailable",
        `cannot listen to "${pattern}": ${(e as Error).message}`,
      );
    });
    return await this.#keep(reg, id);
  }

  /** Call RPC `name`; errors become BridgeErrors with clear messages. */
  async call(name: string, args: Json, timeoutSec: number): Promise<Json> {
    try {
      checkRpcName(name);
    } catch (e) {
      badName(e);
    }
    try {
      return (await this.#bus.call(name, args, { timeoutMs: timeoutSec * 1000 })) as Json;
    } catch (e) {
      if (e instanceof RpcRemoteError) throw new BridgeError("rpc_error", e.message);
      if (e instanceof RpcTimeoutError) throw new BridgeError("timeout", e.message);
      if (e instanceof BusUnavailableError) throw new BridgeError("unavailable", e.message);
      if (e instanceof RangeError || e instanceof TypeError) {
        throw new BridgeError("bad_args", e.message);
      }
      throw new BridgeError("unavailable", `call of "${name}" failed`);
    }
  }

  /** Publish an alert. */
  async alert(topic: string, data: Json): Promise<void> {
    try {
      checkTopic(topic);
    } catch (e) {
      badName(e);
    }
    try {
      await this.#bus.alert(topic, data);
    } catch (e) {
      if (e instanceof RangeError) throw new BridgeError("bad_args", e.message);
      throw new BridgeError("unavailable", `cannot send alert "${topic}": ${(e as Error).message}`);
    }
  }

  /** Drop every registration and fail requests in flight. Safe to call twice. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const p of this.#pending.values()) {
      p.reject(new ScriptRpcError("the script has ended", "Ended"));
    }
    this.#pending.clear();
    await Promise.allSettled(this.#regs.splice(0).map((r) => r.close()));
  }
}
