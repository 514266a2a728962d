/**
 * Splitting a byte stream into bounded lines. Private to `host/bridge/`.
 *
 * @module
 */

/** One item from {@linkcode readLines}. */
export type LineItem =
  | { line: string }
  /** A line longer than the limit was dropped; `bytes` is how much was seen. */
  | { tooLong: number };

/**
 * Yield the `\n`-terminated lines of `stream` as text. A line longer than
 * `maxBytes` (counting the `\n`) is never buffered whole: it is dropped as
 * it arrives and reported once as `{ tooLong }`. A last line without `\n`
 * is yielded at the end of the stream.
 */
export async function* readLines(
  stream: ReadableStream<Uint8Array>,
  maxBytes: number,
): AsyncGenerator<LineItem> {
  const decoder = new TextDecoder();
  let parts: Uint8Array[] = [];
  let partLen = 0;
  let dropping = 0; // > 0: inside a too-long line, bytes seen so far
  for await (const chunk of stream) {
    let start = 0;
    while (start < chunk.length) {
      const nl = chunk.indexOf(10, start);
      const end = nl < 0 ? chunk.length : nl;
      const piece = chunk.subarray(start, end);
      if (dropping > 0) {
        dropping += piece.length;
      } else if (partLen + piece.length + 1 > maxBytes) {
        dropping = partLen + piece.length;
        parts = [];
        partLen = 0;
      } else if (nl >= 0 && partLen === 0) {
        yield { line: decoder.decode(piece) };
      } else {
        parts.push(piece.slice());
        partLen += piece.length;
        if (nl >= 0) {
          yield { line: decoder.decode(concat(parts, partLen)) };
          parts = [];
          partLen = 0;
        }
      }
      if (nl < 0) break;
      if (dropping > 0) {
        yield { tooLong: dropping + 1 };
        dropping = 0;
      }
      start = nl + 1;
    }
  }
  if (dropping > 0) yield { tooLong: dropping };
  else if (partLen > 0) yield { line: decoder.decode(concat(parts, partLen)) };
}

function concat(parts: Uint8Array[], total: number): Uint8Array {
  if (parts.length === 1) return parts[0]!;
  const out = new Uint8Array(total);
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}
