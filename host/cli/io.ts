/**
 * What a subcommand needs from the outside world: where to print, how to
 * lay out a table, and the usage error it throws for bad arguments (exit
 * code 2).
 *
 * @module
 */

import { escapeControl } from "../text.ts";

/** Output sinks of one command run. */
export interface CliIO {
  /** Print one line (no trailing newline needed) to standard output. */
  out(line: string): void;
  /** Print one line to standard error. */
  err(line: string): void;
}

/** Bad command-line arguments; `cli.ts` prints it and exits with 2. */
export class UsageError extends Error {
  override name = "UsageError";
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
  }
}

/** A failure to report as `error: …` with exit code 1. */
export class CommandError extends Error {
  override name = "CommandError";
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
  }
}

/**
 * Lay out rows as aligned columns (the last column is not padded), one line
 * per row. Cells hold text from scripts and etcd: each is shown with its
 * control characters escaped, so a cell cannot forge rows or drive the
 * terminal, and the widths are those of the escaped text.
 */
export function table(rows: string[][]): string[] {
  if (rows.length === 0) return [];
  const shown = rows.map((r) => r.map(escapeControl));
  const n = Math.max(...shown.map((r) => r.length));
  const w = Array.from({ length: n }, (_, i) => Math.max(...shown.map((r) => (r[i] ?? "").length)));
  return shown.map((r) =>
    r.map((c, i) => i === r.length - 1 ? c : c.padEnd(w[i]!)).join("  ").trimEnd()
  );
}
