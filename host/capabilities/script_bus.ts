/**
 * What one running script does on the bus (AMQP or the embedded LocalBus):
 * the RPC names it serves, the alert patterns it listens to, its calls and
 * alerts, and its debug object. Every registration dies with the run.
 *
 * RPC requests and alerts reach the script as `rpc` and `alert` events;
 * the script answers a request with the `rpc_reply` bridge method.
 *
 * A script is untrusted, so this is where what it may cost the broker is
 * bounded (docs/amqp.md, docs/security.md): registrations per run (quota
 * `registrations`, counted before the broker is awaited), channels per run
 * (one bus group of `channels` channels), names starting with `moat.`
 * (reserved for the hosts and the CLI), and RPC names served by another
 * script (claimed in the store, `rpc_names.ts`).
 *
 * @module
 */

import {
  type Bus,
  type BusGroup,
  BusLimitError,
  BusUnavailableError,
  checkPattern,
  checkRpcName,
  checkTopic,
  MAX_ERROR_MESSAGE_BYTES,
  type Registration,
  RpcRemoteError,
  RpcTimeoutError,
  truncateUtf8,
} from "../bus/bus.ts";
import { CapabilityError } from "./capability_error.ts";
import type { Json, ScriptEvent } from "../../sandbox/protocol.ts";
import { DEFAULT_QUOTAS, quotaError, type Quotas } from "./quotas.ts";
import { type RpcNames, RpcNameTakenError } from "./rpc_names.ts";
import type { Grants } from "./manifest.ts";

/** A script's error, as an RPC caller sees it: its message and its class name. */
export class ScriptRpcError extends Error {
  constructor(message: string, className: string) {
    super(message);
    // The caller sees the script's own class name (e.g. "RangeError").
    this.name = /^[A-Za-z_$][\w$]{0,99}$/.test(className) ? className : "Error";
  }
}

/** What a run claims its RPC names as (see `RpcNames`). */
export interface RpcClaims {
  names: RpcNames;
  /** The script the run runs. */
  script: string;
  /** The run's task path. */
  task: string;
  /** The run's lease: its claims vanish with it. */
  lease: string;
}

/** Options of `ScriptBus`. */
export interface ScriptBusOptions {
  /** The run's quotas (`registrations`, `channels`). @default DEFAULT_QUOTAS */
  quotas: Quotas;
  /** Where RPC names are claimed; without it names are not checked for squatting. */
  claims?: RpcClaims | undefined;
  /** The capability manifest's limits (`rpc`, `alert`); without it, none. */
  grants?: Grants | undefined;
}

/** The first word of the names and topics that belong to the hosts and the CLI. */
const RESERVED_WORD = "moat";

/** Whether an RPC name or alert topic belongs to the hosts and the CLI (`moat.…`). */
export function isReserved(name: string): boolean {
  return name === RESERVED_WORD || name.startsWith(`${RESERVED_WORD}.`);
}

/**
 * Whether a script may listen to `pattern`. Listening only reads, and
 * alerts are broadcast: the hosts' task state alerts (`moat.task.…`) are
 * useful to a monitoring script, so `moat.task.#` and patterns that start
 * with a wildcard (`#` sees them too) are fine. A pattern that names
 * another reserved word (`moat.debug.*`, `moat.#`) is refused.
 */
export function mayListen(pattern: string): boolean {
  const words = pattern.split(".");
  return words[0] !== RESERVED_WORD || words[1] === "task";
}

function badName(e: unknown): never {
  throw new CapabilityError("bad_name", (e as Error).message);
}

function reserved(kind: string, name: string): never {
  throw new CapabilityError(
    "reserved",
    `${kind} "${name}" is reserved: names starting with "${RESERVED_WORD}." belong to ` +
      "the MoaT hosts and the moat command",
  );
}

