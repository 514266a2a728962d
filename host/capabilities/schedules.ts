/**
 * Schedules that survive failover, restarts and code updates: the records
 * of completed firings of a run's `moat.wait` / `moat.run_at` schedules with
 * an `id`, and the catch-up of a firing missed while no run was there
 * (docs/time.md, "Catch-up").
 *
 * - A firing is *done* once it completed: a `wait` returned to the script,
 *   a `run_at` callback returned. The host then writes the schedule's record,
 *   `status/run/<task>/:task/schedule/<id>`, in a transaction guarded by the
 *   run's `running` token: only the lease holder writes it.
 * - Every firing due at or before the recorded `due` counts as done. With
 *   `catch_up: S`, a call finds the latest firing due within the last S
 *   seconds; if it is not done, it fires at once, late, exactly once.
 * - Before anything fires, the run's lease must still be `held()` (the
 *   fence, host/store/_etcd_lease.ts): a host that stalled past its lease
 *   never fires what the host that took over may fire too.
 * - Records that no longer matter are removed when a run starts: those whose
 *   next due time plus their `catch_up` lies {@linkcode RECORD_RETENTION_S}
 *   in the past (a schedule still in use would have fired and moved it on).
 *
 * @module
 */

import type { Store } from "../store/store.ts";
import type { Layout } from "../layout.ts";
import type { Clock } from "../time/clock.ts";
import { waitTarget } from "../time/wait.ts";
import type { Location } from "../time/sun.ts";
import type { TimeSpecInput } from "../time/time_spec.ts";
import { CapabilityError } from "./capability_error.ts";

/** What the host keeps of a schedule's last completed firing (JSON text in etcd). */
export interface ScheduleRecord {
  /** Unix seconds the firing was due. */
  due: number;
  /** Unix seconds it completed. */
  done: number;
  /** Whether it was a catch-up. */
  late: boolean;
  /** The spec, as the script gave it (text). */
  spec: string;
  /** The schedule's `catch_up` (0 without). */
  catch_up: number;
  /** The next due time after this firing, as it was then; null when there is none. */
  next: number | null;
}

/** Records are removed this long (7 days) after their next due time plus catch_up passed. */
export const RECORD_RETENTION_S = 7 * 86400;

/** The most schedule ids one task may use. */
export const MAX_SCHEDULES = 1000;

/** The most due times one catch-up search steps through per window. */
const MAX_STEPS = 5000;

/** Parse a record read from etcd; undefined for a value that is not one. */
export function parseRecord(text: string): ScheduleRecord | undefined {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (v === null || typeof v !== "object") return undefined;
  const r = v as Record<string, unknown>;
  if (typeof r.due !== "number" || !Number.isFinite(r.due)) return undefined;
  const num = (x: unknown, d: number) => typeof x === "number" && Number.isFinite(x) ? x : d;
  return {
    due: r.due,
    done: num(r.done, r.due),
    late: r.late === true,
    spec: typeof r.spec === "string" ? r.spec : "",
    catch_up: num(r.catch_up, 0),
    next: typeof r.next === "number" && Number.isFinite(r.next) ? r.next : null,
  };
}

/** How the due times of a spec are computed. */
export interface DueOptions {
  clock: Clock;
  zone: string;
  location?: Location;
}

/**
 * The latest firing of `spec` due in `[now - window, now]` (Unix seconds),
 * or undefined. A schedule's firings are the starts of its matching periods:
 * the times `moat.wait(spec)` returns. Searches windows of a minute, an
 * hour, a day, a week, then the whole window, so that a frequent spec is
 * found in few steps and a rare one too.
 * @throws {TimeSpecError} for a bad spec; {RangeError} when a window holds
 *   too many due times to step through.
 */
