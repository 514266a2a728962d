/**
 * A hostile sandbox process for the security suite: it speaks just enough
 * protocol to be started, then writes the raw lines its "code" lists (a
 * JSON `{ lines, times, end, replies }`), waits for `replies` replies (at
 * most 60 s) and 500 ms more, reports the host's replies in one `log`
 * line and, if `end`, says `ended` — and after that, calls again.
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

const replies: unknown[] = [];
/** Resolves once `replies` holds this many (set per plan). */
let awaited: { count: number; resolve: () => void } | undefined;
let buf = "";
const decoder = new TextDecoder();
for await (const chunk of Deno.stdin.readable) {
  buf += decoder.decode(chunk, { stream: true });
  for (let nl = buf.indexOf("\n"); nl >= 0; nl = buf.indexOf("\n")) {
    const msg = JSON.parse(buf.slice(0, nl));
    buf = buf.slice(nl + 1);
    if (msg.kind === "reply") replies.push({ id: msg.id, ok: msg.ok, code: msg.error?.code });
    if (awaited !== undefined && replies.length >= awaited.count) awaited.resolve();
    if (msg.kind === "ping") line({ kind: "pong", id: msg.id });
    if (msg.kind !== "start") continue;
    const plan = JSON.parse(msg.code) as {
      lines: string[];
      times?: number;
      end?: boolean;
      replies?: number;
    };
    const { promise, resolve } = Promise.withResolvers<void>();
    awaited = { count: plan.replies ?? 0, resolve };
    if (replies.length >= awaited.count) resolve();
    for (let i = 0; i < (plan.times ?? 1); i++) for (const l of plan.lines) write(l + "\n");
    // The replies it waits for, however slow the host is (bounded), then a
    // quiet 500 ms for replies that should not come.
    const deadline = setTimeout(resolve, 60_000);
    promise.then(() => clearTimeout(deadline)).then(() => new Promise((r) => setTimeout(r, 500)))
      .then(() => {
        line({ kind: "log", level: "info", message: "REPLIES " + JSON.stringify(replies) });
        if (plan.end) {
          line({ kind: "ended", state: "ok", message: "done", debug: "" });
          // Calls after the end: the host must ignore them.
          line({ kind: "call", id: 999, method: "time_at", args: ["12 hr", {}] });
          line({ kind: "ended", state: "error", message: "second end", debug: "" });
        }
      });
  }
}
