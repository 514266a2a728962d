/**
 * A loopback TCP proxy that a test can cut and reconnect, to simulate a
 * network partition between a client and a server that stays up; and slow
 * or freeze one direction of it, to simulate a link that delays answers or
 * silently stops carrying requests (connections stay open).
 *
 * @module
 */

/** One direction of the proxied link. */
export type Direction = "toServer" | "toClient";

/** A running proxy: `endpoint` forwards to the target while connected. */
export interface TcpProxy {
  /** `http://127.0.0.1:PORT` of the proxy. */
  readonly endpoint: string;
  /** Hold every byte in `direction` for `ms` before passing it on (in order). 0: none. */
  delay(direction: Direction, ms: number): void;
  /**
   * Stop passing bytes in `direction` (they are held, connections stay
   * open) until `thaw(direction)`.
   */
  freeze(direction: Direction): void;
  /** Pass bytes in `direction` again, those held first. */
  thaw(direction: Direction): void;
  /** Drop every connection and refuse new ones until `reconnect()`. */
  cut(): Promise<void>;
  /** Accept connections again, on the same port. */
  reconnect(): void;
  /** Stop for good. Safe to call twice. */
  close(): Promise<void>;
}

/** Start a proxy on a free loopback port forwarding to `127.0.0.1:targetPort`. */
export function startTcpProxy(targetPort: number): TcpProxy {
  let listener: Deno.Listener | undefined;
  const conns = new Set<Deno.Conn>();
  const tasks = new Set<Promise<void>>();
  let port = 0;
  const delays: Record<Direction, number> = { toServer: 0, toClient: 0 };
  const frozen: Record<Direction, PromiseWithResolvers<void> | undefined> = {
    toServer: undefined,
    toClient: undefined,
  };

  const pipe = async (from: Deno.Conn, to: Deno.Conn, direction: Direction) => {
    const reader = from.readable.getReader();
    const writer = to.writable.getWriter();
    // Chunks pass on in order, each no sooner than its delay after it came.
    let chain = Promise.resolve();
    let broken = false;
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done || broken) break;
        const at = performance.now() + delays[direction];
        chain = chain.then(async () => {
          const wait = at - performance.now();
          if (wait > 0) await new Promise((r) => setTimeout(r, wait));
          // Frozen: hold the chunk (and all after it) until thawed or cut.
          while (frozen[direction] && conns.has(to)) await frozen[direction]!.promise;
          if (!conns.has(to)) throw new Error("cut");
          await writer.write(value);
        }).catch(() => {
          broken = true;
        });
      }
      await chain;
    } catch {
      // One side went away: close both below.
    }
    reader.releaseLock();
    writer.releaseLock();
    for (const conn of [from, to]) {
      if (conns.delete(conn)) {
        try {
          conn.close();
        } catch { /* already closed */ }
      }
    }
  };

  const serve = async (l: Deno.Listener) => {
    for await (const inbound of l) {
      let outbound: Deno.Conn;
      try {
        outbound = await Deno.connect({ hostname: "127.0.0.1", port: targetPort });
      } catch {
        inbound.close();
        continue;
      }
      conns.add(inbound);
      conns.add(outbound);
      for (
        const task of [pipe(inbound, outbound, "toServer"), pipe(outbound, inbound, "toClient")]
      ) {
        tasks.add(task);
        void task.finally(() => tasks.delete(task));
      }
    }
  };

  const listen = () => {
    const l = Deno.listen({ hostname: "127.0.0.1", port });
    port = (l.addr as Deno.NetAddr).port;
    listener = l;
    const task = serve(l).catch(() => {});
    tasks.add(task);
    void task.finally(() => tasks.delete(task));
  };

  const cut = async () => {
    try {
      listener?.close();
    } catch { /* already closed */ }
    listener = undefined;
    for (const conn of conns) {
      try {
        conn.close();
      } catch { /* already closed */ }
    }
    conns.clear();
    // Held chunks are dropped with their connections.
    for (const d of ["toServer", "toClient"] as const) frozen[d]?.resolve();
    await Promise.all([...tasks]);
    for (const d of ["toServer", "toClient"] as const) {
      if (frozen[d]) frozen[d] = Promise.withResolvers<void>();
    }
  };

  listen();
  return {
    endpoint: `http://127.0.0.1:${port}`,
    delay: (direction, ms) => {
      delays[direction] = ms;
    },
    freeze: (direction) => {
      frozen[direction] ??= Promise.withResolvers<void>();
    },
    thaw: (direction) => {
      const f = frozen[direction];
      frozen[direction] = undefined;
      f?.resolve();
    },
    cut,
    reconnect: () => {
      if (!listener) listen();
    },
    close: cut,
  };
}
