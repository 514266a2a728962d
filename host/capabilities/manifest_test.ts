import { assert, assertEquals, assertThrows } from "../../tests/_util/assert.ts";
import {
  applyManifestLimits,
  checkManifest,
  DeniedError,
  Grants,
  ManifestError,
  parseManifest,
  patternWithin,
} from "./manifest.ts";
import { DEFAULT_QUOTAS } from "./quotas.ts";
import { ScriptView } from "./script_view.ts";
import { MemoryStore } from "../store/memory_store.ts";
import { WatchHub } from "../store/watch_hub.ts";
import { Layout } from "../layout.ts";
import { ErrorRecords, isHostTag } from "./error_records.ts";
import { SystemClock } from "../time/clock.ts";

/** Assert that `fn` throws an instance of `cls` whose message includes `text`. */
function throwsWith<E extends Error>(
  fn: () => unknown,
  cls: new (...a: never[]) => E,
  text: string,
): E {
  const e = assertThrows(fn);
  assert(e instanceof cls, `${e.name}: ${e.message}`);
  assert(e.message.includes(text), `"${e.message}" lacks "${text}"`);
  return e;
}

const FULL = {
  tree: { read: ["device/", "/config/site/"] },
  data: { write: ["count"] },
  rpc: { serve: ["lamp.*"], call: ["sun.*"] },
  alert: { send: ["lamp.#"], receive: ["door.#"] },
  load: ["lib/units"],
  thread: false,
  limits: { monitors: 5, cpu: "0.5" },
};

Deno.test("checkManifest accepts the documented format and normalises tree prefixes", () => {
  const m = checkManifest(FULL);
  assertEquals(m.tree?.read, ["device", "config/site"]);
  assertEquals(m.limits, { monitors: 5, cpu: 0.5 });
  assertEquals(m.thread, false);
  assertEquals(checkManifest({}), {});
});

Deno.test("checkManifest refuses unknown members and bad items, naming the member", () => {
  const bad: [unknown, RegExp][] = [
    [[], /must be an object/],
    [{ threads: true }, /unknown member "threads"/],
    [{ thread: "no" }, /thread: must be true or false, not "no"/],
    [{ rpc: { serve: ["a"], listen: [] } }, /rpc: unknown member "listen"/],
    [{ rpc: { serve: "lamp.*" } }, /rpc\.serve: must be a list/],
    [{ rpc: { call: ["bad name!"] } }, /rpc\.call: .*bad name!/],
    [{ alert: { receive: ["door..x"] } }, /alert\.receive: /],
    [{ tree: { read: ["device/../config"] } }, /tree\.read: .*".."/],
    [{ tree: { read: [3] } }, /tree\.read: every item must be a string/],
    [{ data: { write: ["a/b"] } }, /data\.write: "a\/b" is not a data key/],
    [{ load: ["bad//name"] }, /load: /],
    [{ limits: { bogus: 1 } }, /limits: unknown key "bogus"/],
    [{ limits: { queue_length: 5 } }, /limits: unknown key "queue_length"/],
    [{ limits: { ttl: 5 } }, /limits: unknown key "ttl"/],
    [{ limits: { monitors: "many" } }, /limits\.monitors: "many" is not valid/],
    [{ limits: { memory: 1 } }, /limits\.memory: 1 is not valid/],
  ];
  for (const [value, re] of bad) {
    const e = assertThrows(() => checkManifest(value));
    assert(e instanceof ManifestError, `${JSON.stringify(value)}: ${e.name}`);
    assert(re.test(e.message), `${JSON.stringify(value)}: ${e.message}`);
  }
});

Deno.test("parseManifest names where the text came from", () => {
  throwsWith(() => parseManifest("{", "the manifest of script x"), ManifestError, "script x");
  throwsWith(
    () => parseManifest('{"load": 1}', "the manifest of script x"),
    ManifestError,
    "the manifest of script x: load: must be a list",
  );
});

Deno.test("patternWithin judges word by word, conservatively", () => {
  const yes: [string, string][] = [
    ["door.open", "door.#"],
    ["door.*", "door.#"],
    ["door.#", "door.#"],
    ["door.*.x", "door.#"],
    ["door", "door.#"],
    ["door.*", "#"],
    ["#", "#"],
    ["a.b.c", "*.b.*"],
    ["door.*", "door.*"],
  ];
  const no: [string, string][] = [
    ["door.#", "door.*"],
    ["*.open", "door.*"],
    ["#", "door.#"],
    ["door.open.now", "door.*"],
    ["window.open", "door.#"],
    ["door", "door.*"],
  ];
  for (const [p, g] of yes) assert(patternWithin(p, g), `${p} within ${g}`);
  for (const [p, g] of no) assert(!patternWithin(p, g), `${p} not within ${g}`);
});

