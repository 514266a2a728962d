/**
 * `moat.exports` in the script a task runs and in a library it loads, in a
 * real sandbox: the task's script gets an empty object of its own (as
 * types/moat.d.ts and docs/scripts.md say), so that a library's code runs
 * unchanged as a task; a library's exports are what `moat.load` resolves to.
 */

import { assert, assertEquals } from "../_util/assert.ts";
import { withTimeout } from "../_util/wait.ts";
import { SandboxPool } from "../../host/bridge/sandbox.ts";
import { stubMethods } from "../../host/bridge/method_stubs.ts";

const LIBRARY = `moat.setup({ library: true });
moat.exports.twice = (n) => 2 * n;
`;

Deno.test("moat.exports is an empty object of the task's script, apart from a library's", async () => {
  const tmpDir = await Deno.makeTempDir({ prefix: "moat-exports-" });
  // Limits far out of reach: no test here is about them.
  const pool = new SandboxPool({ warm: 0, tmpDir, limits: { cpu: 10_000, heartbeat: 3_600 } });
  const logs: string[] = [];
  try {
    const script = await pool.start({
      task: "test/exports",
      script: "user",
      methods: stubMethods({
        load: ([name]) => Promise.resolve({ script: name, code: LIBRARY }),
      }),
      code: `moat.setup();
const mine = moat.exports;
moat.logger.info("TASK " + JSON.stringify({
  type: typeof mine,
  isObject: mine !== null && typeof mine === "object" && !Array.isArray(mine),
  keys: Object.keys(mine),
}));
// Written like a library's (the same code runs as a task).
mine.twice = (n) => 2 * n;
const lib = await moat.load("lib/twice");
moat.logger.info("LIB " + JSON.stringify({
  same: lib === mine,
  keys: Object.keys(lib),
  twice: lib.twice(21),
  mineStill: Object.keys(moat.exports),
}));
moat.end();
`,
      onLog: (_level, message) => logs.push(message),
    });
    const end = await withTimeout(script.ended, 60_000, "the script to end");
    assertEquals(end, { state: "ok", message: "script called moat.end()", debug: "" });
    const line = (tag: string) => {
      const l = logs.find((m) => m.startsWith(tag + " "));
      assert(l !== undefined, `no ${tag} line in ${JSON.stringify(logs)}`);
      return JSON.parse(l.slice(tag.length + 1));
    };
    assertEquals(line("TASK"), { type: "object", isObject: true, keys: [] });
    assertEquals(line("LIB"), { same: false, keys: ["twice"], twice: 42, mineStill: ["twice"] });
  } finally {
    await pool.close();
    await Deno.remove(tmpDir, { recursive: true }).catch(() => {});
  }
});
