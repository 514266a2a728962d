/**
 * `moat script try` run as a user runs it: a child process on the embedded
 * store and bus with a virtual clock. Every example goes through a
 * simulated week in far less than a week of real time (how fast is
 * cli.try_week in deno task bench: the bar there is under 10 s).
 */

import { assert, assertEquals, assertIncludes } from "../_util/assert.ts";
import { type CliResult, runMoat } from "../_util/cli.ts";

const EX = new URL("../../examples/", import.meta.url).pathname;
/**
 * Generous: a simulated week that took this long would run on the wall
 * clock, not the virtual one. Not a speed bound: a busy machine is slow.
 */
const WALL_CLOCK_WEEK_MS = 120_000;

async function tryScript(args: string[], stdin?: string): Promise<CliResult & { ms: number }> {
  const began = performance.now();
  const r = await runMoat(["script", "try", ...args], stdin === undefined ? {} : { stdin });
  return { ...r, ms: performance.now() - began };
}

async function withFiles<T>(
  files: Record<string, unknown>,
  fn: (path: (name: string) => string) => Promise<T>,
): Promise<T> {
  const dir = await Deno.makeTempDir({ prefix: "moat-try-" });
  try {
    for (const [name, v] of Object.entries(files)) {
      await Deno.writeTextFile(`${dir}/${name}`, typeof v === "string" ? v : JSON.stringify(v));
    }
    return await fn((name) => `${dir}/${name}`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const lines = (r: CliResult) => r.stdout.trimEnd().split("\n");

/** That the run went on virtual time: it did not take anything like real time. */
function onVirtualTime(r: CliResult & { ms: number }, what: string): void {
  assert(
    r.ms < WALL_CLOCK_WEEK_MS,
    `${what} took ${Math.round(r.ms)} ms:\n${r.stdout}\n${r.stderr}`,
  );
}

Deno.test("try runs daily_schedule.ts through a week: the light switches at its times", async () => {
  const r = await tryScript([
    `${EX}daily_schedule.ts`,
    "light=false",
    "--at",
    "2026-03-02T12:00",
    "--tz",
    "UTC",
    "--for",
    "7d",
  ]);
  assertEquals(r.code, 0, r.stderr);
  onVirtualTime(r, "a week of daily_schedule.ts");
  const l = lines(r);
  assertEquals(
    l[0],
    `2026-03-02T12:00:00+00:00 try   ${EX}daily_schedule.ts as task try/daily_schedule, ` +
      "zone UTC, until 2026-03-09T12:00:00+00:00",
  );
  const switches = l.filter((x) => / info {2}light (on|off) /.test(x));
  const expected = ["2026-03-02T12:00:00+00:00 info  light on (at start)"];
  for (let d = 2; d <= 8; d++) {
    const day = `2026-03-0${d}`;
    expected.push(`${day}T23:00:00+00:00 info  light off (23 hr)`);
    expected.push(`2026-03-0${d + 1}T07:30:00+00:00 info  light on (7 hr 30 min)`);
  }
  assertEquals(switches, expected);
  // The task's value as given, then each switch writes data/light, at the same virtual time.
  assertEquals(l.filter((x) => x.includes(" data  light = ")).length, 1 + 15);
  assert(l.includes("2026-03-02T23:00:00+00:00 data  light = false"), r.stdout);
  assert(l.includes("2026-03-03T07:30:00+00:00 data  light = true"), r.stdout);
  // Its waits, with the virtual time they end at.
  assert(l.includes("2026-03-02T12:00:00+00:00 wait  until 2026-03-02T23:00:00+00:00 (in 11h)"));
  assertEquals(
    l.at(-2),
    "2026-03-09T12:00:00+00:00 end   reached 2026-03-09T12:00:00+00:00; stopping the script",
  );
  assertIncludes(r.stderr, "simulated 7d in ");
});

Deno.test("try keeps a 07:30 schedule at 07:30 local time across the DST change", async () => {
  const r = await tryScript([
    `${EX}daily_schedule.ts`,
    "light=false",
    "--at",
    "2026-03-27T12:00",
    "--tz",
    "Europe/Berlin",
    "--until",
    "1 dy 4 mo",
  ]);
  assertEquals(r.code, 0, r.stderr);
  const on = lines(r).filter((x) => x.includes(" info  light on (7 hr 30 min)")).map((x) =>
    x.slice(0, 25)
  );
  assertEquals(on, [
    "2026-03-28T07:30:00+01:00",
    "2026-03-29T07:30:00+02:00",
    "2026-03-30T07:30:00+02:00",
    "2026-03-31T07:30:00+02:00",
  ]);
  assertIncludes(r.stdout, "until 2026-04-01T00:00:00+02:00");
  assertIncludes(r.stdout, "2026-03-28T23:00:00+01:00 info  light off (23 hr)");
  assertIncludes(r.stdout, "2026-03-29T23:00:00+02:00 info  light off (23 hr)");
});

Deno.test("try injects alerts and RPC calls into rpc_service.ts and prints the replies", async () => {
  await withFiles({
    "events.json": [
      { at: "+1m", call: "porch.light.get" },
      { at: "2026-03-02T12:02", call: "porch.light.set", args: { on: true } },
      { at: "+3m", call: "porch.light.set", args: { on: "yes" } },
      { at: "+1h", alert: "porch.motion", data: { where: "door" } },
      { at: "+1h2m", alert: "porch.motion" },
    ],
  }, async (path) => {
    const r = await tryScript([
      `${EX}rpc_service.ts`,
      "light=false",
      "hold=300",
      "--events",
      path("events.json"),
      "--at",
      "2026-03-02T12:00",
      "--tz",
      "UTC",
      "--for",
      "7d",
    ]);
    assertEquals(r.code, 0, r.stderr);
    onVirtualTime(r, "a week of rpc_service.ts");
    const l = lines(r).filter((x) => !x.includes(" wait  ") && !x.includes("sandbox pid"));
    const from = l.findIndex((x) => x.includes("serving porch.light.get"));
    const expected = [
      "2026-03-02T12:00:00+00:00 info  serving porch.light.get and porch.light.set",
      "2026-03-02T12:01:00+00:00 call  porch.light.get null",
      '2026-03-02T12:01:00+00:00 reply porch.light.get → {"on":false}',
      '2026-03-02T12:02:00+00:00 call  porch.light.set {"on":true}',
      "2026-03-02T12:02:00+00:00 data  light = true",
      "2026-03-02T12:02:00+00:00 info  light on (rpc)",
      '2026-03-02T12:02:00+00:00 reply porch.light.set → {"on":true}',
      '2026-03-02T12:03:00+00:00 call  porch.light.set {"on":"yes"}',
      "2026-03-02T12:03:00+00:00 reply porch.light.set failed: porch.light.set failed: " +
      'porch.light.set expects {"on": true} or {"on": false} (TypeError)',
      '2026-03-02T13:00:00+00:00 alert porch.motion {"where":"door"}',
      "2026-03-02T13:00:00+00:00 info  light on (rpc)",
      "2026-03-02T13:02:00+00:00 alert porch.motion null",
      "2026-03-02T13:02:00+00:00 info  light on (rpc)",
      // Off five minutes after the last motion, not the first.
      "2026-03-02T13:07:00+00:00 data  light = false",
      "2026-03-02T13:07:00+00:00 info  light off (no motion)",
      "2026-03-09T12:00:00+00:00 end   reached 2026-03-09T12:00:00+00:00; stopping the script",
    ];
    assertEquals(l.slice(from, from + expected.length), expected);
  });
});

/** device_monitor.ts watching a freezer for a week from 2026-03-02T12:00Z, seeded from files. */
function freezerWeek(tree: string, events: string): string[] {
  return [
    `${EX}device_monitor.ts`,
    "device=device/onewire/10/:dev",
    "--name",
    "freezer",
    "--tree",
    tree,
    "--events",
    events,
    "--at",
    "1772452800", // 2026-03-02T12:00:00Z
    "--tz",
    "UTC",
    "--for",
    "7d",
  ];
}

Deno.test("try seeds the tree from --tree and changes it with put/delete events (device_monitor.ts)", async () => {
  await withFiles({
    "tree.json": {
      "device/onewire/10/:dev": { temp: -20, name: "freezer" },
      "meta/script/freezer/:code/types": { device: "str/ref", max: "float" },
    },
    "events.json": [
      { at: "+1h", put: "device/onewire/10/:dev/temp", value: -10.5 },
      { at: "+2h", put: "device/onewire/10/:dev/temp", value: -18 },
      { at: "+3d", delete: "device/onewire/10/:dev" },
    ],
  }, async (path) => {
    const r = await tryScript(freezerWeek(path("tree.json"), path("events.json")));
    assertEquals(r.code, 0, r.stderr);
    onVirtualTime(r, "a week of device_monitor.ts");
    const l = lines(r);
    for (
      const want of [
        "2026-03-02T12:00:00+00:00 info  freezer at -20 °C",
        "2026-03-02T13:00:00+00:00 put   device/onewire/10/:dev/temp = -10.5",
        "2026-03-02T13:00:00+00:00 error too_warm set: freezer at -10.5 °C, above -15 °C",
        "2026-03-02T13:00:00+00:00 warn  too warm: error recorded",
        "2026-03-02T14:00:00+00:00 error too_warm cleared",
        "2026-03-02T14:00:00+00:00 info  temperature fine: error cleared",
        "2026-03-05T12:00:00+00:00 error device_gone set: device/onewire/10/:dev was deleted",
      ]
    ) assert(l.includes(want), `missing "${want}" in:\n${r.stdout}`);
  });
});

Deno.test("try reads --tree and --events as YAML when their names end in .yaml or .yml", async () => {
  await withFiles({
    "tree.yaml": [
      "device/onewire/10/:dev:",
      "  temp: -20",
      "  name: freezer",
      "meta/script/freezer/:code/types:",
      "  device: str/ref",
      "  max: float",
      "",
    ].join("\n"),
    "events.yml": [
      "- { at: +1h, put: device/onewire/10/:dev/temp, value: -10.5 }",
      "- at: +3d",
      "  delete: device/onewire/10/:dev",
      "",
    ].join("\n"),
  }, async (path) => {
    const r = await tryScript(freezerWeek(path("tree.yaml"), path("events.yml")));
    assertEquals(r.code, 0, r.stderr);
    const l = lines(r);
    for (
      const want of [
        "2026-03-02T12:00:00+00:00 info  freezer at -20 °C",
        "2026-03-02T13:00:00+00:00 put   device/onewire/10/:dev/temp = -10.5",
        "2026-03-02T13:00:00+00:00 error too_warm set: freezer at -10.5 °C, above -15 °C",
        "2026-03-05T12:00:00+00:00 error device_gone set: device/onewire/10/:dev was deleted",
      ]
    ) assert(l.includes(want), `missing "${want}" in:\n${r.stdout}`);
  });
});

Deno.test("try runs every example through a simulated week, each in under 10 s", async (t) => {
  await withFiles({
    "windows.json": {
      "device/window": { kitchen: { battery: 80 }, "bath room": { battery: 5 } },
      "meta/script/error_report/:code/types/sensors": "str/ref",
      "meta/script/device_monitor/:code/types/device": "str/ref",
    },
  }, async (path) => {
    const cases: [string, string[], number, (r: CliResult) => void][] = [
      ["hello.ts", [], 0, (r) => assertIncludes(r.stdout, "info  hello from a sandboxed script")],
      ["ticker.ts", [], 0, (r) => {
        assertIncludes(
          r.stdout,
          "2026-03-02T12:00:03+00:00 info  tick 3 at 2026-03-02T12:00:03.000Z",
        );
        assertIncludes(r.stdout, "ended: ok: script called moat.end()");
      }],
      ["flaky.ts", [], 1, (r) => {
        assertIncludes(r.stderr, "error: the script ended with error: the sensor did not answer");
      }],
      ["daily_schedule.ts", ["light=false"], 0, (r) => {
        assertEquals(lines(r).filter((x) => x.includes(" data  light = ")).length, 1 + 15);
      }],
      ["device_monitor.ts", ["device=device/window", "--tree", path("windows.json")], 0, (r) => {
        assertIncludes(r.stdout, "end   reached 2026-03-09T12:00:00+00:00");
      }],
      ["error_report.ts", ["sensors=device/window", "--tree", path("windows.json")], 0, (r) => {
        // Hourly checks: 169 in a week (the first at the start).
        assertEquals(lines(r).filter((x) => x.includes("checked 2 sensors, 1 low")).length, 169);
        assertIncludes(r.stdout, "2026-03-09T11:00:00+00:00 error battery.bath_room set");
      }],
      ["shared_library.ts", ["--lib", `lib/units=${EX}lib_units.ts`], 0, (r) => {
        assertIncludes(r.stdout, "info  212 °F is 100.0 °C");
      }],
      ["rpc_service.ts", ["light=false"], 0, (r) => {
        assertIncludes(r.stdout, "info  serving porch.light.get and porch.light.set");
      }],
    ];
    const listed = [...Deno.readDirSync(EX)].map((e) => e.name).filter((n) =>
      n.endsWith(".ts") && n !== "lib_units.ts" // a library: run through shared_library.ts
    ).sort();
    assertEquals(cases.map(([f]) => f).sort(), listed, "every example has a case");
    for (const [file, args, code, check] of cases) {
      await t.step(file, async () => {
        const r = await tryScript([
          `${EX}${file}`,
          ...args,
          "--at",
          "2026-03-02T12:00",
          "--tz",
          "UTC",
          "--for",
          "7d",
        ]);
        assertEquals(r.code, code, `${r.stdout}\n${r.stderr}`);
        onVirtualTime(r, `a week of ${file}`);
        check(r);
        console.log(`      ${file}: ${(r.ms / 1000).toFixed(2)} s wall, ${r.stderr.trim()}`);
      });
    }
  });
});

Deno.test("try refuses bad input with a clear error", async () => {
  await withFiles({
    "bad.json": "[{at: 1}]",
    "noevent.json": [{ at: "+1h" }],
    "early.json": [{ at: "2020-01-01T00:00", alert: "x" }],
    "tree.json": ["not", "an", "object"],
    "dup.yaml": "device: 1\ndevice: 2\n",
    "bad.yml": "- at: [+1h\n",
    "yaml.json": "device:\n  temp: 1\n",
    "syntax.ts": "moat.setup(\n",
  }, async (path) => {
    const ex = `${EX}hello.ts`;
    const cases: [string[], number, string][] = [
      [["/nonexistent/porch.ts"], 2, 'error: script: "/nonexistent/porch.ts" does not exist'],
      [
        [ex, "--at", "yesterday"],
        2,
        'error: --at must be Unix seconds or an ISO date-time, not "yesterday"',
      ],
      [[ex, "--at", "2026-02-30T10:00"], 2, 'error: --at "2026-02-30T10:00" is not a valid date'],
      [
        [ex, "--for", "7 days"],
        2,
        'error: --for "7 days" is not a duration (e.g. 7d, 36h, 90m, 3600s, 1d12h)',
      ],
      [[ex, "--for", "0s"], 2, 'error: --for "0s" must be longer than zero'],
      [[ex, "--for", "1d", "--until", "mon"], 2, "error: --until and --for exclude each other"],
      [
        [ex, "--until", "7 hrs"],
        2,
        'error: --until: Cannot parse time spec "7 hrs": unknown unit "hrs" at token 2',
      ],
      [[ex, "--tz", "Mars/Olympus"], 2, 'error: --tz "Mars/Olympus" is not a known IANA time zone'],
      [
        [ex, "--events", path("bad.json")],
        2,
        `error: --events "${path("bad.json")}" is not valid JSON: `,
      ],
      [
        [ex, "--events", path("missing.json")],
        2,
        `error: --events: "${path("missing.json")}" does not exist`,
      ],
      [
        [ex, "--events", path("noevent.json")],
        2,
        'event 1: needs one of "alert": TOPIC, "call": NAME',
      ],
      [
        [ex, "--at", "2026-03-02", "--events", path("early.json")],
        2,
        'event 1: "at" "2020-01-01T00:00" is before --at',
      ],
      [
        [ex, "--tree", path("tree.json")],
        2,
        `error: --tree "${path("tree.json")}" must hold an object of paths and values`,
      ],
      [
        [ex, "--tree", path("dup.yaml")],
        2,
        `error: --tree "${path("dup.yaml")}" is not valid YAML at line 2, column 1: ` +
        "Map keys must be unique",
      ],
      [
        [ex, "--events", path("bad.yml")],
        2,
        `error: --events "${path("bad.yml")}" is not valid YAML at line 2, column 1: Flow sequence`,
      ],
      [
        [ex, "--tree", path("yaml.json")],
        2,
        "is not valid JSON: ",
      ],
      [[ex, "1x"], 2, 'error: "1x" is not key=value'],
      [[path("syntax.ts")], 1, `${path("syntax.ts")}:2:1: ')' expected.`],
    ];
    for (const [args, code, text] of cases) {
      const r = await tryScript(args);
      assertEquals(r.code, code, `${args.join(" ")}: ${r.stderr}`);
      assertIncludes(r.stderr, text, args.join(" "));
      assert(/^error: /m.test(r.stderr), `no "error: " line for ${args.join(" ")}`);
      assert(!r.stderr.includes("    at "), `stack trace leaked: ${r.stderr}`);
      assertEquals(r.stdout, "", args.join(" "));
    }
  });
});

Deno.test("try reads the script from standard input", async () => {
  const r = await tryScript(
    ["-", "--at", "2026-03-02T12:00", "--tz", "UTC"],
    'moat.setup();\nconst t = await moat.wait("13 hr");\nmoat.logger.info("at " + t);\nmoat.end();\n',
  );
  assertEquals(r.code, 0, r.stderr);
  assertIncludes(r.stdout, "standard input as task try/stdin");
  assertIncludes(r.stdout, "2026-03-02T13:00:00+00:00 info  at 1772456400");
  assertIncludes(r.stdout, "2026-03-02T13:00:00+00:00 info  ended: ok: script called moat.end()");
});
