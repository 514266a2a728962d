/**
 * Capability manifests on a real host with a private etcd, real sandboxes
 * and the embedded LocalBus: tree prefixes, data keys, `moat.load` names,
 * RPC names served and called, alert topics sent and patterns listened to;
 * a manifest change restarts the script with its new rights; a loaded
 * library has the loader's rights; one error record per capability; a
 * malformed manifest fails the task until it is fixed.
 */

import { assert, assertEquals, assertIncludes } from "../_util/assert.ts";
import { withTimeout } from "../_util/wait.ts";
import { type EtcdServer, startEtcd } from "../_util/etcd_server.ts";
import { EtcdStore } from "../../host/store/etcd_store.ts";
import { Layout, SCRIPT_KEYS, TASK_KEYS } from "../../host/layout.ts";
import { MemoryLogger } from "../../host/log.ts";
import { SandboxPool } from "../../host/bridge/sandbox.ts";
import { Host } from "../../host/tasks/host.ts";
import { servicesOn } from "../../host/cli/services.ts";
import { LocalBus } from "../../host/bus/local_bus.ts";
import { ErrorRecords } from "../../host/capabilities/error_records.ts";
import { SystemClock } from "../../host/time/clock.ts";
import { TEST_LIMITS } from "./_harness.ts";

/** Every probe logs `R <label> ok <value>` or `R <label> <code>: <message>`. */
const PROBE = `
const probe = async (label, f) => {
  try {
    const v = await f();
    moat.logger.info("R " + label + " ok " + JSON.stringify(v ?? null));
  } catch (e) {
    moat.logger.info("R " + label + " " + e.code + ": " + e.message);
  }
};
`;

const READER = `moat.setup();
${PROBE}
moat.run(async () => {
  await probe("device", async () => (await moat.tree.lookup("device", "lamp"))?.get("state"));
  for (let i = 0; i < 5; i++) {
    await probe("config", async () => (await moat.tree.lookup("config", "site"))?.get("name"));
  }
  await probe("count", () => moat.data.set("count", 1));
  for (let i = 0; i < 3; i++) await probe("other", () => moat.data.set("other", 1));
  const lib = await moat.load("lib/peek").catch((e) => ({ peek: () => Promise.reject(e) }));
  await probe("lib", () => lib.peek());
  await probe("load", () => moat.load("lib/other"));
  await probe("clear", () => moat.clear_error("denied.tree.read"));
  moat.logger.info("R done");
});
`;

const PEEK = `moat.setup();
moat.exports.peek = async () => (await moat.tree.lookup("config", "site"))?.get("name");
`;

const LAMP = `moat.setup();
${PROBE}
moat.rpc("lamp.on")(() => "lit");
moat.on_alert("door.*")((topic) => moat.logger.info("R heard " + topic));
moat.on_start(async () => {
  moat.logger.info("R serving");
  for (let i = 0; i < 3; i++) await probe("call_door", () => moat.call("door.open", null, { timeout: 1 }));
  await probe("call_sun", () => moat.call("sun.rise", null, { timeout: 5 }));
  await probe("send_lamp", () => moat.alert("lamp.kitchen.on", {}));
  await probe("send_door", () => moat.alert("door.close", {}));
  moat.logger.info("R ready");
  const mode = moat.data.get("mode");
  if (mode === "serve") moat.rpc("door.open")(() => "opened");
  if (mode === "listen") moat.on_alert("#")(() => {});
});
`;

const LAMP_CAPS = {
  rpc: { serve: ["lamp.*"], call: ["sun.*"] },
  alert: { send: ["lamp.#"], receive: ["door.#"] },
};

class ManifestHost {
  readonly logger = new MemoryLogger();
  readonly bus = new LocalBus();
  readonly layout = new Layout("/moat");
  readonly tmpDir = Deno.makeTempDirSync({ prefix: "moat-manifest-" });
  readonly pool = new SandboxPool({
    warm: 1,
    limits: TEST_LIMITS,
    tmpDir: this.tmpDir,
    readyTimeoutMs: 120_000,
  });
  readonly store: EtcdStore;
  readonly host: Host;
  readonly s;
  readonly errors: ErrorRecords;

  constructor(readonly etcd: EtcdServer) {
    this.store = new EtcdStore({ endpoints: [etcd.endpoint] });
    this.s = servicesOn(this.store, "/moat");
    this.errors = new ErrorRecords(this.store, this.layout, new SystemClock());
    this.host = new Host({
      store: this.store,
      layout: this.layout,
      hostName: "h",
      isolation: this.pool,
      logger: this.logger,
      bus: this.bus,
    });
  }

  lines(task: string): string[] {
    return this.logger.lines.filter((l) => l.source === task).map((l) => l.message);
  }

  /** The probe results of `task` so far: label → the results, in order. */
  results(task: string): Map<string, string[]> {
    const out = new Map<string, string[]>();
    for (const m of this.lines(task)) {
      const r = /^R (\S+) (ok .*|\w+: .*)$/.exec(m);
      if (!r) continue;
      const [, label, rest] = r;
      out.set(label!, [...(out.get(label!) ?? []), rest!]);
    }
    return out;
  }

