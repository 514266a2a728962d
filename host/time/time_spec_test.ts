import assert from "node:assert/strict";
import { parseTimeSpec, TimeSpecError } from "./time_spec.ts";

Deno.test("parseTimeSpec reads every unit alias into its field", () => {
  assert.deepEqual(parseTimeSpec("1 s 2 m 3 h 4 d 5 mo 6 w 2027 y"), {
    second: 1,
    minute: 2,
    hour: 3,
    day: 4,
    month: 5,
    week: 6,
    year: 2027,
  });
  assert.deepEqual(
    parseTimeSpec("1 seconds 2 minutes 3 hours 4 days 5 months 6 weeks 2027 years"),
    parseTimeSpec("1 second 2 minute 3 hour 4 day 5 month 6 week 2027 year"),
  );
  assert.deepEqual(parseTimeSpec("1 sec 2 min 3 hr 4 dy 6 wk 2027 yr"), {
    second: 1,
    minute: 2,
    hour: 3,
    day: 4,
    week: 6,
    year: 2027,
  });
});

Deno.test("parseTimeSpec treats a string and the same tokens as an array alike", () => {
  assert.deepEqual(parseTimeSpec("mon 7 hr 30 min"), parseTimeSpec(["mon", 7, "hr", 30, "min"]));
  assert.deepEqual(parseTimeSpec(["MON", "7", "HR"]), { weekday: 1, hour: 7 });
});

Deno.test("parseTimeSpec joins a sign written apart from its number", () => {
  assert.deepEqual(parseTimeSpec("- 10 sec"), { second: -10 });
  assert.deepEqual(parseTimeSpec(["-", 1, "fri"]), { weekday: 5, nth: -1 });
  assert.deepEqual(parseTimeSpec("+ 3 hr"), { hour: 3 });
});

Deno.test("parseTimeSpec reads N mo as a month and a bare mo as Monday", () => {
  assert.deepEqual(parseTimeSpec("2 mo"), { month: 2 });
  assert.deepEqual(parseTimeSpec("mo"), { weekday: 1 });
  assert.deepEqual(parseTimeSpec("2 mon"), { weekday: 1, nth: 2 });
  assert.deepEqual(parseTimeSpec("2 monday"), { weekday: 1, nth: 2 });
  assert.deepEqual(parseTimeSpec("mo 2 mo"), { weekday: 1, month: 2 });
});

Deno.test("parseTimeSpec reads every weekday name and the N-th weekday", () => {
  const names = [
    ["mo", "mon", "monday"],
    ["tu", "tue", "tuesday"],
    ["we", "wed", "wednesday"],
    ["th", "thu", "thursday"],
    ["fr", "fri", "friday"],
    ["sa", "sat", "saturday"],
    ["su", "sun", "sunday"],
  ];
  names.forEach((group, i) => {
    for (const n of group) assert.deepEqual(parseTimeSpec(n), { weekday: i + 1 }, n);
  });
  assert.deepEqual(parseTimeSpec("-5 tu"), { weekday: 2, nth: -5 });
  assert.deepEqual(parseTimeSpec("5 sunday"), { weekday: 7, nth: 5 });
});

Deno.test("parseTimeSpec takes a first token above 1e9 as the Unix time now", () => {
  assert.deepEqual(parseTimeSpec("1049522828 12 hr"), { now: 1049522828, hour: 12 });
  assert.deepEqual(parseTimeSpec([1049522828.5]), { now: 1049522828.5 });
  assert.deepEqual(parseTimeSpec(""), {});
  assert.deepEqual(parseTimeSpec([]), {});
});

Deno.test("parseTimeSpec keeps negative values as written", () => {
  assert.deepEqual(parseTimeSpec("-1 hr -60 min -31 dy -12 mo -53 wk"), {
    hour: -1,
    minute: -60,
    day: -31,
    month: -12,
    week: -53,
  });
});

/** Parse `spec`, expect a TimeSpecError, and return its message. */
function errorOf(spec: string | (string | number)[]): string {
  try {
    parseTimeSpec(spec);
  } catch (e) {
    assert.ok(e instanceof TimeSpecError, `expected a TimeSpecError, got ${e}`);
    assert.equal(e.name, "TimeSpecError");
    return e.message;
  }
  assert.fail(`parsing ${JSON.stringify(spec)} did not throw`);
}

