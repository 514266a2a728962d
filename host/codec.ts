/**
 * How values are written to and read from etcd, so that `etcdctl get` shows
 * readable text and a value put by hand with `etcdctl put` is understood.
 *
 * - A value with a declared type (a script's `types/<var>`) is parsed by
 *   that type: `int`, `float`, `bool`, `str`, `str/ref`, `json`, `secret`
 *   (a string kept apart from the task's data, docs/security.md).
 * - Any other value: text that parses as JSON is that JSON value, else the
 *   text itself. Writing reverses this: strings are stored as plain text
 *   unless that text would read back as something else, in which case they
 *   are stored as a JSON string.
 *
 * The exact rules are in docs/etcd-layout.md.
 *
 * @module
 */

/** The types a script variable can declare. */
export const VALUE_TYPES = ["int", "float", "bool", "str", "str/ref", "json", "secret"] as const;

/** One of `VALUE_TYPES`. */
export type ValueType = typeof VALUE_TYPES[number];

/** A value as scripts see it. */
export type Value = null | boolean | number | string | Value[] | { [key: string]: Value };

/** Whether `t` names a known value type. */
export function isValueType(t: string): t is ValueType {
  return (VALUE_TYPES as readonly string[]).includes(t);
}

/** Read an untyped stored text: JSON if it parses, else the text. */
export function decodeUntyped(text: string): Value {
  try {
    return JSON.parse(text) as Value;
  } catch {
    return text;
  }
}

/** Write an untyped value so that `decodeUntyped` gives it back. */
export function encodeUntyped(value: Value): string {
  if (typeof value === "string") {
    // Plain text when it reads back as the same string; else quote it.
    const back = decodeUntyped(value);
    return back === value ? value : JSON.stringify(value);
  }
  return JSON.stringify(value);
}

/** Parse a stored text by its declared type; throws `TypeError` naming the problem. */
export function decodeTyped(text: string, type: ValueType, what = "value"): Value {
  switch (type) {
    case "int": {
      if (!/^[+-]?\d+$/.test(text.trim())) {
        throw new TypeError(`${what} "${text}" is not an int`);
      }
      const n = Number(text.trim());
      if (!Number.isSafeInteger(n)) throw new TypeError(`${what} "${text}" is out of range`);
      return n;
    }
    case "float": {
      const t = text.trim();
      const n = Number(t);
      if (t === "" || !Number.isFinite(n)) throw new TypeError(`${what} "${text}" is not a float`);
      return n;
    }
    case "bool": {
      const t = text.trim().toLowerCase();
      if (t === "true") return true;
      if (t === "false") return false;
      throw new TypeError(`${what} "${text}" is not a bool (true or false)`);
    }
    case "str":
    case "str/ref":
    case "secret":
      return text;
    case "json":
      try {
        return JSON.parse(text) as Value;
      } catch {
        throw new TypeError(`${what} "${text}" is not valid JSON`);
      }
  }
}

/** Encode a value of a declared type; throws `TypeError` when it does not fit. */
export function encodeTyped(value: Value, type: ValueType, what = "value"): string {
  switch (type) {
    case "int":
      if (typeof value !== "number" || !Number.isSafeInteger(value)) {
        throw new TypeError(`${what} must be an int, got ${describe(value)}`);
      }
      return String(value);
    case "float":
      if (typeof value !== "number" || !Number.isFinite(value)) {
        throw new TypeError(`${what} must be a float, got ${describe(value)}`);
      }
      return String(value);
    case "bool":
      if (typeof value !== "boolean") {
        throw new TypeError(`${what} must be a bool, got ${describe(value)}`);
      }
      return String(value);
    case "str":
    case "str/ref":
    case "secret":
      if (typeof value !== "string") {
        throw new TypeError(`${what} must be a str, got ${describe(value)}`);
      }
      return value;
    case "json":
      return JSON.stringify(value);
  }
}

/** Parse text typed on a command line by a declared type (or untyped). */
export function parseCliValue(text: string, type: ValueType | undefined, what: string): string {
  // What the user typed is what etcdctl would have stored; check it reads back.
  if (type !== undefined) decodeTyped(text, type, what);
  return text;
}

function describe(value: Value): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  if (typeof value === "object") return "an object";
  return `${typeof value} ${JSON.stringify(value)}`;
}
