import assert from "node:assert/strict";
import { bodyKind, decodeAs, encodingProblem, errorHeader, failureOf } from "./_amqp_wire.ts";
import { ascii85Decode, untag } from "./_amqp_json_obj.ts";

const bytes = (s: string) => new TextEncoder().encode(s);

Deno.test("bodyKind matches content types without case, with parameters, UTF-8 only", () => {
  assert.equal(bodyKind(undefined), "json");
  assert.equal(bodyKind("application/json"), "json");
  assert.equal(bodyKind("Application/JSON; charset=UTF-8"), "json");
  assert.equal(bodyKind('application/json; charset="utf8"'), "json");
  assert.equal(bodyKind("application/json+obj"), "jsonobj");
  assert.equal(bodyKind("text/plain;charset=utf-8"), "text");
  assert.equal(
    bodyKind("application/json; charset=latin1"),
    'has the unsupported charset in content type "application/json; charset=latin1" (only UTF-8)',
  );
  assert.equal(bodyKind("text/xml"), 'has the unsupported content type "text/xml"');
});

Deno.test("encodingProblem refuses compressed bodies and accepts identity or UTF-8", () => {
  for (const ok of [undefined, "", "identity", "UTF-8", "utf8"]) {
    assert.equal(encodingProblem(ok), undefined, String(ok));
  }
  assert.equal(encodingProblem("gzip"), 'has the unsupported content encoding "gzip"');
});

Deno.test("decodeAs reads qbroker's tagged JSON into plain values, and an empty body as null", () => {
  assert.equal(decodeAs("json", new Uint8Array(), "x"), null);
  assert.equal(decodeAs("jsonobj", new Uint8Array(), "x"), null);
  const body = JSON.stringify({
    at: { _o: "datetime", t: 1764516000, s: "2025-11-30 15:20:00" },
    day: { _o: "date", d: 739585, s: "2025-11-30" },
    tod: { _o: "time", t: 3661, s: "01:01:01" },
    text: { _o: "bin", s: "hello" },
    raw: { _o: "bin", b: '!<6_DCi""', s: "hello" },
    exc: { _o: "exc", e: "builtins.KeyError", s: "'k'", r: "KeyError('k')" },
    list: [{ _o: "date", d: 1, s: "0001-01-01" }],
  });
  assert.deepEqual(decodeAs("jsonobj", bytes(body), "x"), {
    at: "2025-11-30T15:20:00.000Z",
    day: "2025-11-30",
    tod: "01:01:01",
    text: "hello",
    raw: { base64: "AP9oZWxsbw==" },
    exc: { error: "builtins.KeyError", message: "'k'" },
    list: ["0001-01-01"],
  });
  // Plain JSON (application/json) is not untagged.
  assert.deepEqual(decodeAs("json", bytes('{"_o":"date","d":1}'), "x"), { _o: "date", d: 1 });
});

Deno.test("decodeAs refuses unknown, malformed and too deeply nested tagged JSON", () => {
  assert.throws(
    () => decodeAs("jsonobj", bytes('{"_o":"LIST","_d":[]}'), 'the request to "x"'),
    (e: Error) =>
      e instanceof SyntaxError &&
      e.message === 'the request to "x" is not valid application/json+obj: it has the unknown ' +
          'application/json+obj tag "LIST" (known: datetime, date, time, bin, exc)',
  );
  assert.throws(
    () => decodeAs("jsonobj", bytes('{"_o":"time","t":"noon"}'), "x"),
    /malformed "time" object/,
  );
  const deep = "[".repeat(300) + "]".repeat(300);
  assert.throws(() => decodeAs("jsonobj", bytes(deep), "x"), /nested deeper than 256/);
});

Deno.test("ascii85Decode reads Python's base64.a85encode, z groups included", () => {
  assert.deepEqual([...ascii85Decode('!<6_DCi""')], [0, 255, 104, 101, 108, 108, 111]);
  assert.deepEqual([...ascii85Decode("z")], [0, 0, 0, 0]);
  assert.throws(() => ascii85Decode("v"), SyntaxError);
  assert.equal(untag(null), null);
});

Deno.test("failureOf reads qbroker's m_err and the bare shape; errorHeader writes m_err", () => {
  const h = errorHeader({ s: "error", m: "no such lamp", c: "RangeError" });
  assert.deepEqual(h, {
    _o: "m_err",
    s: "error",
    m: "no such lamp",
    c: "RangeError",
    e: {
      _o: "exc",
      e: "builtins.ValueError",
      a0: "no such lamp",
      s: "no such lamp",
      r: 'ValueError("no such lamp")',
    },
  });
  assert.deepEqual(failureOf(h), { s: "error", m: "no such lamp", c: "RangeError" });
  assert.deepEqual(failureOf({ s: "fail", m: "x", c: "IOError" }), {
    s: "fail",
    m: "x",
    c: "IOError",
  });
  // m and c taken from the exc member when missing.
  assert.deepEqual(
    failureOf({ _o: "m_err", s: "error", e: { _o: "exc", e: "builtins.KeyError", s: "'k'" } }),
    { s: "error", m: "'k'", c: "KeyError" },
  );
  assert.equal(failureOf({ _o: "m_err", s: "warn", m: "x" }), undefined);
});
