import { assert, assertEquals } from "./testing/assert.ts";
import { LineLogger, MemoryLogger, stderrLines } from "./log.ts";

const NOW = Date.UTC(2024, 0, 2, 3, 4, 5);

function lineLogger(level: "debug" | "info" = "info"): { logger: LineLogger; lines: string[] } {
  const lines: string[] = [];
  const logger = new LineLogger({ write: (l) => lines.push(l), now: () => NOW, level });
  return { logger, lines };
}

/** Only printable text: no byte below 0x20, no DEL, C1, bidi control or line separator. */
function assertPrintable(line: string): void {
  assert(
    // deno-lint-ignore no-control-regex -- the test looks for raw control characters
    !/[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]/.test(line),
    `raw control character in ${JSON.stringify(line)}`,
  );
}

Deno.test("the line logger writes time, level, source and message on one line", () => {
  const { logger, lines } = lineLogger();
  logger.log("info", "myhost/porch", "hello");
  assertEquals(lines, ["2024-01-02T03:04:05.000Z INFO  [myhost/porch] hello"]);
});

Deno.test("the line logger escapes control characters of a script's log message", () => {
  const { logger, lines } = lineLogger();
  // What a script's moat.logger.info("…") reaches the host logger as.
  logger.log(
    "info",
    "myhost/porch",
    "fine\n2024-01-02T03:04:05.000Z ERROR [host] forged\r\x1b]52;c;aGk=\x07\x1b[2J\u202eabc",
  );
  assertEquals(lines.length, 1);
  assertEquals(
    lines[0],
    "2024-01-02T03:04:05.000Z INFO  [myhost/porch] fine\\n2024-01-02T03:04:05.000Z ERROR " +
      "[host] forged\\r\\x1b]52;c;aGk=\\x07\\x1b[2J\\u202eabc",
  );
  assertPrintable(lines[0]!);
});

Deno.test("the line logger escapes a thrown error's message in the run's end line", () => {
  const { logger, lines } = lineLogger();
  // The task runner logs how a run ended, with the script's error message.
  logger.log("warn", "myhost/porch", "ended: error: Error: boom\n\x1b[31mred\x1b[0m\\x1b");
  assertEquals(
    lines,
    [
      "2024-01-02T03:04:05.000Z WARN  [myhost/porch] ended: error: Error: boom\\n" +
      "\\x1b[31mred\\x1b[0m\\\\x1b",
    ],
  );
});

Deno.test("the line logger escapes the source too (a task path typed into etcd)", () => {
  const { logger, lines } = lineLogger();
  logger.log("error", "myhost/x\n\x1b[2Jy\u2066", "could not start");
  assertEquals(
    lines,
    ["2024-01-02T03:04:05.000Z ERROR [myhost/x\\n\\x1b[2Jy\\u2066] could not start"],
  );
});

Deno.test("the line logger leaves non-Latin text and emoji as they are", () => {
  const { logger, lines } = lineLogger();
  logger.log("info", "myhost/küche", "Temperatur 21 °C 🌡️ 日本語");
  assertEquals(lines, ["2024-01-02T03:04:05.000Z INFO  [myhost/küche] Temperatur 21 °C 🌡️ 日本語"]);
});

Deno.test("the line logger drops lines below its level", () => {
  const { logger, lines } = lineLogger("info");
  logger.log("debug", "host", "not shown");
  assertEquals(lines, []);
});

Deno.test("the memory logger keeps messages as they were logged", () => {
  const logger = new MemoryLogger();
  logger.log("info", "t", "a\nb\x1b");
  assertEquals(logger.lines.map((l) => l.message), ["a\nb\x1b"]);
});

Deno.test("standard error's sink drops lines once nobody reads them, and does not throw", () => {
  const written: string[] = [];
  let open = true;
  const sink = stderrLines({
    writeSync(b: Uint8Array) {
      if (!open) throw new Deno.errors.BrokenPipe("Broken pipe (os error 32)");
      written.push(new TextDecoder().decode(b));
      return b.length;
    },
  });
  sink("one");
  open = false;
  sink("two");
  open = true;
  sink("three");
  assertEquals(written, ["one\n"]);
});

Deno.test("a process logging to a closed standard error goes on running", async () => {
  const logModule = new URL("./log.ts", import.meta.url).href;
  const code = `
    import { LineLogger } from ${JSON.stringify(logModule)};
    const logger = new LineLogger();
    const buf = new Uint8Array(16);
    await Deno.stdin.read(buf); // the parent has closed our stderr's reading end
    for (let i = 0; i < 100; i++) logger.log("info", "host", "line " + i);
    console.log("still running");
  `;
  const child = new Deno.Command(Deno.execPath(), {
    args: ["eval", "--no-check", code],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  await child.stderr.cancel();
  const w = child.stdin.getWriter();
  await w.write(new TextEncoder().encode("go\n"));
  await w.close();
  const stdout = new Response(child.stdout).text();
  assertEquals((await child.status).code, 0);
  assertEquals((await stdout).trim(), "still running");
});
