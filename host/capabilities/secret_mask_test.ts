import assert from "node:assert/strict";
import { maskJson, maskText, MIN_MASKED, SECRET_MASK } from "./secret_mask.ts";
import { isSecretKey } from "../layout.ts";

Deno.test("maskText replaces every occurrence of a secret, the longer one first", () => {
  assert.equal(maskText("pin hunter2, again hunter2", ["hunter2"]), "pin ***, again ***");
  // "hunter2x" holds "hunter2": masked whole, no tail left behind.
  assert.equal(maskText("[hunter2x]", ["hunter2", "hunter2x"]), `[${SECRET_MASK}]`);
  assert.equal(maskText("nothing here", ["hunter2"]), "nothing here");
});

Deno.test("maskText leaves secrets shorter than MIN_MASKED alone", () => {
  const short = "x".repeat(MIN_MASKED - 1);
  assert.equal(maskText(`a ${short} b`, [short]), `a ${short} b`);
  const long = "y".repeat(MIN_MASKED);
  assert.equal(maskText(`a ${long} b`, [long]), "a *** b");
});

Deno.test("maskJson masks strings and keys at any depth and keeps other values", () => {
  const v = { "k-hunter2": ["is hunter2", 3, true, null, { deep: "hunter2" }] };
  assert.deepEqual(maskJson(v, ["hunter2"]), {
    "k-***": ["is ***", 3, true, null, { deep: "***" }],
  });
  assert.equal(maskJson(v, []), v);
});

Deno.test("isSecretKey names a task's secret/ directory and what is below it, nothing else", () => {
  assert.ok(isSecretKey("task/h/b/:task/secret/pin"));
  assert.ok(isSecretKey("task/h/b/:task/secret"));
  assert.ok(isSecretKey("task/h/deep/b/:task/secret/"));
  assert.ok(!isSecretKey("task/h/b/:task/data/secret"));
  assert.ok(!isSecretKey("task/h/b/:task/secrets"));
  assert.ok(!isSecretKey("device/x/:task/secret/pin"));
  assert.ok(!isSecretKey("task/h/secret/pin"));
});
