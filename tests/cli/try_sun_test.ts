/**
 * Sun events from the command line: `moat time` and `moat script try` take
 * `--location LAT,LON`, else read `/config/location` from etcd like the
 * zone. The CLI as a user runs it; times are checked against an independent
 * reference, astronomy-engine 2.1.19 (see host/time/sun_test.ts), within a
 * minute.
 */

import * as Astronomy from "astronomy-engine";
import { assert, assertEquals, assertIncludes } from "../_util/assert.ts";
import { runMoat } from "../_util/cli.ts";
import { etcdctl, freePorts, startEtcd } from "../_util/etcd_server.ts";

/** The reference's sunsets (sun's centre 0.833° below the horizon) after `from`, Unix seconds. */
function sunsets(latitude: number, longitude: number, from: number, n: number): number[] {
  const observer = new Astronomy.Observer(latitude, longitude, 0);
  const out: number[] = [];
  let t = from;
  while (out.length < n) {
    const found = Astronomy.SearchAltitude(
      Astronomy.Body.Sun,
      observer,
      -1,
      new Date(t * 1000),
      2,
      -0.833,
    );
    assert(found !== null, "the reference finds a sunset within two days");
    const at = found.date.getTime() / 1000;
    out.push(at);
    t = at + 600;
  }
  return out;
}

/** The Unix seconds of each `ISO  UNIX` line. */
function unixOf(stdout: string): number[] {
  return stdout.trim().split("\n").map((l) => Number(l.split(/\s+/)[1]));
}

Deno.test("moat time previews 30 min before sunset at --location across a DST change", async () => {
  const r = await runMoat([
    "time",
    "30 min before sunset",
    "--location",
    "52.52,13.405",
    "--tz",
    "Europe/Berlin",
    "--count",
    "5",
    "--now",
    "2026-03-26T12:00",
  ]);
  assertEquals(r.code, 0, r.stderr);
  assertEquals(r.stderr, "");
  const lines = r.stdout.trim().split("\n");
  assertEquals(lines.length, 5, r.stdout);
  // Thursday to Monday; Berlin goes to summer time on Sunday the 29th.
  assertEquals(
    lines.map((l) => l.slice(0, 10) + l.slice(19, 25)),
    [
      "2026-03-26+01:00",
      "2026-03-27+01:00",
      "2026-03-28+01:00",
      "2026-03-29+02:00",
      "2026-03-30+02:00",
    ],
  );
  const reference = sunsets(52.52, 13.405, Date.parse("2026-03-26T11:00:00Z") / 1000, 5);
  unixOf(r.stdout).forEach((t, i) => {
    assert(Math.abs(t - (reference[i]! - 1800)) <= 60, `${lines[i]} vs ${reference[i]}`);
  });
});

Deno.test("moat time with a sun event and no location exits 1 naming /config/location", async () => {
  const [port] = freePorts(1);
  const env = { MOAT_ETCD: `http://127.0.0.1:${port}` };
  const r = await runMoat(["time", "sunset", "--tz", "UTC", "--now", "1774800000"], { env });
  assertEquals(r.code, 1, r.stderr);
  assertIncludes(r.stderr, 'error: "sunset" needs the installation\'s location: give --location');
  assertIncludes(r.stderr, "/config/location");
  assertEquals(r.stdout, "");

  const bad = await runMoat(["time", "sunset", "--tz", "UTC", "--location", "52.52"], { env });
  assertEquals(bad.code, 2, bad.stderr);
  assertIncludes(bad.stderr, 'error: --location: Cannot use location "52.52"');
});

Deno.test("moat time and moat script try read /config/location from etcd, and --location over it", async () => {
  const etcd = await startEtcd();
  const dir = await Deno.makeTempDir({ prefix: "moat-try-sun-" });
  try {
    await etcdctl(etcd.endpoint, "put", "/moat/config/timezone", "Europe/Berlin");
    await etcdctl(etcd.endpoint, "put", "/moat/config/location", "52.52 13.405");
    const env = { MOAT_ETCD: etcd.endpoint };
    const now = Date.parse("2026-06-21T00:00:00Z") / 1000;

    const time = await runMoat(["time", "sunset", "--now", String(now)], { env });
    assertEquals(time.code, 0, time.stderr);
    assertIncludes(time.stderr, "note: location 52.52 13.405 (from /moat/config/location)");
    const berlin = sunsets(52.52, 13.405, now, 1)[0]!;
    assert(Math.abs(unixOf(time.stdout)[0]! - berlin) <= 60, time.stdout);

    // --location over /config/location: Tromsø has the midnight sun in June.
    const tromso = await runMoat(
      ["time", "sunset", "--now", String(now), "--location", "69.6492,18.9553"],
      { env },
    );
    assertEquals(tromso.code, 0, tromso.stderr);
    assert(!tromso.stderr.includes("note: location"), tromso.stderr);
    assert(tromso.stdout.startsWith("2026-07-2"), tromso.stdout);

    const script = `${dir}/sun.ts`;
    await Deno.writeTextFile(
      script,
      `moat.setup();
moat.run(async () => {
  const at = await moat.wait("30", "min", "before", "sunset");
  moat.logger.info("sunset soon", at);
  moat.end();
});
`,
    );
    const tried = await runMoat(
      ["script", "try", script, "--at", "2026-06-21T12:00", "--for", "1d"],
      { env },
    );
    assertEquals(tried.code, 0, tried.stderr);
    assertIncludes(tried.stderr, "note: location 52.52 13.405 (from /moat/config/location)");
    const soon = berlin - 1800;
    const logged = /info {2}sunset soon (\d+)/.exec(tried.stdout);
    assert(logged !== null, tried.stdout);
    assert(Math.abs(Number(logged[1]) - soon) <= 60, tried.stdout);
    assertIncludes(tried.stdout, ' for "30 min before sunset"');

    const triedHere = await runMoat(
      [
        "script",
        "try",
        script,
        "--at",
        "2026-06-21T12:00",
        "--for",
        "1d",
        "--location",
        "69.6492,18.9553",
      ],
      { env },
    );
    // Tromsø's next sunset is a month away: the day ends first.
    assertEquals(triedHere.code, 0, triedHere.stderr);
    assert(!triedHere.stdout.includes("sunset soon"), triedHere.stdout);
    assertIncludes(triedHere.stdout, "wait  until 2026-07-2");
  } finally {
    await Deno.remove(dir, { recursive: true });
    await etcd.stop();
  }
});
