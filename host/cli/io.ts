/**
 * What a subcommand needs from the outside world: where to print, and the
 * usage error it throws for bad arguments (exit code 2).
 *
 * @module
 */

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
