import assert from "node:assert/strict";
import { LineBatcher, packLines } from "./_line_batch.ts";

const decode = (chunk: Uint8Array) => new TextDecoder().decode(chunk);

Deno.test("packLines keeps the lines in order, each with its newline, in one chunk when they fit", () => {
  const chunks = packLines(["a", "bc", "", "déf"], 100);
  assert.deepEqual(chunks.map(decode), ["a\nbc\n\ndéf\n"]);
  assert.deepEqual(packLines([], 100), []);
});

Deno.test("packLines splits at the byte limit, never inside a line", () => {
  // "é" is two bytes: each line takes 4 bytes with its newline.
  const lines = ["éa", "éb", "éc", "éd", "ée"];
  const chunks = packLines(lines, 9);
  assert.deepEqual(chunks.map(decode), ["éa\néb\n", "éc\néd\n", "ée\n"]);
  for (const c of chunks) assert.ok(c.length <= 9, `a chunk of ${c.length} bytes`);
  // Exactly at the limit still fits.
  assert.deepEqual(packLines(lines, 8).map(decode), ["éa\néb\n", "éc\néd\n", "ée\n"]);
  assert.deepEqual(packLines(lines, 7).map(decode), lines.map((l) => l + "\n"));
});

Deno.test("packLines gives a line longer than the limit a chunk of its own", () => {
  const long = "x".repeat(20);
  assert.deepEqual(packLines(["a", long, "b"], 10).map(decode), ["a\n", long + "\n", "b\n"]);
});

Deno.test("LineBatcher sends what one task added together, in order, once the task is done", async () => {
  const sent: string[][] = [];
  const batch = new LineBatcher((lines) => sent.push(lines));
  batch.add("1");
  batch.add("2");
  batch.add("3");
  assert.deepEqual(sent, [], "nothing before the task ends");
  await Promise.resolve();
  assert.deepEqual(sent, [["1", "2", "3"]]);
  batch.add("4");
  batch.flush();
  batch.add("5");
  await new Promise((r) => setTimeout(r, 0));
  assert.deepEqual(sent, [["1", "2", "3"], ["4"], ["5"]]);
  batch.flush(); // nothing queued: nothing sent
  assert.equal(sent.length, 3);
});
