/**
 * Small assertion helpers over `node:assert/strict`. They live in
 * host/testing/assert.ts, so that tests under host/ need nothing from tests/.
 *
 * @module
 */

export * from "../../host/testing/assert.ts";
