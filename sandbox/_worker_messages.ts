/**
 * RPC requests and alerts inside the script's Worker: the handlers the
 * script registered (`moat.rpc`, `moat.on_alert`), deliveries that arrive
 * before a registration's id is known, and the one reply each RPC request
 * gets.
 *
 * Like every `sandbox/_worker_*.ts` module, the function here is copied
 * into the Worker as source text: it may use globals and its parameters,
 * nothing else from this module.
 *
 * @module
 */

import type { AlertEvent, Json, RpcEvent } from "./protocol.ts";
import type { BridgeClient } from "./_worker_bridge.ts";

/** What {@linkcode scriptMessages} gives the `moat` object. */
export interface ScriptMessages {
  /** Only JSON crosses the bridge: undefined becomes null; a cycle is a TypeError. */
  toJson(value: unknown, what: string): Json;
  /** `moat.rpc(name)(handler)` got its registration id. */
  serve(id: number, handler: (args: unknown) => unknown): void;
  /** `moat.on_alert(pattern)(handler)` got its registration id. */
  listen(id: number, handler: (topic: string, data: unknown) => unknown): void;
  /** An `rpc` event: call the handler, send its one reply. */
  onRpc(ev: RpcEvent): void;
  /** An `alert` event: call the handler. */
  onAlert(ev: AlertEvent): void;
}

/**
 * RPC and alert handling over `bridge`. `fail` ends the script with an
 * error (an alert handler threw); `isEnding` says whether it is ending.
 */
export function scriptMessages(
  bridge: BridgeClient,
  fail: (err: unknown) => void,
  isEnding: () => boolean,
): ScriptMessages {
  const { call, describe } = bridge;
  const parse = JSON.parse;
  const stringify = JSON.stringify;
  const toJson = (value: unknown, what: string): Json => {
    if (value === undefined) return null;
    try {
      return parse(stringify(value)) as Json;
    } catch {
      throw new TypeError(`${what}: the value cannot be sent as JSON`);
    }
  };
  const rpcHandlers = new Map<number, (args: unknown) => unknown>();
  const alertHandlers = new Map<number, (topic: string, data: unknown) => unknown>();
  // Deliveries that arrive before the registration's id is known here.
  const early = new Map<number, (() => void)[]>();
  const register = <F>(id: number, map: Map<number, F>, fn: F) => {
    map.set(id, fn);
    for (const run of early.get(id) ?? []) run();
    early.delete(id);
  };
  const later = (id: number, run: () => void) => {
    const list = early.get(id) ?? [];
    if (list.length < 1000) list.push(run);
    early.set(id, list);
  };
  const onRpc = (ev: RpcEvent): void => {
    const handler = rpcHandlers.get(ev.id);
    if (!handler) return later(ev.id, () => onRpc(ev));
    const reply = (ok: boolean, value: Json) => {
      if (isEnding()) return;
      try {
        call("rpc_reply", [ev.call, ok, value]).result.then(undefined, () => {});
      } catch (err) {
        // The reply did not fit the bridge (or too many calls are in
        // flight): the caller still gets one answer, a short error.
        const why = String(describe(err).message).slice(0, 500);
        try {
          call("rpc_reply", [ev.call, false, {
            message: `the reply could not be sent: ${why}`,
            class: "RangeError",
          }]).result.then(undefined, () => {});
        } catch {
          // The host's handler timeout answers the caller.
        }
      }
    };
    Promise.resolve().then(() => handler(ev.args)).then(
      (v) => {
        try {
          reply(true, toJson(v, `the result of RPC ${ev.name}`));
        } catch (err) {
          reply(false, { message: describe(err).message, class: "TypeError" });
        }
      },
      (err) => {
        const { message } = describe(err);
        const cls = err instanceof Error ? String(err.name) : "Error";
        reply(false, { message, class: cls });
      },
    );
  };
  const onAlert = (ev: AlertEvent): void => {
    const handler = alertHandlers.get(ev.id);
    if (!handler) return later(ev.id, () => onAlert(ev));
    if (isEnding()) return;
    try {
      const r = handler(ev.topic, ev.data);
      if (r && typeof (r as Promise<unknown>).then === "function") {
        (r as Promise<unknown>).then(undefined, fail);
      }
    } catch (err) {
      fail(err);
    }
  };

  return {
    toJson,
    serve: (id, handler) => register(id, rpcHandlers, handler),
    listen: (id, handler) => register(id, alertHandlers, handler),
    onRpc,
    onAlert,
  };
}
