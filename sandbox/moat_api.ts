/**
 * The `moat` API that types/moat.d.ts declares for script authors, as module
 * types, so that the Worker bootstrap (`sandbox/worker.ts`) can check the
 * `moat` object it builds against what scripts are promised (`satisfies`).
 *
 * types/moat.d.ts is a script, not a module: scripts reference it with
 * `/// <reference path>` and get one global `moat`. This module references
 * it the same way and names its types. Only types live here: the Worker's
 * source is the text of one function (see `sandbox/worker.ts`), and
 * type-only imports are erased from it.
 *
 * @module
 */

/// <reference path="../types/moat.d.ts" />

/** The one global object a script gets (types/moat.d.ts `Moat`). */
export type MoatApi = Moat;

/** The codes of a `MoatError` as types/moat.d.ts writes them out. */
export type MoatApiErrorCode = MoatErrorCode;

/** A node of the MoaT tree as scripts see it (types/moat.d.ts `MoatNode`). */
export type MoatApiNode = MoatNode;
