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

/** Options of a `UsageError`. */
export interface UsageErrorOptions extends ErrorOptions {
  /**
   * The command whose usage was wrong, e.g. "moat script def add": the hint
   * under the message names its `--help`. `dispatch` fills it in for errors
   * thrown while a command parses or runs.
   * @default undefined (the hint names "moat --help")
   */
  command?: string;
}

/**
 * Bad command-line arguments; `cli.ts` prints it and exits with 2:
 *
 * ```text
 * error: MESSAGE
 * Try "COMMAND --help" for more information.
 * ```
 */
export class UsageError extends Error {
  override name = "UsageError";
  /** The command whose usage was wrong (see `UsageErrorOptions.command`). */
  command: string | undefined;
  constructor(message: string, options: UsageErrorOptions = {}) {
    const { command, ...rest } = options;
    super(message, rest);
    this.command = command;
  }
}

/** The line under a usage error that points at the command's help. */
export function usageHint(command: string | undefined): string {
  return `Try "${command ?? "moat"} --help" for more information.`;
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
