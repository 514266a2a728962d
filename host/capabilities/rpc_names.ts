/**
 * Who serves which RPC name, across hosts: an RPC name served by the tasks
 * of one script cannot be served by another script (no squatting); tasks
 * of the same script share it, on any host. docs/etcd-layout.md has the keys:
 *
 * - `<root>/status/rpc/<name>/owner`: the script that claimed the name
 *   last. Every claim writes it, so concurrent claims serialise on its
 *   modification revision.
 * - `<root>/status/rpc/<name>/task/<task path>`: one per serving run, its
 *   value the script's name, bound to the run's lease: it vanishes when the
 *   run ends or its host dies.
 *
 * A name is free for a script when no holder key of another script exists.
 *
 * @module
 */

import type { KeyValue, Store } from "../store/store.ts";
import type { Layout } from "../layout.ts";

/** The name is served by tasks of another script. */
export class RpcNameTakenError extends Error {
  override name = "RpcNameTakenError";
  /** The RPC name. */
  readonly rpc: string;
  /** The script whose tasks serve it. */
  readonly owner: string;
  constructor(rpc: string, owner: string) {
    super(
      `RPC name "${rpc}" is served by script "${owner}"; ` +
        "a name can be served by the tasks of one script only",
    );
    this.rpc = rpc;
    this.owner = owner;
  }
}

/** Options of `RpcNames`. */
export interface RpcNamesOptions {
  /**
   * How often a claim or release is tried when other claims of the same
   * name change it meanwhile.
   * @default 8
   */
  attempts?: number;
}

/** Claims of RPC names in the store. */
export class RpcNames {
  #store: Store;
  #layout: Layout;
  #attempts: number;

  /** Claims kept in `store` under `layout`'s `/status/rpc/`. */
  constructor(store: Store, layout: Layout, options: RpcNamesOptions = {}) {
    this.#store = store;
    this.#layout = layout;
    this.#attempts = options.attempts ?? 8;
  }

  #ownerKey(name: string): string {
    return `${this.#layout.rpcPrefix}${name}/owner`;
  }

  #holdersPrefix(name: string): string {
    return `${this.#layout.rpcPrefix}${name}/task/`;
  }

  /** The owner key and every holder key of `name`, read at one revision. */
  async #read(name: string): Promise<{ owner: KeyValue | undefined; holders: KeyValue[] }> {
    const res = await this.#store.txn([], [
      { type: "get", key: this.#ownerKey(name) },
      { type: "get", key: this.#holdersPrefix(name), prefix: true },
    ]);
    const [o, h] = res.responses;
    return {
      owner: o?.type === "get" ? o.kvs[0] : undefined,
      holders: h?.type === "get" ? h.kvs : [],
    };
  }

  /** The runs serving `name` now: task path → script. */
  async holders(name: string): Promise<Map<string, string>> {
    const prefix = this.#holdersPrefix(name);
    const { holders } = await this.#read(name);
    return new Map(holders.map((kv) => [kv.key.slice(prefix.length), kv.value]));
  }

  /**
   * Claim `name` for a run of `script` (task `task`, lease `lease`): write
   * the run's holder key, bound to the lease. Throws `RpcNameTakenError`
   * when a run of another script serves it; store errors pass through.
   */
  async claim(name: string, script: string, task: string, lease: string): Promise<void> {
    const mine = this.#holdersPrefix(name) + task;
    for (let i = 0; i < this.#attempts; i++) {
      const { owner, holders } = await this.#read(name);
      // Holder keys live only as long as their run's lease: any that exists is a live run.
      const other = holders.find((kv) => kv.key !== mine && kv.value !== script);
      if (other) throw new RpcNameTakenError(name, other.value);
      const res = await this.#store.txn(
        // Every claim writes the owner key: two claims that read the same
        // state cannot both succeed.
        [{
          key: this.#ownerKey(name),
          target: "modRevision",
          op: "==",
          value: owner?.modRevision ?? 0,
        }],
        [
          { type: "put", key: this.#ownerKey(name), value: script },
          { type: "put", key: mine, value: script, lease },
        ],
      );
      if (res.succeeded) return;
    }
    throw new Error(
      `cannot claim RPC name "${name}": it changed ${this.#attempts} times while trying`,
    );
  }

  /**
   * Give up the claim of run `task` on `name`: delete its holder key, and
   * the owner key when no other holder is left. Safe when nothing is held.
   */
  async release(name: string, task: string): Promise<void> {
    const mine = this.#holdersPrefix(name) + task;
    for (let i = 0; i < this.#attempts; i++) {
      const { owner, holders } = await this.#read(name);
      if (!owner || holders.some((kv) => kv.key !== mine)) break;
      // The last holder: remove the owner too, unless a claim came meanwhile.
      const res = await this.#store.txn(
        [{ key: this.#ownerKey(name), target: "modRevision", op: "==", value: owner.modRevision }],
        [{ type: "delete", key: mine }, { type: "delete", key: this.#ownerKey(name) }],
      );
      if (res.succeeded) return;
    }
    await this.#store.delete(mine);
  }
}
