/**
 * Lines to a sandbox process, written in batches: what the host sends one
 * script within one turn of its event loop (the events of one etcd watch
 * response, say) goes out as one write, so the process wakes once for
 * them, not once a line. Private to `host/bridge/`.
 *
 * @module
 */

/**
 * `lines`, each with its `\n`, in order, packed into as few chunks of at
 * most `maxBytes` bytes as there can be; a line is never split, so a line
 * longer than `maxBytes` is a chunk of its own.
 */
export function packLines(lines: readonly string[], maxBytes: number): Uint8Array[] {
  const encoder = new TextEncoder();
  const chunks: Uint8Array[] = [];
  let parts: Uint8Array[] = [];
  let size = 0;
  const close = () => {
    if (parts.length === 0) return;
    const chunk = new Uint8Array(size);
    let at = 0;
    for (const p of parts) {
      chunk.set(p, at);
      at += p.length;
    }
    chunks.push(chunk);
    parts = [];
    size = 0;
  };
  for (const line of lines) {
    const bytes = encoder.encode(line + "\n");
    if (size + bytes.length > maxBytes) close();
    parts.push(bytes);
    size += bytes.length;
  }
  close();
  return chunks;
}

/**
 * Collects lines and hands them on, in order, once the current task is
 * done (in a microtask): lines added in one task go out together.
 */
export class LineBatcher {
  #write: (lines: string[]) => void;
  #pending: string[] = [];

  /** @param write sends the lines collected (never throws) */
  constructor(write: (lines: string[]) => void) {
    this.#write = write;
  }

  /** Queue one line (without its `\n`). */
  add(line: string): void {
    this.#pending.push(line);
    // A watch response is handed out synchronously (WatchHub, ScriptView):
    // its events are all queued before the first microtask runs.
    if (this.#pending.length === 1) queueMicrotask(() => this.flush());
  }

  /** Send what is queued now. */
  flush(): void {
    if (this.#pending.length === 0) return;
    const lines = this.#pending;
    this.#pending = [];
    this.#write(lines);
  }
}
