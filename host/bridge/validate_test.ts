import assert from "node:assert/strict";
import { argValidators, BridgeError, checkMessage } from "./validate.ts";

Deno.test("checkMessage accepts each well-formed kind", () => {
  const good = [
    { kind: "ready", version: 1 },
    { kind: "call", id: 0, method: "time_at", args: ["12 hr", {}] },
    { kind: "cancel", id: 3 },
    { kind: "log", level: "warn", message: "hi" },
    { kind: "ended", state: "error", message: "m", debug: "d" },
    { kind: "settled", seen: 4, nextMs: null, fired: [], ending: false },
    {
      kind: "settled",
      seen: 9,
      nextMs: 1772452801000,
      fired: [{ repeat: true, delayMs: 1000, count: 60 }],
      ending: true,
    },
  ];
  for (const m of good) assert.deepEqual(checkMessage(m), { ok: true, message: m });
});

Deno.test("checkMessage refuses malformed messages, keeping the id of a call to answer", () => {
  const bad: [unknown, RegExp, number?][] = [
    [null, /not an object/],
    [[1], /not an object/],
    ["call", /not an object/],
    [{ kind: "nope" }, /unknown message kind "nope"/],
    [{ kind: "__proto__" }, /unknown message kind/],
    [{ kind: "call", id: 1.5, method: "x", args: [] }, /valid id/],
    [{ kind: "call", id: -1, method: "x", args: [] }, /valid id/],
    [{ kind: "call", id: 7, method: 5, args: [] }, /method name/, 7],
    [{ kind: "call", id: 8, method: "time_at", args: {} }, /not an array/, 8],
    [{ kind: "cancel" }, /valid id/],
    [{ kind: "log", level: "loud", message: "x" }, /unknown level "loud"/],
    [{ kind: "log", level: "info" }, /without a message/],
    [{ kind: "ended", state: "fail" }, /unknown state "fail"/],
    [{ kind: "ready" }, /without a version/],
    [{ kind: "settled", seen: -1, nextMs: null, fired: [], ending: false }, /seen count/],
    [{ kind: "settled", seen: 1, nextMs: "soon", fired: [], ending: false }, /bad nextMs "soon"/],
    [{ kind: "settled", seen: 1, nextMs: null, fired: {}, ending: false }, /fired timers/],
    [
      { kind: "settled", seen: 1, nextMs: null, fired: new Array(101).fill(null), ending: false },
      /fired timers/,
    ],
    [
      {
        kind: "settled",
        seen: 1,
        nextMs: null,
        fired: [{ repeat: "yes", delayMs: 1, count: 1 }],
        ending: false,
      },
      /fired timer entry/,
    ],
    [{ kind: "settled", seen: 1, nextMs: null, fired: [] }, /without ending/],
  ];
  for (const [value, why, id] of bad) {
    const r = checkMessage(value);
    assert.equal(r.ok, false, JSON.stringify(value));
    if (!r.ok) {
      assert.match(r.why, why);
      assert.equal(r.id, id);
    }
  }
  const proto = JSON.parse('{"kind":"call","id":1,"method":"x","args":[],"__proto__":{"ok":1}}');
  assert.equal(checkMessage(proto).ok, true, "an own __proto__ key is inert");
});

Deno.test("time argument validators accept specs and options and refuse the rest", () => {
  assert.deepEqual(argValidators.time_at(["12 hr"]), ["12 hr", {}]);
  assert.deepEqual(argValidators.wait([["12", "hr", 3], { now: 5, current: false }]), [
    ["12", "hr", 3],
    { now: 5, current: false },
  ]);
  const refused: [unknown[], RegExp][] = [
    [[], /expected \(spec, options\), got 0 arguments/],
    [["a", {}, 3], /got 3 arguments/],
    [[12, {}], /time spec must be a string or an array, got 12/],
    [[[{}], {}], /item 0 must be a string or a number/],
    [[[Infinity], {}], /item 0/],
    [["x".repeat(2000), {}], /longer than 1000/],
    [["x", []], /options must be an object/],
    [["x", { now: "5" }], /options.now must be Unix seconds, got "5"/],
    [["x", { current: 1 }], /options.current must be true, false or null, got 1/],
    [["x", { later: 1 }], /unknown option "later"/],
  ];
  for (const [args, why] of refused) {
    assert.throws(() => argValidators.time_at(args), (e: unknown) => {
      assert.ok(e instanceof BridgeError);
      assert.equal(e.code, "bad_args");
      assert.match(e.message, /^Cannot call time_at: /);
      assert.match(e.message, why);
      return true;
    });
  }
});
