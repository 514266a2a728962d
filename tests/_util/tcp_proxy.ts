/**
 * A loopback TCP proxy that a test can cut and reconnect, to simulate a
 * network partition between a client and a server that stays up.
 *
 * @module
 */

/** A running proxy: `endpoint` forwards to the target while connected. */
export interface TcpProxy {
  /** `http://127.0.0.1:PORT` of the proxy. */
  readonly endpoint: string;
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

  const pipe = async (from: Deno.Conn, to: Deno.Conn) => {
    try {
      await from.readable.pipeTo(to.writable);
    } catch {
      // One side went away: close both below.
    }
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
      for (const task of [pipe(inbound, outbound), pipe(outbound, inbound)]) {
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
    await Promise.all([...tasks]);
  };

  listen();
  return {
    endpoint: `http://127.0.0.1:${port}`,
    cut,
    reconnect: () => {
      if (!listener) listen();
    },
    close: cut,
  };
}
