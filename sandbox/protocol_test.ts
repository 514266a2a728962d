import assert from "node:assert/strict";
import { ERROR_CODES, type ErrorCode } from "./protocol.ts";
import type { MoatApiErrorCode } from "./moat_api.ts";

// Checked by `deno check`: each list holds every code of the other.
type Same<A, B> = [A] extends [B] ? [B] extends [A] ? true : false : false;
const sameCodes: Same<ErrorCode, MoatApiErrorCode> = true;

Deno.test("the error codes of the protocol are the ones types/moat.d.ts writes out", async () => {
  assert.equal(sameCodes, true);
  const dts = await Deno.readTextFile(new URL("../types/moat.d.ts", import.meta.url));
  const union = /type MoatErrorCode =([^;]*);/.exec(dts);
  assert.ok(union, "types/moat.d.ts declares MoatErrorCode");
  const written = [...union[1]!.matchAll(/"([a-z_]+)"/g)].map((m) => m[1]);
  assert.deepEqual([...written].sort(), [...ERROR_CODES].sort());
  assert.equal(new Set(ERROR_CODES).size, ERROR_CODES.length, "no code is listed twice");
});
