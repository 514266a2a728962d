/**
 * Quotas: what one script may make the installation spend through `moat`
 * (etcd bytes and reads, broker channels and queues, host work for
 * watches). Each has a default sized for home automation, set for the
 * whole install under `/config/run/<key>` and per task under
 * `/task/<host>/<name…>/:task/<key>` (the task wins), like the sandbox
 * limits (limits.ts). The host enforces them; a call over a quota is
 * refused with `MoatError` code `quota` and a message naming the key.
 * docs/security.md has the table.
 *
 * @module
 */

import { CapabilityError } from "./capability_error.ts";
import { readSettings, TokenBucket } from "../bridge/limits.ts";

/** The quotas of one script run. */
export interface Quotas {
  /**
   * Key `value_size`: bytes of one value a script writes (a `moat.data`
   * value, a `set_error` message, an alert's data, an RPC call's arguments
   * or reply), as UTF-8 JSON. @default 65536
   */
  valueSize: number;
  /** Key `data_size`: bytes (keys and values) of the task's `data/`. @default 1048576 */
  dataSize: number;
  /** Key `data_keys`: keys in the task's `data/`. @default 1000 */
  dataKeys: number;
  /** Key `write_rate`: store writes per second (token bucket holding 5 s worth). @default 20 */
  writeRate: number;
  /**
   * Key `write_volume`: bytes written to the store per second (a bucket of
   * 4 s, and at least one `value_size`). @default 16384
   */
  writeVolume: number;
  /** Key `error_records`: error records of one task (the oldest is replaced). @default 100 */
  errorRecords: number;
  /** Key `reads_in_flight`: store reads (`tree.lookup`, `load`) at once. @default 8 */
  readsInFlight: number;
  /** Key `read_rate`: store reads per second (token bucket holding 2 s worth). @default 20 */
  readRate: number;
  /** Key `monitors`: tree paths a run watches (`moat.monitor`, `str/ref` data). @default 100 */
  monitors: number;
  /** Key `registrations`: RPC names plus alert patterns a run registers. @default 100 */
  registrations: number;
  /** Key `channels`: AMQP channels a run's registrations share. @default 2 */
  channels: number;
  /**
   * Key `queue_length`: messages that may wait in one queue the host
   * declares (`x-max-length`). Install-wide only: every declarer of a
   * shared queue must use the same value. @default 10000
   */
  queueLength: number;
  /**
   * Key `queue_bytes`: bytes of messages that may wait in one queue the host
   * declares (`x-max-length-bytes`). Install-wide only, like
   * `queue_length`. @default 16777216
   */
  queueBytes: number;
  /**
   * Key `queue_ttl`: seconds a message may wait in one queue the host
   * declares (`x-message-ttl`). Install-wide only, like `queue_length`.
   * @default 60
   */
  queueTtl: number;
}

/** The defaults. */
export const DEFAULT_QUOTAS: Readonly<Quotas> = Object.freeze({
  valueSize: 64 * 1024,
  dataSize: 1024 * 1024,
  dataKeys: 1000,
  writeRate: 20,
  writeVolume: 16 * 1024,
  errorRecords: 100,
  readsInFlight: 8,
  readRate: 20,
  monitors: 100,
  registrations: 100,
  channels: 2,
  queueLength: 10_000,
  queueBytes: 16 * 1024 * 1024,
  queueTtl: 60,
});

/** Tree key of each quota. */
export const QUOTA_KEYS: Readonly<Record<keyof Quotas, string>> = Object.freeze({
  valueSize: "value_size",
  dataSize: "data_size",
  dataKeys: "data_keys",
  writeRate: "write_rate",
  writeVolume: "write_volume",
  errorRecords: "error_records",
  readsInFlight: "reads_in_flight",
  readRate: "read_rate",
  monitors: "monitors",
  registrations: "registrations",
  channels: "channels",
  queueLength: "queue_length",
  queueBytes: "queue_bytes",
  queueTtl: "queue_ttl",
});

/** Quotas only `/config/run` may set: shared queues need one value everywhere. */
export const INSTALL_WIDE: ReadonlySet<keyof Quotas> = new Set([
  "queueLength",
  "queueBytes",
  "queueTtl",
]);

