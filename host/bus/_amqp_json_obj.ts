/**
 * qbroker's `application/json+obj`: JSON in which some objects carry a type
 * tag `_o`. A received body is decoded into plain JSON values, so that a
 * script never sees the tags (docs/amqp.md, "Content types"):
 *
 * | tag        | qbroker sends                       | arrives as                                   |
 * | ---------- | ----------------------------------- | -------------------------------------------- |
 * | `datetime` | `{"t": <Unix s>, "s": "<text>"}`    | ISO 8601 text in UTC, `2026-11-30T15:40:00.000Z` |
 * | `date`     | `{"d": <ordinal>, "s": "YYYY-MM-DD"}` | `"YYYY-MM-DD"`                             |
 * | `time`     | `{"t": <s of day>, "s": "HH:MM:SS"}` | `"HH:MM:SS"`                                 |
 * | `bin`      | `{"s": "<utf-8>"}` / `{"b": "<ascii85>"}` | the text / `{"base64": "<bytes>"}`      |
 * | `exc`      | `{"e": "<class>", "s": "<str>", …}` | `{"error": "<class>", "message": "<str>"}`   |
 *
 * Any other tag is refused with a `SyntaxError` naming it: a value we cannot
 * represent must not arrive as something else.
 *
 * @module
 */

/** The content type of qbroker's tagged JSON. */
export const JSON_OBJ_TYPE = "application/json+obj";

/** How deep tagged JSON is walked; deeper is refused (no stack overflow on hostile input). */
const MAX_DEPTH = 256;

/** Days from 0001-01-01 (Python's ordinal 1) to 1970-01-01. */
const ORDINAL_EPOCH = 719_163;

const pad = (n: number, w = 2) => String(n).padStart(w, "0");

function num(v: unknown): number | undefined {
  return typeof v === "number" && Number.isFinite(v) ? v : undefined;
}

function str(v: unknown): string | undefined {
  return typeof v === "string" ? v : undefined;
}

/** Bytes of Python's `base64.a85decode` (no `<~ ~>` frame; `z` for four zero bytes). */
export function ascii85Decode(text: string): Uint8Array {
  const out: number[] = [];
  let group: number[] = [];
  const flush = (n: number) => {
    let v = 0;
    for (let i = 0; i < 5; i++) v = v * 85 + (group[i] ?? 84);
    if (v > 0xffffffff) throw new SyntaxError("ascii85 group out of range");
    const bytes = [v >>> 24, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff];
    out.push(...bytes.slice(0, n));
    group = [];
  };
  for (const ch of text) {
    if (/\s/.test(ch)) continue;
    if (ch === "z" && group.length === 0) {
      out.push(0, 0, 0, 0);
      continue;
    }
    const c = ch.charCodeAt(0);
    if (c < 33 || c > 117) throw new SyntaxError(`invalid ascii85 character ${JSON.stringify(ch)}`);
    group.push(c - 33);
    if (group.length === 5) flush(4);
  }
  if (group.length === 1) throw new SyntaxError("truncated ascii85 group");
  if (group.length > 0) flush(group.length - 1);
  return new Uint8Array(out);
}

function base64(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s);
}

/** The plain JSON value of one tagged object. */
function untagOne(tag: unknown, o: Record<string, unknown>): unknown {
  switch (tag) {
    case "datetime": {
      const t = num(o.t);
      if (t !== undefined) {
        const d = new Date(t * 1000);
        if (!Number.isNaN(d.getTime())) return d.toISOString();
      }
      break;
    }
    case "date": {
      const d = num(o.d);
      if (d !== undefined && Number.isInteger(d)) {
        const day = new Date((d - ORDINAL_EPOCH) * 86_400_000);
        if (!Number.isNaN(day.getTime())) return day.toISOString().slice(0, 10);
      }
      const s = str(o.s);
      if (s !== undefined && /^\d{4}-\d{2}-\d{2}$/.test(s)) return s;
      break;
    }
    case "time": {
      const t = num(o.t);
      if (t !== undefined && t >= 0 && t < 86_400) {
        const s = Math.floor(t);
        return `${pad(Math.floor(s / 3600))}:${pad(Math.floor(s / 60) % 60)}:${pad(s % 60)}`;
      }
      const s = str(o.s);
      if (s !== undefined && /^\d{2}:\d{2}:\d{2}$/.test(s)) return s;
      break;
    }
    case "bin": {
      const b = str(o.b);
      if (b !== undefined) return { base64: base64(ascii85Decode(b)) };
      const s = str(o.s);
      if (s !== undefined) return s;
      break;
    }
    case "exc": {
      const e = str(o.e) ?? str(o.b);
      if (e !== undefined) return { error: e, message: str(o.s) ?? str(o.a0) ?? "" };
      break;
    }
    default:
      throw new SyntaxError(
        `it has the unknown application/json+obj tag ${JSON.stringify(tag)} ` +
          "(known: datetime, date, time, bin, exc)",
      );
  }
  throw new SyntaxError(`it has a malformed ${JSON.stringify(tag)} object`);
}

/**
 * Replace every tagged object in a parsed `application/json+obj` value by
 * its plain JSON value. Throws `SyntaxError` for an unknown or malformed
 * tag, and for nesting deeper than 256.
 */
export function untag(value: unknown, depth = 0): unknown {
  if (value === null || typeof value !== "object") return value;
  if (depth > MAX_DEPTH) throw new SyntaxError(`it is nested deeper than ${MAX_DEPTH} levels`);
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) value[i] = untag(value[i], depth + 1);
    return value;
  }
  const o = value as Record<string, unknown>;
  if (Object.hasOwn(o, "_o")) return untagOne(o._o, o);
  for (const k of Object.keys(o)) o[k] = untag(o[k], depth + 1);
  return o;
}