  /** Wait (60 s at most) until `task` has logged `count` lines matching `pred`. */
  async waitLines(task: string, pred: (m: string) => boolean, count = 1, what = "a line") {
    try {
      await withTimeout(
        this.logger.waitFor(() => this.lines(task).filter(pred).length >= count),
        60_000,
        what,
      );
    } catch (e) {
      const log = this.logger.lines.map((l) => `${l.source} ${l.message}`).join("\n");
      throw new Error(`${(e as Error).message}; log:\n${log}`);
    }
  }

  async script(name: string, code: string, caps?: unknown): Promise<void> {
    await this.s.scripts.add(name, code, { language: "javascript" });
    if (caps !== undefined) {
      await this.store.put(this.layout.scriptDir(name) + SCRIPT_KEYS.caps, JSON.stringify(caps));
    }
  }

  async close(): Promise<void> {
    await this.host.close();
    await this.pool.close();
    await this.bus.close();
    await this.store.close();
    await Deno.remove(this.tmpDir, { recursive: true }).catch(() => {});
  }
}

Deno.test("capability manifests limit what a script uses on a real host", async (t) => {
  const etcd = await startEtcd();
  const h = new ManifestHost(etcd);
  try {
    await h.store.put("/moat/device/lamp/state", "on");
    await h.store.put("/moat/config/site/name", "home");
    await h.script("lib/peek", PEEK);
    await h.script("lib/other", "moat.setup();\n");
    await h.script("reader", READER, {
      tree: { read: ["device/"] },
      data: { write: ["count"] },
      load: ["lib/peek"],
    });
    await h.s.tasks.add("reader", "h/reader", {
      data: [["count", "0"], ["other", "0"]],
      settings: [["restart", "0"]],
    });
    await h.script("lamp", LAMP, LAMP_CAPS);
    // In values/, not data/: a change of it restarts the task.
    await h.store.put(h.layout.taskDir("h/lamp") + "values/mode", "none");
    await h.s.tasks.add("lamp", "h/lamp", { settings: [["restart", "0"]] });
    await h.host.start();

    await t.step("a script limited to device/ cannot read config/, nor its library", async () => {
      await h.waitLines("h/reader", (m) => m === "R done", 1, "the reader's probes");
      const r = h.results("h/reader");
      assertEquals(r.get("device"), ['ok "on"']);
      assertEquals(r.get("config")?.length, 5);
      for (const c of r.get("config")!) {
        assertEquals(
          c,
          'denied: denied: tree.read "config/site" is not in this script\'s manifest',
        );
      }
      // The library runs with the loader's rights, never more.
      assertEquals(r.get("lib"), [
        'denied: denied: tree.read "config/site" is not in this script\'s manifest',
      ]);
      assertEquals(r.get("count"), ["ok null"]);
      assertEquals(
        r.get("other"),
        Array(3).fill('denied: denied: data.write "other" is not in this script\'s manifest'),
      );
      assertEquals(r.get("load"), [
        'denied: denied: load "lib/other" is not in this script\'s manifest',
      ]);
      // The script cannot hide the record of its refusals.
      assertIncludes(r.get("clear")![0]!, "reserved: ");
    });

    await t.step("the error record says so once per capability, not once per call", async () => {
      const recs = (await h.errors.list("h/reader")).filter((e) => e.tag.startsWith("denied."));
      const byTag = new Map(recs.map((e) => [e.tag, e]));
      assertEquals([...byTag.keys()].sort(), [
        "denied.data.write",
        "denied.load",
        "denied.tree.read",
      ]);
      // Six refused tree reads (five of the script, one of its library): one record, counted once.
      assertEquals(byTag.get("denied.tree.read")!.counter, 1);
      assertEquals(byTag.get("denied.data.write")!.counter, 1);
      assertIncludes(byTag.get("denied.tree.read")!.msg, 'tree.read "config/site"');
    });

    await t.step("a manifest change restarts the script with the new rights", async () => {
      await h.store.put(
        h.layout.scriptDir("reader") + SCRIPT_KEYS.caps,
        JSON.stringify({ tree: { read: ["device/", "config/site/"] }, load: ["lib/peek"] }),
      );
      await h.waitLines("h/reader", (m) => m === "R done", 2, "the reader's second run");
      const r = h.results("h/reader");
      assertEquals(r.get("config")!.slice(5), Array(5).fill('ok "home"'));
      assertEquals(r.get("lib")![1], 'ok "home"');
      assertEquals(r.get("other")!.slice(3), Array(3).fill("ok null"));
    });

    await t.step(
      "a script serving lamp.* cannot serve door.open nor call outside its list",
      async () => {
        await h.waitLines("h/lamp", (m) => m === "R ready", 1, "the lamp's probes");
        await h.waitLines("h/lamp", (m) => m === "R serving", 1, "the lamp's registrations");
        const r = h.results("h/lamp");
        assertEquals(
          r.get("call_door"),
          Array(3).fill('denied: denied: rpc.call "door.open" is not in this script\'s manifest'),
        );
        // Within the list: the call is made (nobody serves it here).
        assert(!r.get("call_sun")![0]!.startsWith("denied"), r.get("call_sun")![0]);
        assertEquals(r.get("send_lamp"), ["ok null"]);
        assertEquals(r.get("send_door"), [
          'denied: denied: alert.send "door.close" is not in this script\'s manifest',
        ]);
        assertEquals(await h.bus.call("lamp.on", null, { timeoutMs: 30_000 }), "lit");
        await h.bus.alert("door.front", {});
        await h.waitLines("h/lamp", (m) => m === "R heard door.front", 1, "the lamp hears door.*");
        const recs = (await h.errors.list("h/lamp")).filter((e) => e.tag.startsWith("denied."));
        assertEquals(recs.map((e) => [e.tag, e.counter]).sort(), [["denied.alert.send", 1], [
          "denied.rpc.call",
          1,
        ]]);

        // Serving door.open ends the script with the refusal.
        await h.store.put(h.layout.taskDir("h/lamp") + "values/mode", "serve");
        await h.waitLines(
          "h/lamp",
          (m) => m.includes('denied: rpc.serve "door.open" is not in this script\'s manifest'),
          1,
          "the refused serve",
        );
        // Listening to "#" is not within door.#.
        await h.store.put(h.layout.taskDir("h/lamp") + "values/mode", "listen");
        await h.waitLines(
          "h/lamp",
          (m) => m.includes('denied: alert.receive "#" is not in this script\'s manifest'),
          1,
          "the refused listen",
        );
      },
    );

    await t.step("the manifest's limits win over the task's", async () => {
      await h.script(
        "watcher",
        `moat.setup();
moat.monitor(await moat.tree.lookup("device", "lamp"))(() => {});
moat.logger.info("R one");
moat.monitor(await moat.tree.lookup("device"))(() => {});
moat.logger.info("R two");
`,
        { limits: { monitors: 1 } },
      );
      await h.s.tasks.add("watcher", "h/watcher", {
        settings: [["monitors", "50"], ["restart", "0"], ["max_retry", "0"]],
      });
      await h.waitLines("h/watcher", (m) => m.startsWith("ended: "), 1, "the watcher's end");
      const end = h.lines("h/watcher").find((m) => m.startsWith("ended: "))!;
      assertIncludes(end, "quota monitors = 1");
      assert(h.lines("h/watcher").includes("R one"), h.lines("h/watcher").join("\n"));
    });

    await t.step(
      '"thread": false refuses moat.thread with code denied, recorded once',
      async () => {
        const THREADS = `moat.setup();
${PROBE}
moat.run(async () => {
  for (let i = 0; i < 3; i++) await probe("thread", () => moat.thread((a, b) => a + b, 2, 3));
  moat.logger.info("R done");
});
`;
        await h.script("threads_off", THREADS, { thread: false });
        await h.script("threads_on", THREADS, { thread: true, load: [] });
        for (const name of ["threads_off", "threads_on"]) {
          await h.s.tasks.add(name, `h/${name}`, { settings: [["restart", "0"]] });
        }
        for (const name of ["threads_off", "threads_on"]) {
          await h.waitLines(`h/${name}`, (m) => m === "R done", 1, `${name}'s probes`);
        }
        assertEquals(
          h.results("h/threads_off").get("thread"),
          Array(3).fill(
            'denied: denied: moat.thread is not allowed by this script\'s manifest ("thread": false)',
          ),
        );
        assertEquals(h.results("h/threads_on").get("thread"), Array(3).fill("ok 5"));
        const recs = (await h.errors.list("h/threads_off")).filter((e) =>
          e.tag.startsWith("denied.")
        );
        assertEquals(recs.map((e) => [e.tag, e.counter]), [["denied.thread", 1]]);
      },
    );

    await t.step(
      "a task's manifest replaces the script's; a malformed one fails the task",
      async () => {
        const caps = h.layout.taskDir("h/reader") + TASK_KEYS.caps;
        await h.store.put(caps, JSON.stringify({ tree: { read: ["device/"] }, bogus: 1 }));
        await h.waitLines(
          "h/reader",
          (m) => m.includes('unknown member "bogus"') && m.includes("does not run until"),
          1,
          "the malformed manifest's failure",
        );
        const job = (await h.errors.list("h/reader")).find((e) => e.tag === "job");
        assertIncludes(job!.msg, 'the manifest of task h/reader (caps): unknown member "bogus"');
        // Fixed: the task runs again, with the task's manifest (no load allowed).
        await h.store.put(caps, JSON.stringify({ tree: { read: ["device/"] }, load: [] }));
        await h.waitLines("h/reader", (m) => m.startsWith("R lib "), 3, "the fixed run");
        const r = h.results("h/reader");
        assertEquals(
          r.get("config")!.slice(10),
          Array(5).fill(
            'denied: denied: tree.read "config/site" is not in this script\'s manifest',
          ),
        );
        assertEquals(r.get("other")!.slice(6), Array(3).fill("ok null"));
        assertEquals(
          r.get("lib")![2],
          'denied: denied: load "lib/peek" is not in this script\'s manifest',
        );
      },
    );
  } finally {
    await h.close();
    await etcd.stop();
  }
});
