import { assert, assertEquals, assertIncludes } from "../testing/assert.ts";
import {
  DEFAULT_QUOTAS,
  jsonBytes,
  QUOTA_KEYS,
  quotaError,
  readQuotas,
  StoreQuotas,
  utf8Length,
} from "./quotas.ts";

Deno.test("readQuotas takes the defaults, then /config/run, then the task's own values", () => {
  assertEquals(readQuotas({}, {}), DEFAULT_QUOTAS);
  const q = readQuotas({ value_size: "1000", monitors: "5" }, { monitors: "7", data_keys: "3" });
  assertEquals(q.valueSize, 1000);
  assertEquals(q.monitors, 7);
  assertEquals(q.dataKeys, 3);
  assertEquals(q.dataSize, DEFAULT_QUOTAS.dataSize);
});

Deno.test("readQuotas ignores bad values and task values of install-wide quotas, and says so", () => {
  const warnings: string[] = [];
  const q = readQuotas(
    { value_size: "12", read_rate: "fast", queue_length: "50" },
    { queue_ttl: "5", channels: "" },
    (m) => warnings.push(m),
  );
  assertEquals(q.valueSize, DEFAULT_QUOTAS.valueSize);
  assertEquals(q.readRate, DEFAULT_QUOTAS.readRate);
  assertEquals(q.queueLength, 50);
  assertEquals(q.queueTtl, DEFAULT_QUOTAS.queueTtl);
  assertEquals(q.channels, DEFAULT_QUOTAS.channels);
  assertEquals(warnings.length, 4);
  assertIncludes(
    warnings.join("\n"),
    'ignoring /config/run value_size = "12": not a number >= 256',
  );
  assertIncludes(warnings.join("\n"), "queue_ttl can only be set in /config/run");
});

Deno.test("every quota has a key, and the quota error names it", () => {
  assertEquals(Object.keys(QUOTA_KEYS).sort(), Object.keys(DEFAULT_QUOTAS).sort());
  const e = quotaError(DEFAULT_QUOTAS, "valueSize", "the value is too big");
  assertEquals(e.code, "quota");
  assertEquals(e.message, "the value is too big (quota value_size = 65536; see docs/security.md)");
});

Deno.test("utf8Length and jsonBytes count the bytes the host stores", () => {
  for (const s of ["", "abc", "äöü", "€", "😀 x", "\ud800 lone", "日本語"]) {
    assertEquals(utf8Length(s), new TextEncoder().encode(s).length, JSON.stringify(s));
  }
  assertEquals(jsonBytes("plain"), 5);
  assertEquals(jsonBytes({ a: [1, "ü"] }), new TextEncoder().encode('{"a":[1,"ü"]}').length);
  assert(jsonBytes(null) === 4);
});

Deno.test("StoreQuotas refuses big values, write bursts beyond the bucket, and reads beyond the bounds", async () => {
  let now = 0;
  const q = new StoreQuotas(
    { ...DEFAULT_QUOTAS, writeRate: 2, readRate: 1, readsInFlight: 2 },
    () => now,
  );
  assertEquals(assertThrowsCode(() => q.value(65537, "the value")), "quota");
  q.value(65536, "the value");
  // write_rate 2/s holds 5 s worth: 10 writes, then one more every 0.5 s.
  for (let i = 0; i < 10; i++) q.write(10);
  assertIncludes(assertThrowsMessage(() => q.write(10)), "quota write_rate = 2");
  now += 500;
  q.write(10);
  // write_volume: 16 KiB/s, a bucket of max(4 s, one value_size) = 64 KiB.
  now += 60_000;
  q.write(60_000);
  assertIncludes(assertThrowsMessage(() => q.write(10_000)), "quota write_volume = 16384");
  // Reads: at most 2 at once, 1 per second with a bucket of 2.
  let release!: () => void;
  const held = new Promise<void>((r) => release = r);
  const a = q.read(() => held);
  const b = q.read(() => held);
  const refused = await q.read(() => Promise.resolve()).then(() => "", (e: Error) => e.message);
  assertIncludes(refused, "quota reads_in_flight = 2");
  release();
  await Promise.all([a, b]);
  const rate = await q.read(() => Promise.resolve()).then(() => "", (e: Error) => e.message);
  assertIncludes(rate, "quota read_rate = 1");
});

function assertThrowsCode(fn: () => void): string {
  try {
    fn();
  } catch (e) {
    return (e as { code: string }).code;
  }
  throw new Error("did not throw");
}

function assertThrowsMessage(fn: () => void): string {
  try {
    fn();
  } catch (e) {
    return (e as Error).message;
  }
  throw new Error("did not throw");
}
