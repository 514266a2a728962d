/**
 * Escape attempts: each a real script run by a real host, trying to reach
 * something outside `moat` (the network, files, the process, the host's
 * secrets, code from text, modules). Each must be denied, and the host and
 * a neighbouring script must stay healthy.
 */

import { assert, assertEquals, assertIncludes, assertRejects } from "../_util/assert.ts";
import { closeShared, SHARED, sharedHost } from "./_harness.ts";
import { DENIED } from "./_escapes.ts";

const host = sharedHost();

/** A secret in the host's environment and in its store: never visible to scripts. */
const SECRET = "s3cret-" + crypto.randomUUID();
Deno.env.set("MOAT_TEST_SECRET", SECRET);

/** Run `body` (an async function body); log "denied: …" if it throws, "ALLOWED …" if not. */
function tryIt(body: string): string {
  return `
moat.setup();
try {
  const r = await (async () => { ${body} })();
  moat.logger.info("ALLOWED " + String(r).slice(0, 300));
} catch (e) {
  moat.logger.info("denied: " + (e && e.name) + ": " + String(e && e.message).slice(0, 300));
}
moat.end();
`;
}

for (const [what, body] of DENIED) {
  Deno.test({
    name: `a script is denied ${what}`,
    ...SHARED,
    fn: async () => {
      const h = await host();
      const out = await h.run(tryIt(body));
      assertEquals(out.state, "ok", out.message);
      const result = out.logs.find((l) => l.startsWith("denied: ") || l.startsWith("ALLOWED"));
      assert(result?.startsWith("denied: "), `not denied: ${result}`);
      await h.assertHealthy();
    },
  });
}

const IMPORTS: [string, string][] = [
  ["a static npm: import", `import luxon from "npm:luxon";\nmoat.setup();`],
  ["a computed npm: import", `moat.setup();\nawait import("npm:" + "luxon");`],
  ["a jsr: import", `moat.setup();\nawait import("jsr:@std/path");`],
  ["an https: import", `moat.setup();\nawait import("https://deno.land/x/y.ts");`],
  ["a file: import", `moat.setup();\nawait import("file:///etc/passwd");`],
  ["a node: import", `moat.setup();\nawait import("node:fs");`],
  ["a data: import", `moat.setup();\nawait import("data:text/javascript,export default 1");`],
  ["an export", `moat.setup();\nexport const x = 1;`],
  ["a re-export", `export * from "npm:luxon";\nmoat.setup();`],
];

for (const [what, code] of IMPORTS) {
  Deno.test({
    name: `a script with ${what} is refused when it is defined, and never runs`,
    ...SHARED,
    fn: async () => {
      const h = await host();
      const err = await assertRejects(
        h.services.scripts.add(`imp${crypto.randomUUID().slice(0, 8)}`, code, {
          language: "javascript",
        }),
      );
      assert(/import|export/i.test(err.message), err.message);
      await h.assertHealthy();
    },
  });
}

Deno.test({
  name: "the host's environment is not visible and error messages do not leak it",
  ...SHARED,
  fn: async () => {
    const h = await host();
    const out = await h.run(`
moat.setup();
const texts = [];
const grab = async (f) => { try { texts.push(String(await f())); } catch (e) { texts.push(String(e && e.stack)); } };
await grab(() => moat.time_at("no such spec"));
await grab(() => moat.time_at(["12", "hr"], { now: "x" }));
await grab(() => moat.tree.lookup("config", "amqp"));
await grab(() => moat.load("does/not/exist"));
await grab(() => moat.load("../../etc/passwd"));
await grab(() => { throw new Error("mine"); });
await grab(() => JSON.stringify(Object.getOwnPropertyNames(globalThis)));
moat.logger.info("TEXTS " + JSON.stringify(texts));
moat.end();
`);
    assertEquals(out.state, "ok", out.message);
    const texts = out.logs.find((l) => l.startsWith("TEXTS "));
    assert(texts !== undefined);
    for (const bad of [SECRET, Deno.cwd(), "MOAT_TEST_SECRET", "/host/"]) {
      assert(!texts.includes(bad), `a script saw ${JSON.stringify(bad)}: ${texts.slice(0, 500)}`);
    }
    await h.assertHealthy();
  },
});

Deno.test({
  name: "hidden configuration (/config/amqp, /config/script/hidden) is unreachable",
  ...SHARED,
  fn: async () => {
    const h = await host();
    await h.store.put("/moat/config/amqp/url", `amqp://moat:${SECRET}@localhost/`);
    await h.store.put("/moat/config/private/token", SECRET);
    await h.store.put("/moat/config/script/hidden", '["config/private"]');
    await h.store.put("/moat/config/public/x", "1");
    const out = await h.run(`
moat.setup();
const seen = [];
for (const p of [["config", "amqp"], ["config", "amqp", "url"], ["config", "private"], ["config", "private", "token"], ["config"]]) {
  try {
    const n = await moat.tree.lookup(...p);
    seen.push(p.join("/") + "=" + JSON.stringify(n === undefined ? null : n));
  } catch (e) {
    seen.push(p.join("/") + " refused " + e.message);
  }
}
moat.logger.info("SEEN " + JSON.stringify(seen));
moat.end();
`);
    assertEquals(out.state, "ok", out.message);
    const seen = out.logs.find((l) => l.startsWith("SEEN "));
    assert(seen !== undefined, JSON.stringify(out.logs));
    assert(!seen.includes(SECRET), `a script saw a secret: ${seen}`);
    assert(!seen.includes("amqp://"), seen);
    await h.assertHealthy();
  },
});

Deno.test({
  name: "polluting Object.prototype in a script stays inside its Worker",
  ...SHARED,
  fn: async () => {
    const h = await host();
    const out = await h.run(`
moat.setup();
Object.prototype.polluted = "yes";
Object.defineProperty(Object.prototype, "then", { get() { return undefined; }, configurable: true });
JSON.stringify = () => '{"kind":"ended","state":"ok","message":"forged","debug":""}';
const t = await moat.time_at("12 hr");
moat.logger.info("still works " + (typeof t));
moat.end();
`);
    assertEquals(out.state, "ok", out.message);
    assertIncludes(out.logs.join("\n"), "still works number");
    await h.assertHealthy();
  },
});

Deno.test({
  name: "errors from the host reach a script as a code and a message, never a host stack",
  ...SHARED,
  fn: async () => {
    const h = await host();
    const out = await h.run(tryIt(`return await moat.time_at({ evil: true });`));
    assertEquals(out.state, "ok", out.message);
    const line = out.logs.find((l) => l.startsWith("denied: "));
    assert(line !== undefined);
    assert(!line.includes("file://") && !line.includes(Deno.cwd()), line);
    await h.assertHealthy();
  },
});

closeShared(host);
