/**
 * The Worker that type-checks a hand-written `new_code` for the host
 * (see {@linkcode typeCheckApart}): the TypeScript compiler is loaded here,
 * and freed with the Worker, so a long-running host neither keeps it in
 * memory nor stops its event loop while it checks.
 *
 * It receives one `TypeCheckInput[]` and answers with
 * `{ diagnostics: Diagnostic[][] }` or `{ error: string }`.
 *
 * @module
 */

/// <reference no-default-lib="true" />
/// <reference lib="deno.worker" />

import { type TypeCheckInput, typeCheckScripts } from "./typecheck.ts";

self.onmessage = (e: MessageEvent<TypeCheckInput[]>) => {
  try {
    self.postMessage({ diagnostics: typeCheckScripts(e.data) });
  } catch (err) {
    self.postMessage({ error: (err as Error).message });
  }
};
