/**
 * Masking a task's secret values (variables of type `secret`) out of what
 * the host shows of a run: its log lines (and so the task log ring,
 * standard error and the `moat.log.*` alerts), its debug object and the
 * message its run ended with. Each occurrence of a secret value becomes
 * `***`. Values shorter than `MIN_MASKED` characters are left alone: masking
 * every "a" or "1" would garble the log and hide nothing worth hiding.
 *
 * This is a net under the real rule (no tree view has a secret at all), for
 * a script that prints its own secret by mistake; a script that means to
 * leak its secret can always encode it first.
 *
 * @module
 */

import type { Json } from "../../sandbox/protocol.ts";

/** What a secret value is replaced with. */
export const SECRET_MASK = "***";

/** The shortest secret value that is masked, in characters. */
export const MIN_MASKED = 4;

/** The values worth masking, longest first (so that one inside another cannot leave a tail). */
function maskable(secrets: Iterable<string>): string[] {
  return [...new Set(secrets)].filter((v) => v.length >= MIN_MASKED)
    .sort((a, b) => b.length - a.length);
}

/** `text` with every occurrence of a secret value (of at least `MIN_MASKED` characters) masked. */
export function maskText(text: string, secrets: Iterable<string>): string {
  let out = text;
  for (const v of maskable(secrets)) {
    if (out.includes(v)) out = out.replaceAll(v, SECRET_MASK);
  }
  return out;
}

/** A JSON value with secret values masked in every string and object key in it. */
export function maskJson(value: Json, secrets: Iterable<string>): Json {
  const list = maskable(secrets);
  if (list.length === 0) return value;
  const walk = (v: Json): Json => {
    if (typeof v === "string") return maskText(v, list);
    if (Array.isArray(v)) return v.map(walk);
    if (v !== null && typeof v === "object") {
      const out: { [key: string]: Json } = {};
      for (const [k, x] of Object.entries(v)) out[maskText(k, list)] = walk(x);
      return out;
    }
    return v;
  };
  return walk(value);
}