Deno.test("Grants refuse uses outside the manifest with code denied, and allow the rest", () => {
  const g = new Grants(checkManifest(FULL));
  g.treeRead("device");
  g.treeRead("device/lamp/state");
  g.treeRead("config/site/name");
  g.rpcServe("lamp.on");
  g.rpcCall("sun.rise");
  g.alertSend("lamp.kitchen.on");
  g.alertReceive("door.*");
  g.load("lib/units");
  g.dataWrite("count");
  const refused: [() => void, string][] = [
    [() => g.treeRead("config"), 'denied: tree.read "config" is not in this script\'s manifest'],
    [() => g.treeRead("devices"), 'tree.read "devices"'],
    [() => g.rpcServe("door.open"), 'denied: rpc.serve "door.open"'],
    [() => g.rpcServe("lamp.on.now"), 'rpc.serve "lamp.on.now"'],
    [() => g.rpcCall("door.open"), 'denied: rpc.call "door.open"'],
    [() => g.alertSend("door.open"), 'alert.send "door.open"'],
    [() => g.alertReceive("#"), 'alert.receive "#"'],
    [() => g.load("lib/other"), 'load "lib/other"'],
    [() => g.dataWrite("other"), 'data.write "other"'],
  ];
  for (const [f, msg] of refused) {
    const e = throwsWith(f, DeniedError, msg);
    assertEquals(e.code, "denied");
  }
  // A manifest that leaves a capability out leaves it as it is.
  const some = new Grants(checkManifest({ rpc: { serve: ["lamp.*"] } }));
  some.rpcCall("anything.at.all");
  some.treeRead("config");
  new Grants().rpcServe("door.open");
});

Deno.test("applyManifestLimits puts the manifest's limits over the task's", () => {
  const m = checkManifest({ limits: { monitors: 3, cpu: 0.5 } });
  const out = applyManifestLimits(m, { limits: { cpu: 2, memory: 100 }, quotas: DEFAULT_QUOTAS });
  assertEquals(out.limits, { cpu: 0.5, memory: 100 });
  assertEquals(out.quotas.monitors, 3);
  assertEquals(out.quotas.dataKeys, DEFAULT_QUOTAS.dataKeys);
});

Deno.test("a view limited to device/ can neither look up nor monitor config/", async () => {
  const store = new MemoryStore();
  const layout = new Layout("/moat");
  const hub = new WatchHub(store, layout.root + "/");
  await hub.start();
  try {
    await store.put("/moat/device/lamp/state", "on");
    await store.put("/moat/config/site/name", "home");
    await store.put(layout.taskDir("h/t") + "values/where", "config/site");
    await store.put(layout.scriptDir("s") + "types/where", "str/ref");
    const grants = new Grants(checkManifest({ tree: { read: ["device/"] } }));
    const view = new ScriptView({ store, layout, hub }, {
      task: "h/t",
      script: "s",
      token: "x",
      grants,
    });
    try {
      const initial = await view.open();
      // A str/ref value outside the prefixes is not looked up.
      assertEquals(initial.refs.where, null);
      assertEquals((await view.lookup("device/lamp"))?.entries, { state: "on" });
      view.watch("device");
      throwsWith(() => view.watch("config"), DeniedError, 'tree.read "config"');
      let denied: unknown;
      await view.lookup("config/site").catch((e) => denied = e);
      assert(denied instanceof DeniedError, String(denied));
    } finally {
      view.close();
    }
  } finally {
    await hub.close();
    await store.close();
  }
});

Deno.test("a script's own error records never push out the host's denied records", async () => {
  const store = new MemoryStore();
  const layout = new Layout("/moat");
  try {
    const errors = new ErrorRecords(store, layout, new SystemClock());
    await errors.set("h/t", "denied.rpc.call", "denied: rpc.call", { maxPerTask: 2 });
    for (const tag of ["a", "b", "c", "d"]) await errors.set("h/t", tag, tag, { maxPerTask: 2 });
    const tags = (await errors.list("h/t")).map((r) => r.tag).sort();
    assertEquals(tags, ["c", "d", "denied.rpc.call"]);
    assert(isHostTag("denied.load") && isHostTag("job") && !isHostTag("denied"));
  } finally {
    await store.close();
  }
});

Deno.test("thread: only false refuses moat.thread, with code denied", () => {
  assertEquals(new Grants().threadAllowed, true);
  assertEquals(new Grants(checkManifest({ thread: true })).threadAllowed, true);
  assertEquals(new Grants(checkManifest({ load: [] })).threadAllowed, true);
  new Grants(checkManifest({ thread: true })).thread();
  const g = new Grants(checkManifest({ thread: false }));
  assertEquals(g.threadAllowed, false);
  const e = throwsWith(() => g.thread(), DeniedError, "moat.thread is not allowed by this script");
  assertEquals(e.code, "denied");
  assertEquals(e.capability, "thread");
});