export function latestDue(
  spec: TimeSpecInput,
  now: number,
  window: number,
  options: DueOptions,
): number | undefined {
  const windows = [60, 3600, 86400, 7 * 86400, window].filter((w) => w <= window);
  let prevWindow = -1;
  for (const w of windows) {
    if (w === prevWindow) continue;
    prevWindow = w;
    let t = now - w;
    let last: number | undefined;
    for (let i = 0; i < MAX_STEPS; i++) {
      const d = waitTarget(spec, { ...options, now: t, current: null });
      if (d > now || d <= t && i > 0) break;
      if (d >= now - window) last = d;
      if (d <= t) break; // a fixed time (a timestamp spec): it has no later firing
      t = d;
      if (i === MAX_STEPS - 1) {
        throw new RangeError(
          `catch_up of ${window} s holds more than ${MAX_STEPS} firings of the spec`,
        );
      }
    }
    if (last !== undefined) return last;
  }
  return undefined;
}

/** What one run's schedules need. */
export interface SchedulesOptions {
  store: Store;
  layout: Layout;
  clock: Clock;
  /** The task's path. */
  task: string;
  /** The run's `running` value: records are written only while it stands. */
  token: string;
  /** Whether the run's lease is certainly still held (`Lease.held`). */
  held(): boolean;
  /** Report trouble writing a record (the script cannot act on it). */
  warn?(message: string): void;
  /** Trace each firing handed to the script (debug level). */
  debug?(message: string): void;
}

/** Text of a spec for the record. */
function specText(spec: TimeSpecInput): string {
  return Array.isArray(spec) ? spec.join(" ") : String(spec);
}

/** The schedules of one run of a task; see the module doc. */
export class Schedules {
  readonly #o: SchedulesOptions;
  /** The records as this run knows them: read at the start, then its own writes. */
  readonly #records: Map<string, ScheduleRecord>;
  /** The latest due time fired in this run, per id (recorded or not yet). */
  readonly #fired = new Map<string, number>();
  /** Ids with a wait or run_at armed now. */
  readonly #pending = new Set<string>();
  /** Ids used by this run. */
  readonly #used = new Set<string>();
  /** Firings of run_at that fired and wait for their callback to return: id → due → record info. */
  readonly #inFlight = new Map<
    string,
    Map<number, { late: boolean; spec: string; catchUp: number; due: DueOptions }>
  >();
  #writes: Promise<void> = Promise.resolve();
  #closed = false;

  private constructor(o: SchedulesOptions, records: Map<string, ScheduleRecord>) {
    this.#o = o;
    this.#records = records;
  }

  /**
   * Read the task's records, and remove those that no longer matter (in a
   * transaction guarded by the run's token).
   */
  static async open(o: SchedulesOptions): Promise<Schedules> {
    const dir = o.layout.schedulesDir(o.task);
    const { kvs } = await o.store.range(dir, { maxKeys: 10 * MAX_SCHEDULES });
    const records = new Map<string, ScheduleRecord>();
    const stale: string[] = [];
    const now = o.clock.now() / 1000;
    for (const kv of kvs) {
      const id = kv.key.slice(dir.length);
      const r = parseRecord(kv.value);
      if (r === undefined) {
        stale.push(kv.key); // not a record (written by hand): it cannot count
        continue;
      }
      if ((r.next ?? r.done) + r.catch_up + RECORD_RETENTION_S < now) stale.push(kv.key);
      else records.set(id, r);
    }
    const running = o.layout.statusKey(o.task, "running");
    for (let i = 0; i < stale.length; i += 100) {
      await o.store.txn(
        [{ key: running, target: "value", op: "==", value: o.token }],
        stale.slice(i, i + 100).map((key) => ({ type: "delete" as const, key })),
      );
    }
    return new Schedules(o, records);
  }

  /** The records this run knows, by id (for tests and status). */
  get records(): ReadonlyMap<string, ScheduleRecord> {
    return this.#records;
  }

  /**
   * Fence: throw unless the run's lease is certainly held. Called at the
   * last moment before a firing is handed to the script.
   */
  guard(): void {
    if (!this.#o.held()) {
      throw new CapabilityError(
        "not_running",
        "the run's lease may have expired (another host may run the task): nothing fires",
      );
    }
  }

