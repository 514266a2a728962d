/**
 * A hostile sandbox process for tests: it speaks just enough protocol to be
 * started, then sends the host malformed and forbidden messages, collects
 * the replies, reports them in one `log` line (JSON) and ends.
 *
 * @module
 */

const encoder = new TextEncoder();
const write = (s: string) => {
  const b = encoder.encode(s);
  let off = 0;
  while (off < b.length) off += Deno.stdout.writeSync(b.subarray(off));
};
const line = (v: unknown) => write(JSON.stringify(v) + "\n");

line({ kind: "ready", version: 1 });

const calls: [number, string, unknown][] = [
  [1, "__proto__", []],
  [2, "constructor", []],
  [3, "toString", []],
  [4, "hasOwnProperty", []],
  [5, "no_such_method", []],
  [6, "time_at", [{ evil: true }, {}]],
  [7, "time_at", ["12 hr", { now: "soon" }]],
  [8, "time_at", ["12 hr", { current: null }]],
  [9, "time_at", "not an array"],
  [10, "wait", ["12 hr", {}]],
];
const expected = 10;
const replies: Record<string, unknown> = {};

async function main() {
  const decoder = new TextDecoder();
  let buf = "";
  let started = false;
  for await (const chunk of Deno.stdin.readable) {
    buf += decoder.decode(chunk, { stream: true });
    let nl: number;
    while ((nl = buf.indexOf("\n")) >= 0) {
      const msg = JSON.parse(buf.slice(0, nl));
      buf = buf.slice(nl + 1);
      if (msg.kind === "start" && !started) {
        started = true;
        write("this is not JSON\n");
        write("{not json either\n");
        write("[1,2,3]\n");
        line({ kind: "zzz" });
        line({ kind: "log", level: "shout", message: "x" });
        line({ kind: "call", id: -1, method: "time_at", args: [] });
        line({ kind: "ended", state: "great" });
        write(`{"kind":"log","level":"info","message":"${"x".repeat(2 * 1024 * 1024)}"}\n`);
        for (const [id, method, args] of calls) line({ kind: "call", id, method, args });
        line({ kind: "cancel", id: 10 });
        line({ kind: "cancel", id: 999 });
      } else if (msg.kind === "reply") {
        replies[msg.id] = msg.ok ? { value: msg.value } : msg.error;
        if (Object.keys(replies).length === expected) {
          line({ kind: "log", level: "info", message: JSON.stringify(replies) });
          line({ kind: "ended", state: "ok", message: "rogue done", debug: "" });
        }
      }
    }
  }
}
main();
