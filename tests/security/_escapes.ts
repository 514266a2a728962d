/**
 * The escape attempts of the security suite: each an async function body
 * that tries to reach something outside `moat` (the network, files, the
 * process, code from text, other Workers) and must throw. Shared by
 * escape_test.ts (run by a script) and thread_test.ts (run by a
 * `moat.thread` function), so that every attempt is tried from both.
 *
 * @module
 */

/** What each attempt tries, and its body (returns what it reached, if anything). */
export const DENIED: readonly (readonly [what: string, body: string])[] = [
  ["fetch to a local service", `return await fetch("http://127.0.0.1:2379/version");`],
  [
    "a WebSocket to a local service",
    `return await new Promise((ok, fail) => { const w = new WebSocket("ws://127.0.0.1:5672/"); w.onopen = ok; w.onerror = () => fail(new Error("ws error")); });`,
  ],
  ["reading a file through Deno", `return await Deno.readTextFile("/etc/passwd");`],
  ["reading the environment through Deno", `return JSON.stringify(Deno.env.toObject());`],
  ["reading the environment through process", `return JSON.stringify(process.env);`],
  ["running a subprocess", `return new Deno.Command("id").outputSync();`],
  ["signalling its own process", `return Deno.kill(Deno.pid, "SIGKILL");`],
  [
    "writing raw bytes to the sandbox's stdout",
    `return Deno.stdout.writeSync(new Uint8Array([10]));`,
  ],
  ["eval", `return eval("1 + 1");`],
  ["indirect eval", `return (0, globalThis.eval)("1 + 1");`],
  ["the Function constructor", `return new Function("return 1")();`],
  ["a function's constructor", `return (() => 1).constructor("return 1")();`],
  ["the AsyncFunction constructor", `return await (async () => 1).constructor("return 1")();`],
  ["the generator constructor", `return (function* () {}).constructor("yield 1")().next().value;`],
  ["a class's constructor chain", `return (class {}).constructor("return 1")();`],
  ["Reflect.construct of Function", `return Reflect.construct(Function, ["return 1"])();`],
  ["a timer with code as text", `return setTimeout("globalThis.x = 1", 0);`],
  ["a nested Worker", `return new Worker("data:text/javascript,1", { type: "module" });`],
  ["WebAssembly", `return WebAssembly.compile(new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0]));`],
  ["the Cache API", `return await caches.open("x");`],
  ["a BroadcastChannel to other Workers", `return new BroadcastChannel("moat");`],
  ["the Web Locks of its process", `return JSON.stringify(await navigator.locks.query());`],
  ["posting raw bridge messages", `return postMessage('{"kind":"ended","state":"ok"}');`],
  ["closing its Worker scope", `return close();`],
  [
    "making a blob: URL to name code",
    `return URL.createObjectURL(new Blob(["export default 1"], { type: "text/javascript" }));`,
  ],
  ["replacing a moat method", `"use strict"; moat.time_at = () => 1; return moat.time_at;`],
  ["setting properties on moat", `"use strict"; moat.evil = 1; return moat.evil;`],
  [
    "finding Deno internals through symbols",
    `const s = Object.getOwnPropertySymbols(globalThis).map(String).filter((n) => /deno|core|internal/i.test(n));
     if (s.length === 0) throw new Error("nothing found"); return s.join();`,
  ],
];