Deno.test("a field given twice is an error naming the second token", () => {
  assert.equal(
    errorOf("7 hr 8 hr"),
    'Cannot parse time spec "7 hr 8 hr": hour given twice ("hr"; first at token 2) at token 4',
  );
  assert.match(errorOf("mon 2 fri"), /weekday given twice \("fri"; first at token 1\) at token 3/);
  assert.match(errorOf("3 h 4 hours"), /hour given twice \("hours".*at token 4$/);
});

Deno.test("a value out of range is an error naming the value and its token", () => {
  assert.equal(
    errorOf("5 min 60 sec"),
    'Cannot parse time spec "5 min 60 sec": second "60 sec" out of range 0..59 or -60..-1 at token 3',
  );
  assert.match(errorOf("24 hr"), /hour "24 hr" out of range 0..23 or -24..-1 at token 1$/);
  assert.match(errorOf("- 25 hr"), /hour "-25 hr" out of range .* at token 1$/);
  assert.match(errorOf("0 dy"), /day "0 dy" out of range 1..31 or -31..-1 at token 1$/);
  assert.match(errorOf("54 wk"), /week "54 wk" out of range 1..53 or -53..-1 at token 1$/);
  assert.match(errorOf("-1 yr"), /year "-1 yr" out of range 1..9999 at token 1$/);
  assert.match(errorOf("6 fri"), /N-th weekday "6 fri" out of range 1..5 or -5..-1 at token 1$/);
  assert.match(errorOf("1 hr 0 mon"), /N-th weekday "0 mon" out of range .* at token 3$/);
});

Deno.test("N mo out of the month range is an error that points to N mon", () => {
  assert.equal(
    errorOf("13 mo"),
    'Cannot parse time spec "13 mo": month "13 mo" out of range 1..12 or -12..-1 ' +
      '("N mo" is a month; the N-th Monday is "N mon") at token 1',
  );
  assert.match(errorOf("0 mo"), /month "0 mo" out of range .* at token 1$/);
});

Deno.test("an unknown unit is an error naming it", () => {
  assert.equal(errorOf("7 hrs"), 'Cannot parse time spec "7 hrs": unknown unit "hrs" at token 2');
  assert.match(errorOf("noon"), /unknown unit "noon" at token 1$/);
  assert.match(errorOf("1 hr 2 tues"), /unknown unit "tues" at token 4$/);
});

Deno.test("a number without a unit is an error naming the number", () => {
  assert.equal(
    errorOf("12 hr 30"),
    'Cannot parse time spec "12 hr 30": number "30" without a unit at token 3',
  );
  assert.match(errorOf("7 8 hr"), /number "7" without a unit \(followed by "8"\) at token 1$/);
  assert.match(errorOf("hr"), /unit "hr" without a number at token 1$/);
  assert.match(errorOf("1 hr -"), /sign "-" without a number at token 3$/);
});

Deno.test("a sign before a weekday is an error naming the sign and the weekday", () => {
  assert.equal(
    errorOf("- fri"),
    'Cannot parse time spec "- fri": sign "-" before weekday "fri" at token 1',
  );
  assert.match(errorOf("7 hr -mon"), /sign "-" before weekday "mon" at token 3$/);
  assert.match(errorOf("- mo"), /sign "-" before weekday "mo" at token 1$/);
});

Deno.test("a non-integer number is an error naming it", () => {
  assert.equal(
    errorOf("7.5 hr"),
    'Cannot parse time spec "7.5 hr": non-integer number "7.5" at token 1',
  );
  assert.match(errorOf([1.5, "sec"]), /non-integer number "1.5" at token 1$/);
  assert.match(errorOf([Number.NaN, "sec"]), /non-integer number "NaN" at token 1$/);
  assert.match(errorOf("1 hr - 0.5 min"), /non-integer number "-0.5" at token 3$/);
});

Deno.test("a Unix timestamp anywhere but first is an error", () => {
  assert.match(
    errorOf("12 hr 1049522828 sec"),
    /number "1049522828" is too large \(a Unix timestamp may only be the first token\) at token 3$/,
  );
});

Deno.test("two signs in a row are an error", () => {
  assert.match(errorOf("- -1 hr"), /sign "-" before the signed number "-1" at token 1$/);
  assert.match(errorOf("1 hr - x"), /sign "-" before "x", which is not a number at token 3$/);
  assert.match(errorOf("- + hr"), /two signs in a row \("- \+"\) at token 1$/);
});