  /** The latest due time of `id` that is done or fired in this run, or -Infinity. */
  lastDone(id: string): number {
    return Math.max(this.#records.get(id)?.due ?? -Infinity, this.#fired.get(id) ?? -Infinity);
  }

  /**
   * Arm schedule `id`: refused while another wait or run_at of the run has
   * the same id armed, or beyond {@linkcode MAX_SCHEDULES} ids. Returns the
   * function that disarms it.
   */
  arm(id: string): () => void {
    if (this.#pending.has(id)) {
      throw new CapabilityError(
        "taken",
        `schedule id "${id}" is in use by another wait or run_at of this run: ids must be unique`,
      );
    }
    if (!this.#used.has(id) && this.#used.size >= MAX_SCHEDULES) {
      throw new CapabilityError("limit", `a task may use at most ${MAX_SCHEDULES} schedule ids`);
    }
    this.#used.add(id);
    this.#pending.add(id);
    return () => this.#pending.delete(id);
  }

  /**
   * Firing `due` of `id` is handed to the script now (after `guard()`).
   * A wait's firing is done at once (`complete` follows); a run_at's when
   * its callback returns (`callbackReturned`).
   */
  fire(
    id: string,
    due: number,
    info: { late: boolean; spec: TimeSpecInput; catchUp: number; due: DueOptions },
    kind: "wait" | "run_at",
  ): void {
    this.#fired.set(id, Math.max(due, this.#fired.get(id) ?? -Infinity));
    this.#o.debug?.(`schedule "${id}": firing due ${due}${info.late ? " (late: catch-up)" : ""}`);
    const entry = {
      late: info.late,
      spec: specText(info.spec),
      catchUp: info.catchUp,
      due: info.due,
    };
    if (kind === "wait") {
      this.#complete(id, due, entry);
      return;
    }
    let m = this.#inFlight.get(id);
    if (m === undefined) this.#inFlight.set(id, m = new Map());
    m.set(due, entry);
  }

  /** The run_at callback of `id` for `due` returned: record the firing. */
  callbackReturned(id: string, due: number): void {
    const entry = this.#inFlight.get(id)?.get(due);
    if (entry === undefined) {
      throw new CapabilityError(
        "bad_args",
        `no firing of schedule "${id}" due at ${due} is running`,
      );
    }
    this.#inFlight.get(id)!.delete(due);
    this.#complete(id, due, entry);
  }

  #complete(
    id: string,
    due: number,
    e: { late: boolean; spec: string; catchUp: number; due: DueOptions },
  ): void {
    const now = this.#o.clock.now() / 1000;
    let next: number | null = null;
    try {
      const n = waitTarget(e.spec, { ...e.due, now: Math.max(due, now), current: null });
      next = n > due ? n : null;
    } catch {
      // A spec without a later firing: no next due time.
    }
    const record: ScheduleRecord = {
      due,
      done: now,
      late: e.late,
      spec: e.spec,
      catch_up: e.catchUp,
      next,
    };
    const before = this.#records.get(id);
    if (before !== undefined && before.due > due) return; // a later firing is on record
    this.#records.set(id, record);
    if (this.#closed) return;
    const key = this.#o.layout.scheduleKey(this.#o.task, id);
    const running = this.#o.layout.statusKey(this.#o.task, "running");
    // In order, one after the other: a later record never loses to an earlier one.
    this.#writes = this.#writes.then(async () => {
      try {
        const res = await this.#o.store.txn(
          [{ key: running, target: "value", op: "==", value: this.#o.token }],
          [{ type: "put", key, value: JSON.stringify(record) }],
        );
        if (!res.succeeded) {
          this.#o.warn?.(
            `schedule "${id}": the firing due at ${due} ran but is not recorded: ` +
              "the run no longer holds the task",
          );
        }
      } catch (e) {
        this.#o.warn?.(
          `schedule "${id}": the firing due at ${due} ran but is not recorded: ${
            (e as Error).message
          }`,
        );
      }
    });
  }

  /** Wait until every record of a completed firing is written (or failed). */
  async flush(): Promise<void> {
    let w;
    do {
      w = this.#writes;
      await w;
    } while (w !== this.#writes);
  }

  /** Write what is pending, then write nothing more. Safe to call twice. */
  async close(): Promise<void> {
    await this.flush();
    this.#closed = true;
  }
}