/** The bus as one run of a script uses it. */
export class ScriptBus {
  #bus: Bus;
  #send: (event: ScriptEvent) => void;
  #quotas: Quotas;
  #claims: RpcClaims | undefined;
  #grants: Grants | undefined;
  #group: BusGroup;
  /** Registrations taken, including those still waiting for the broker. */
  #taken = 0;
  #regs: Registration[] = [];
  /** RPC names claimed (or being claimed) in the store by this run. */
  #claimed = new Map<string, Promise<void>>();
  #nextId = 1;
  #pending = new Map<number, { resolve(v: unknown): void; reject(e: Error): void }>();
  #nextCall = 1;
  #closed = false;

  constructor(
    bus: Bus,
    send: (event: ScriptEvent) => void,
    options: ScriptBusOptions = { quotas: DEFAULT_QUOTAS },
  ) {
    this.#bus = bus;
    this.#send = send;
    this.#quotas = options.quotas;
    this.#claims = options.claims;
    this.#grants = options.grants;
    // One group per run: all of its registrations share `channels` channels.
    this.#group = bus.group({ channels: Math.max(1, Math.floor(this.#quotas.channels)) });
  }

  /** Registrations the run holds or is making. */
  get registrations(): number {
    return this.#taken;
  }

  /**
   * Take one registration of the quota before anything is awaited, so that
   * concurrent registrations cannot pass the limit together.
   */
  #take(what: string): void {
    if (this.#closed) throw new CapabilityError("ended", "the script has ended");
    const max = this.#quotas.registrations;
    if (this.#taken >= max) {
      throw quotaError(
        this.#quotas,
        "registrations",
        `cannot ${what}: the script holds ${max} registrations already`,
      );
    }
    this.#taken++;
  }

