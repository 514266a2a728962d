/**
 * The error a capability refuses with when the *script* did something it
 * may not (over a quota, a reserved name, an unknown key): a code scripts
 * know (`MoatError.code`) and a message for the script author. The method
 * table (methods.ts) hands it to the bridge as a `BridgeError`; the
 * capabilities themselves know nothing of the wire.
 *
 * @module
 */

import type { ErrorCode } from "../../sandbox/protocol.ts";

/** A refusal meant for the script: `code` and `message` reach it, nothing else. */
export class CapabilityError extends Error {
  override name = "CapabilityError";
  /** Machine-readable, as the script sees it in `MoatError.code`. */
  readonly code: ErrorCode;
  /** A refusal with `code` and `message`; `options.cause` stays on the host. */
  constructor(code: ErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.code = code;
  }
}
