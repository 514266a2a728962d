import assert from "node:assert/strict";
import { type LineItem, readLines } from "./_lines.ts";

async function lines(chunks: string[], max: number): Promise<LineItem[]> {
  const enc = new TextEncoder();
  const stream = ReadableStream.from(chunks.map((c) => enc.encode(c)));
  const out: LineItem[] = [];
  for await (const item of readLines(stream, max)) out.push(item);
  return out;
}

Deno.test("readLines joins lines split across chunks and splits chunks with many lines", async () => {
  assert.deepEqual(await lines(["ab", "c\nd\ne", "f\n", "g"], 100), [
    { line: "abc" },
    { line: "d" },
    { line: "ef" },
    { line: "g" },
  ]);
});

Deno.test("readLines drops a line over the limit without buffering it and goes on", async () => {
  assert.deepEqual(await lines(["ok\n12345", "67890", "12\nnext\n"], 10), [
    { line: "ok" },
    { tooLong: 13 },
    { line: "next" },
  ]);
  assert.deepEqual(await lines(["123456789\n", "1234567890"], 10), [
    { line: "123456789" },
    { tooLong: 10 },
  ]);
});

Deno.test("readLines decodes UTF-8 split across chunks", async () => {
  const enc = new TextEncoder();
  const bytes = enc.encode("grüß\n");
  const stream = ReadableStream.from([bytes.slice(0, 3), bytes.slice(3)]);
  const out: LineItem[] = [];
  for await (const item of readLines(stream, 100)) out.push(item);
  assert.deepEqual(out, [{ line: "grüß" }]);
});