/** Smallest accepted value of each quota (below it a script could not work at all). */
const MINIMUM: Readonly<Record<keyof Quotas, number>> = {
  valueSize: 256,
  dataSize: 1024,
  dataKeys: 1,
  writeRate: 0.1,
  writeVolume: 1024,
  errorRecords: 1,
  readsInFlight: 1,
  readRate: 0.1,
  monitors: 1,
  registrations: 1,
  channels: 1,
  queueLength: 1,
  queueBytes: 1024,
  queueTtl: 1,
};

/**
 * The quotas in force: defaults, then `/config/run/<key>` (`global`), then
 * the task's own keys (`task`, not for install-wide quotas). A value that is
 * not a number at or above the quota's minimum is ignored and reported
 * through `warn` (a value typed by hand must not stop the host).
 */
export function readQuotas(
  global: Record<string, string>,
  task: Record<string, string>,
  warn: (message: string) => void = () => {},
): Quotas {
  return {
    ...DEFAULT_QUOTAS,
    ...readSettings(QUOTA_KEYS, MINIMUM, global, task, warn, INSTALL_WIDE),
  };
}

/**
 * The error a script gets for going over quota `name`: code `quota`, and a
 * message that says what was refused and names the key and its value.
 */
export function quotaError(quotas: Quotas, name: keyof Quotas, what: string): CapabilityError {
  return new CapabilityError(
    "quota",
    `${what} (quota ${QUOTA_KEYS[name]} = ${quotas[name]}; see docs/security.md)`,
  );
}

/**
 * The store-facing quotas of one run: the size of each value written, the
 * rate and volume of writes, and the number and rate of reads. The state
 * lives as long as the run's method table.
 */
export class StoreQuotas {
  #q: Quotas;
  #writes: TokenBucket;
  #volume: TokenBucket;
  #reads: TokenBucket;
  #readsInFlight = 0;

  /** @param now the time in ms, for tests @default performance.now */
  constructor(quotas: Quotas, now?: () => number) {
    this.#q = quotas;
    // Buckets hold a few seconds' worth, so short bursts pass; a loop does not.
    this.#writes = new TokenBucket(quotas.writeRate, { burst: 5, ...(now ? { now } : {}) });
    this.#volume = new TokenBucket(quotas.writeVolume, {
      burst: Math.max(4, quotas.valueSize / quotas.writeVolume),
      ...(now ? { now } : {}),
    });
    this.#reads = new TokenBucket(quotas.readRate, { burst: 2, ...(now ? { now } : {}) });
  }

  /** Refuse a value larger than `value_size`; `what` names it for the message. */
  value(bytes: number, what: string): void {
    if (bytes > this.#q.valueSize) {
      throw quotaError(
        this.#q,
        "valueSize",
        `${what} is ${bytes} bytes, more than one value may be`,
      );
    }
  }

  /** Take one store write of `bytes`, or refuse it. */
  write(bytes: number): void {
    if (!this.#writes.take(1)) {
      throw quotaError(this.#q, "writeRate", "too many store writes per second");
    }
    if (!this.#volume.take(bytes)) {
      throw quotaError(this.#q, "writeVolume", "too many bytes written to the store per second");
    }
  }

  /** Run one store read within the read quotas. */
  async read<T>(fn: () => Promise<T>): Promise<T> {
    if (this.#readsInFlight >= this.#q.readsInFlight) {
      throw quotaError(this.#q, "readsInFlight", "too many store reads at once");
    }
    if (!this.#reads.take(1)) {
      throw quotaError(this.#q, "readRate", "too many store reads per second");
    }
    this.#readsInFlight++;
    try {
      return await fn();
    } finally {
      this.#readsInFlight--;
    }
  }
}

/** UTF-8 bytes of a value as the host stores or sends it (JSON text). */
export function jsonBytes(value: unknown): number {
  const text = typeof value === "string" ? value : JSON.stringify(value) ?? "";
  return utf8Length(text);
}

/** UTF-8 length of a string without encoding it. */
export function utf8Length(text: string): number {
  let n = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length) {
      const d = text.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        n += 4;
        i++;
      } else n += 3;
    } else n += 3;
  }
  return n;
}
