/**
 * What the benchmarks read of processes from /proc: memory and children.
 *
 * @module
 */

/** Resident and proportional memory of a process, MiB, from /proc/PID/smaps_rollup (0 when it is gone). */
export async function memory(pid: number): Promise<{ rss: number; pss: number }> {
  try {
    const text = await Deno.readTextFile(`/proc/${pid}/smaps_rollup`);
    const kb = (f: string) => Number(new RegExp(`^${f}:\\s+(\\d+) kB`, "m").exec(text)?.[1] ?? 0);
    return { rss: kb("Rss") / 1024, pss: kb("Pss") / 1024 };
  } catch {
    return { rss: 0, pss: 0 };
  }
}

/** Children of a process (the sandbox processes of a host). */
export async function children(pid: number): Promise<number[]> {
  try {
    const text = await Deno.readTextFile(`/proc/${pid}/task/${pid}/children`);
    return text.trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}
