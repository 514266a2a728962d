/**
 * A private etcd with TLS, client certificate authentication and etcd's
 * authentication enabled, as etcd's security guide sets one up: free
 * loopback ports, certificates made with openssl in a temporary dir, a
 * `root` user with a password, bounded start-up.
 *
 * @module
 */

import { ETCD, ETCDCTL, freePorts, memberArgs, signalAndWait, spawnReady } from "./etcd_server.ts";
import { type CertFiles, makeCerts, type TestCerts } from "./tls_certs.ts";

/** Options of `startSecureEtcd`. */
export interface SecureEtcdOptions {
  /**
   * Seconds an auth token lives unused (etcd's `--auth-token-ttl`).
   * @default 300
   */
  authTokenTtl?: number;
}

/** A running etcd with TLS and authentication. */
export interface SecureEtcd {
  /** `https://127.0.0.1:PORT`. */
  readonly endpoint: string;
  /** The certificates (CA, server, clients on demand). */
  readonly certs: TestCerts;
  /** The client certificate of etcd's `root` user (CN root). */
  readonly rootCert: CertFiles;
  /** The password of etcd's `root` user. */
  readonly rootPassword: string;
  /**
   * Run etcdctl with TLS as `user` (default root, with its password) and
   * return stdout; throws with stderr when it fails.
   */
  etcdctl(args: string[], as?: { user: string; password: string }): Promise<string>;
  /** Create user `name` with `password` and grant it `roles`. */
  addUser(name: string, password: string, roles: string[]): Promise<void>;
  /** Stop and start again on the same ports and data (auth tokens are lost). */
  restart(): Promise<void>;
  /** Stop etcd and remove its directory. Safe to call twice. */
  stop(): Promise<void>;
}

class LocalSecureEtcd implements SecureEtcd {
  readonly endpoint: string;
  readonly certs: TestCerts;
  readonly rootCert: CertFiles;
  readonly rootPassword = "root-" + crypto.randomUUID().slice(0, 8);
  #args: string[];
  #dir: string;
  #child: Deno.ChildProcess | undefined;
  #removed = false;

  constructor(dir: string, certs: TestCerts, rootCert: CertFiles, ttl: number) {
    this.#dir = dir;
    this.certs = certs;
    this.rootCert = rootCert;
    const [client, peer] = freePorts(2) as [number, number];
    this.endpoint = `https://127.0.0.1:${client}`;
    this.#args = [
      ...memberArgs("secure", dir, this.endpoint, `http://127.0.0.1:${peer}`),
      "--cert-file",
      certs.server.cert,
      "--key-file",
      certs.server.key,
      "--trusted-ca-file",
      certs.ca,
      "--client-cert-auth",
      "--auth-token",
      "simple",
      "--auth-token-ttl",
      String(ttl),
    ];
  }

  /** The etcdctl flags that reach this server as `root`'s certificate. */
  #tlsArgs(timeout: string): string[] {
    return [
      `--endpoints=${this.endpoint}`,
      `--command-timeout=${timeout}`,
      `--cacert=${this.certs.ca}`,
      `--cert=${this.rootCert.cert}`,
      `--key=${this.rootCert.key}`,
    ];
  }

  async etcdctl(args: string[], as?: { user: string; password: string }): Promise<string> {
    const output = await new Deno.Command(ETCDCTL, {
      args: [
        ...this.#tlsArgs("5s"),
        `--user=${as?.user ?? "root"}:${as?.password ?? this.rootPassword}`,
        ...args,
      ],
      env: { ETCDCTL_API: "3" },
      stdin: "null",
    }).output();
    const dec = new TextDecoder();
    if (!output.success) {
      throw new Error(`etcdctl ${args.join(" ")} failed: ${dec.decode(output.stderr).trim()}`);
    }
    return dec.decode(output.stdout);
  }

  async addUser(name: string, password: string, roles: string[]): Promise<void> {
    await this.etcdctl(["user", "add", name, `--new-user-password=${password}`]);
    for (const role of roles) await this.etcdctl(["user", "grant-role", name, role]);
  }

  async #healthy(): Promise<boolean> {
    const output = await new Deno.Command(ETCDCTL, {
      args: [...this.#tlsArgs("1s"), "endpoint", "health"],
      env: { ETCDCTL_API: "3" },
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).output();
    return output.success;
  }

  async start(): Promise<void> {
    this.#child = await spawnReady(ETCD, this.#args, {
      ready: () => this.#healthy(),
      what: `secure etcd at ${this.endpoint}`,
      logPath: `${this.#dir}/etcd.log`,
      intervalMs: 50,
    });
  }

  /** Create the root user and turn authentication on. */
  async enableAuth(): Promise<void> {
    await this.etcdctl(["user", "add", "root", `--new-user-password=${this.rootPassword}`]);
    await this.etcdctl(["user", "grant-role", "root", "root"]);
    await this.etcdctl(["auth", "enable"]);
  }

  async #terminate(): Promise<void> {
    const child = this.#child;
    this.#child = undefined;
    if (child) await signalAndWait(child, "SIGTERM", `etcd at ${this.endpoint}`);
  }

  async restart(): Promise<void> {
    await this.#terminate();
    await this.start();
  }

  async stop(): Promise<void> {
    await this.#terminate();
    if (this.#removed) return;
    this.#removed = true;
    await Deno.remove(this.#dir, { recursive: true }).catch(() => {});
  }
}

/**
 * Start a private etcd with TLS (server certificate for 127.0.0.1),
 * `--client-cert-auth`, and authentication enabled (user `root`). Throws
 * with the tail of the etcd log when it does not come up within 60 s.
 */
export async function startSecureEtcd(options: SecureEtcdOptions = {}): Promise<SecureEtcd> {
  const dir = await Deno.makeTempDir({ prefix: "moat-secure-etcd-" });
  let server: LocalSecureEtcd | undefined;
  try {
    const certs = await makeCerts(dir);
    const rootCert = await certs.client("root");
    server = new LocalSecureEtcd(dir, certs, rootCert, options.authTokenTtl ?? 300);
    await server.start();
    await server.enableAuth();
    return server;
  } catch (error) {
    if (server) await server.stop();
    else await Deno.remove(dir, { recursive: true }).catch(() => {});
    throw error;
  }
}
