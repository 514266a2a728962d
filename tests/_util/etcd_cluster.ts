/**
 * A private etcd cluster of several members on loopback, for fault tests:
 * kill a member, find and kill the leader, stop and restart the whole
 * cluster, read a member's metrics.
 *
 * @module
 */

import { etcdctl, freePorts, isHealthy, logTail, signalAndWait } from "./etcd_server.ts";

const ETCD = "/usr/bin/etcd";
/** Generous: a busy machine starts etcd slowly; this only catches one that never starts. */
const START_TIMEOUT_MS = 60_000;

/** One member of an `EtcdCluster`. */
export interface EtcdMember {
  readonly name: string;
  /** The client URL, `http://127.0.0.1:PORT`. */
  readonly endpoint: string;
  /** Whether its process runs (started and not yet killed). */
  readonly running: boolean;
  /** Send `signal` (default SIGKILL) and wait for the exit; the data stays. */
  kill(signal?: Deno.Signal): Promise<void>;
  /** Start it again on the same ports and data (it rejoins the cluster). */
  start(): Promise<void>;
}

/** A running private etcd cluster. */
export interface EtcdCluster {
  readonly members: readonly EtcdMember[];
  /** Every member's client URL, in member order. */
  readonly endpoints: string[];
  /** The members' endpoints joined by commas, as `--etcd` / `MOAT_ETCD` take them. */
  readonly endpointList: string;
  /** The index of the current leader among the running members (waits for one, ≤ 10 s). */
  leader(): Promise<number>;
  /** Kill every member (SIGKILL by default); the data stays. */
  killAll(signal?: Deno.Signal): Promise<void>;
  /** Start every stopped member again and wait until the cluster is healthy. */
  startAll(): Promise<void>;
  /** Wait (≤ 20 s) until every running member answers `/health` with a leader. */
  healthy(): Promise<void>;
  /** The value of a Prometheus metric (summed over its labels) at one member. */
  metric(member: number, name: string): Promise<number>;
  /** Kill every member and remove the data. Safe to call twice. */
  stop(): Promise<void>;
}

/** Options of `startEtcdCluster`. */
export interface EtcdClusterOptions {
  /** Raft heartbeat interval in ms. @default 50 */
  heartbeatMs?: number;
  /** Raft election timeout in ms. @default 500 */
  electionMs?: number;
}

class Member implements EtcdMember {
  readonly name: string;
  readonly endpoint: string;
  readonly peer: string;
  readonly logPath: string;
  args: string[] = [];
  #child: Deno.ChildProcess | undefined;

  constructor(name: string, dir: string, ports: [number, number]) {
    this.name = name;
    this.endpoint = `http://127.0.0.1:${ports[0]}`;
    this.peer = `http://127.0.0.1:${ports[1]}`;
    this.logPath = `${dir}/${name}.log`;
  }

  get running(): boolean {
    return this.#child !== undefined;
  }

  spawn(): void {
    if (this.#child) return;
    this.#child = new Deno.Command(ETCD, {
      args: this.args,
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
  }

  async start(): Promise<void> {
    this.spawn();
    const deadline = Date.now() + START_TIMEOUT_MS;
    for (let i = 0; i < 2_000 && Date.now() < deadline; i++) {
      if (await isHealthy(this.endpoint)) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(
      `etcd member ${this.name} at ${this.endpoint} not healthy within ${START_TIMEOUT_MS} ms:\n` +
        await logTail(this.logPath, 15),
    );
  }

  async kill(signal: Deno.Signal = "SIGKILL"): Promise<void> {
    const child = this.#child;
    if (!child) return;
    this.#child = undefined;
    await signalAndWait(child, signal, `etcd member ${this.name}`);
  }
}

/**
 * Start an etcd cluster of `n` members on free loopback ports (fast
 * elections: heartbeat 50 ms, election timeout 500 ms) and wait until every
 * member is healthy. Each member logs to `<dir>/<name>.log`.
 */
export async function startEtcdCluster(
  n = 3,
  options: EtcdClusterOptions = {},
): Promise<EtcdCluster> {
  const dir = await Deno.makeTempDir({ prefix: "moat-etcd-cluster-" });
  const token = `moat-${crypto.randomUUID().slice(0, 8)}`;
  const ports = freePorts(2 * n);
  const members = Array.from(
    { length: n },
    (_, i) => new Member(`m${i}`, dir, [ports[2 * i]!, ports[2 * i + 1]!]),
  );
  const initial = members.map((m) => `${m.name}=${m.peer}`).join(",");
  for (const m of members) {
    m.args = [
      "--name",
      m.name,
      "--data-dir",
      `${dir}/${m.name}`,
      "--listen-client-urls",
      m.endpoint,
      "--advertise-client-urls",
      m.endpoint,
      "--listen-peer-urls",
      m.peer,
      "--initial-advertise-peer-urls",
      m.peer,
      "--initial-cluster",
      initial,
      "--initial-cluster-token",
      token,
      "--initial-cluster-state",
      "new",
      "--heartbeat-interval",
      String(options.heartbeatMs ?? 50),
      "--election-timeout",
      String(options.electionMs ?? 500),
      "--logger",
      "zap",
      "--log-outputs",
      m.logPath,
    ];
  }
  let removed = false;
  const endpoints = members.map((m) => m.endpoint);
  const healthy = async () => {
    const up = members.filter((m) => m.running);
    await Promise.all(up.map((m) => m.start()));
  };
  const cluster: EtcdCluster = {
    members,
    endpoints,
    endpointList: endpoints.join(","),
    async leader() {
      const deadline = Date.now() + 10_000;
      let last = "";
      while (Date.now() < deadline) {
        const up = members.filter((m) => m.running).map((m) => m.endpoint);
        try {
          const rows = JSON.parse(
            await etcdctl(up.join(","), "endpoint", "status", "-w", "json"),
          ) as { Endpoint: string; Status: { header: { member_id: unknown }; leader: unknown } }[];
          for (const r of rows) {
            if (String(r.Status.leader) === String(r.Status.header.member_id)) {
              const i = endpoints.indexOf(r.Endpoint);
              if (i >= 0) return i;
            }
          }
          last = "no member says it leads";
        } catch (e) {
          last = (e as Error).message;
        }
        await new Promise((r) => setTimeout(r, 100));
      }
      throw new Error(`no etcd leader within 10 s: ${last}`);
    },
    async killAll(signal: Deno.Signal = "SIGKILL") {
      await Promise.all(members.map((m) => m.kill(signal)));
    },
    async startAll() {
      for (const m of members) m.spawn();
      await healthy();
    },
    healthy,
    async metric(member: number, name: string) {
      const text = await (await fetch(`${endpoints[member]}/metrics`)).text();
      let sum = 0;
      for (const line of text.split("\n")) {
        if (line.startsWith(name + " ") || line.startsWith(name + "{")) {
          sum += Number(line.slice(line.lastIndexOf(" ") + 1));
        }
      }
      return sum;
    },
    async stop() {
      await Promise.all(members.map((m) => m.kill("SIGKILL")));
      if (removed) return;
      removed = true;
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
  try {
    await cluster.startAll();
  } catch (error) {
    await cluster.stop();
    throw error;
  }
  return cluster;
}
