/**
 * Conversions between the Store's types and etcd3's gRPC messages: keys as
 * bytes, prefix ranges, compares and transaction operations.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import type { ICompare, IKeyValue, IRequestOp, IResponseOp } from "etcd3";
import type { Compare, KeyValue, TxnOp, TxnResponse } from "./store.ts";

export const COMPARE_TARGET = {
  value: "Value",
  version: "Version",
  createRevision: "Create",
  modRevision: "Mod",
} as const;
export const COMPARE_RESULT = {
  "==": "Equal",
  "!=": "NotEqual",
  "<": "Less",
  ">": "Greater",
} as const;

export function bytes(text: string): Buffer {
  return Buffer.from(text, "utf8");
}

/** The end of the key range holding every key that starts with `prefix`. */
export function prefixEnd(prefix: string): Buffer {
  const end = Buffer.from(bytes(prefix));
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i]! < 0xff) {
      end[i] = end[i]! + 1;
      return end.subarray(0, i + 1);
    }
  }
  // Only 0xff bytes (or empty): "\0" as range end means "to the end".
  return Buffer.from([0]);
}

/** Whether etcd refused a read because its revision was compacted. */
export function isCompacted(error: unknown): boolean {
  for (let e: unknown = error; e instanceof Error; e = e.cause) {
    if (/required revision has been compacted/.test(e.message)) return true;
  }
  return false;
}

export function prefixRange(prefix: string): { key: Buffer; range_end: Buffer } {
  return { key: prefix === "" ? Buffer.from([0]) : bytes(prefix), range_end: prefixEnd(prefix) };
}

export function toKeyValue(kv: IKeyValue): KeyValue {
  return {
    key: kv.key.toString("utf8"),
    value: kv.value.toString("utf8"),
    createRevision: Number(kv.create_revision),
    modRevision: Number(kv.mod_revision),
    version: Number(kv.version),
    lease: String(kv.lease ?? "0"),
  };
}

export function leaseField(lease: string | undefined): { lease?: string } {
  if (lease === undefined || lease === "0") return {};
  if (!/^[1-9][0-9]*$/.test(lease)) {
    throw new TypeError(`Invalid lease id "${lease}": expected decimal digits`);
  }
  return { lease };
}

export function toCompare(c: Compare): ICompare {
  const compare: ICompare = {
    key: bytes(c.key),
    target: COMPARE_TARGET[c.target],
    result: COMPARE_RESULT[c.op],
  };
  switch (c.target) {
    case "value":
      compare.value = bytes(c.value);
      break;
    case "version":
      compare.version = c.value;
      break;
    case "createRevision":
      compare.create_revision = c.value;
      break;
    case "modRevision":
      compare.mod_revision = c.value;
      break;
  }
  return compare;
}

export function toRequestOp(op: TxnOp): IRequestOp {
  switch (op.type) {
    case "put":
      return {
        request_put: { key: bytes(op.key), value: bytes(op.value), ...leaseField(op.lease) },
      };
    case "delete":
      return {
        request_delete_range: op.prefix ? prefixRange(op.key) : { key: bytes(op.key) },
      };
    case "get":
      return { request_range: op.prefix ? prefixRange(op.key) : { key: bytes(op.key) } };
  }
}

export function fromResponseOp(op: IResponseOp, type: TxnOp["type"]): TxnResponse {
  switch (type) {
    case "put":
      return { type: "put" };
    case "delete":
      return { type: "delete", deleted: Number(op.response_delete_range?.deleted ?? 0) };
    case "get":
      return { type: "get", kvs: (op.response_range?.kvs ?? []).map(toKeyValue) };
  }
}

/** Pauses between attempts of a call that could not be sent. */