  async #keep(reg: Registration, id: number): Promise<number> {
    if (this.#closed) {
      await reg.close();
      throw new CapabilityError("ended", "the script has ended");
    }
    this.#regs.push(reg);
    return id;
  }

  /** Claim `name` for this run's script, once per name. */
  #claim(name: string): Promise<void> {
    const c = this.#claims;
    if (!c) return Promise.resolve();
    let p = this.#claimed.get(name);
    if (!p) {
      p = c.names.claim(name, c.script, c.task, c.lease);
      this.#claimed.set(name, p);
      // A failed claim can be tried again later.
      p.catch(() => {
        if (this.#claimed.get(name) === p) this.#claimed.delete(name);
      });
    }
    return p.catch((e) => {
      if (e instanceof RpcNameTakenError) throw new CapabilityError("taken", e.message);
      throw new CapabilityError(
        "unavailable",
        `cannot serve "${name}": the claim of the name failed: ${(e as Error).message}`,
      );
    });
  }

  #busError(what: string, e: unknown): never {
    if (e instanceof CapabilityError) throw e;
    if (e instanceof RangeError) badName(e);
    if (e instanceof BusLimitError) throw new CapabilityError("limit", e.message);
    throw new CapabilityError("unavailable", `cannot ${what}: ${(e as Error).message}`);
  }

  /** Serve RPC `name`: requests become `rpc` events; returns the registration id. */
  async serve(name: string): Promise<number> {
    try {
      checkRpcName(name);
    } catch (e) {
      badName(e);
    }
    if (isReserved(name)) reserved("RPC name", name);
    this.#grants?.rpcServe(name);
    this.#take(`serve "${name}"`);
    // Take the id now: registrations made at once (two moat.rpc calls in a
    // row) await the broker concurrently, and each handler must keep its own.
    const id = this.#nextId++;
    let reg: Registration;
    try {
      await this.#claim(name);
      if (this.#closed) throw new CapabilityError("ended", "the script has ended");
      reg = await this.#group.serve(name, (args, info) => {
        if (this.#closed) {
          return Promise.reject(new ScriptRpcError("the script has ended", "Ended"));
        }
        const call = this.#nextCall++;
        return new Promise((resolve, reject) => {
          this.#pending.set(call, { resolve, reject });
          info.signal.addEventListener("abort", () => this.#pending.delete(call), { once: true });
          this.#send({ event: "rpc", data: { id, call, name, args: (args ?? null) as Json } });
        });
      });
    } catch (e) {
      // Give the registration back: it was never made.
      this.#taken--;
      this.#busError(`serve "${name}"`, e);
    }
    return await this.#keep(reg, id);
  }

  /**
   * The script's answer to request `call`. Unknown or late answers are
   * ignored. The value is the script's, so nothing in it is trusted: an
   * error's message is cut to 4 KiB and its class must be an identifier.
   */
  reply(call: number, ok: boolean, value: Json): void {
    const p = this.#pending.get(call);
    if (!p) return;
    this.#pending.delete(call);
    if (ok) {
      p.resolve(value);
      return;
    }
    const v = value !== null && typeof value === "object" && !Array.isArray(value)
      ? value as { message?: unknown; class?: unknown }
      : {};
    // No String() of arbitrary JSON: a deeply nested array would overflow the stack.
    const m = v.message;
    const message = typeof m === "string"
      ? truncateUtf8(m, MAX_ERROR_MESSAGE_BYTES)
      : typeof m === "number" || typeof m === "boolean"
      ? String(m)
      : "error";
    const cls = typeof v.class === "string" ? v.class : "Error";
    p.reject(new ScriptRpcError(message, cls));
  }

  /** Listen to alerts matching `pattern`: they become `alert` events. */
  async listen(pattern: string): Promise<number> {
    try {
      checkPattern(pattern);
    } catch (e) {
      badName(e);
    }
    if (!mayListen(pattern)) reserved("alert pattern", pattern);
    this.#grants?.alertReceive(pattern);
    this.#take(`listen to "${pattern}"`);
    // Take the id now: registrations made at once (two moat.rpc calls in a
    // row) await the broker concurrently, and each handler must keep its own.
    const id = this.#nextId++;
    let reg: Registration;
    try {
      reg = await this.#group.onAlert(pattern, (topic, data) => {
        this.#send({ event: "alert", data: { id, topic, data: (data ?? null) as Json } });
      });
    } catch (e) {
      this.#taken--;
      this.#busError(`listen to "${pattern}"`, e);
    }
    return await this.#keep(reg, id);
  }

  /** Call RPC `name`; errors become CapabilityErrors with clear messages. */
  async call(name: string, args: Json, timeoutSec: number): Promise<Json> {
    try {
      checkRpcName(name);
    } catch (e) {
      badName(e);
    }
    if (isReserved(name)) reserved("RPC name", name);
    this.#grants?.rpcCall(name);
    try {
      return (await this.#bus.call(name, args, { timeoutMs: timeoutSec * 1000 })) as Json;
    } catch (e) {
      // rpc_error, or no_server when nobody took the request (RpcNoServerError).
      if (e instanceof RpcRemoteError) throw new CapabilityError(e.code, e.message);
      if (e instanceof RpcTimeoutError) throw new CapabilityError("timeout", e.message);
      if (e instanceof BusUnavailableError) throw new CapabilityError("unavailable", e.message);
      if (e instanceof RangeError || e instanceof TypeError) {
        throw new CapabilityError("bad_args", e.message);
      }
      throw new CapabilityError("unavailable", `call of "${name}" failed`);
    }
  }

  /** Publish an alert. */
  async alert(topic: string, data: Json): Promise<void> {
    try {
      checkTopic(topic);
    } catch (e) {
      badName(e);
    }
    if (isReserved(topic)) reserved("alert topic", topic);
    this.#grants?.alertSend(topic);
    try {
      await this.#bus.alert(topic, data);
    } catch (e) {
      if (e instanceof RangeError) throw new CapabilityError("bad_args", e.message);
      throw new CapabilityError(
        "unavailable",
        `cannot send alert "${topic}": ${(e as Error).message}`,
      );
    }
  }

  /**
   * Drop every registration, fail requests in flight and give up the RPC
   * names claimed. Safe to call twice.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const p of this.#pending.values()) {
      p.reject(new ScriptRpcError("the script has ended", "Ended"));
    }
    this.#pending.clear();
    this.#regs.length = 0;
    await this.#group.close();
    const c = this.#claims;
    if (c) {
      // Best effort: the holder keys are bound to the run's lease anyway.
      await Promise.allSettled(
        [...this.#claimed].map(([name, p]) => p.then(() => c.names.release(name, c.task))),
      );
      this.#claimed.clear();
    }
  }
}
