/**
 * Abusive bridge traffic from a hostile sandbox process (one that ignores
 * the Worker bootstrap and writes whatever it likes on the pipe): floods,
 * huge and malformed messages, prototype-pollution method names, reused
 * ids, calls after the end. The host's SandboxPool must refuse all of it
 * without throwing, and the neighbour of the shared host must stay healthy.
 */

import { assert, assertEquals } from "../_util/assert.ts";
import { withTimeout } from "../_util/wait.ts";
import { type SandboxLimits, SandboxPool } from "../../host/bridge/sandbox.ts";
import { stubMethods } from "../../host/bridge/method_stubs.ts";
import { closeShared, SHARED, sharedHost, TEST_LIMITS } from "./_harness.ts";

const host = sharedHost();
const hostile = new URL("./testdata/hostile_process.ts", import.meta.url);

interface Reply {
  id: number;
  ok: boolean;
  code?: string;
}

/** Run a hostile plan; the end, the replies it saw, and the host's warnings. */
async function abuse(
  plan: Plan,
): Promise<{ state: string; message: string; replies: Reply[]; warnings: string[] }> {
  const limits = { ...TEST_LIMITS, ...plan.limits };
  const pool = new SandboxPool({ warm: 0, processModule: hostile, limits });
  const warnings: string[] = [];
  let replies: Reply[] = [];
  let answered = 0;
  try {
    const script = await pool.start({
      task: "sec/hostile",
      script: "hostile",
      code: JSON.stringify({ end: true, ...plan, limits: undefined }),
      methods: stubMethods({
        time_at: () => Promise.resolve((answered++, 1_700_000_000)),
        wait: () => new Promise(() => {}),
      }),
      onLog: (level, message) => {
        if (message.startsWith("REPLIES ")) replies = JSON.parse(message.slice(8));
        else if (level === "warn") warnings.push(message);
      },
      maxWarnings: 20,
    });
    const end = await withTimeout(script.ended, 90_000, "the hostile sandbox to end");
    return { state: end.state, message: end.message, replies, warnings };
  } finally {
    await pool.close();
  }
}

const call = (id: number, method: string, args: unknown = ["12 hr", {}]) =>
  JSON.stringify({ kind: "call", id, method, args });

/**
 * What the hostile sandbox does (see testdata/hostile_process.ts): write
 * `lines` `times` times, wait for `replies` replies, then report and end.
 * `limits` are the pool's, over TEST_LIMITS.
 */
interface Plan {
  lines: string[];
  times?: number;
  end?: boolean;
  replies?: number;
  limits?: Partial<SandboxLimits>;
}

const CASES: [
  string,
  Plan,
  (r: {
    state: string;
    message: string;
    replies: Reply[];
    warnings: string[];
  }) => void,
][] = [
  [
    "prototype-pollution method names are unknown methods",
    {
      lines: ["__proto__", "constructor", "prototype", "hasOwnProperty", "__defineGetter__"].map(
        (m, i) => call(i + 1, m),
      ),
      replies: 5,
    },
    (r) => {
      assertEquals(r.replies.length, 5);
      assert(r.replies.every((x) => !x.ok && x.code === "unknown_method"), JSON.stringify(r));
    },
  ],
  [
    "malformed messages are refused, a call among them answered once",
    {
      lines: [
        "not json",
        "[]",
        "null",
        '{"kind":"nope"}',
        '{"kind":"call","id":-1,"method":"time_at","args":[]}',
        '{"kind":"call","id":7,"method":"time_at","args":"x"}',
        '{"kind":"log","level":"shout","message":"x"}',
        '{"kind":"__proto__"}',
        '{"kind":"call","id":8,"method":"time_at","args":["12 hr",{"__proto__":{"x":1}}]}',
      ],
      replies: 2,
    },
    (r) => {
      assertEquals(r.replies.map((x) => x.id).sort(), [7, 8]);
      assert(r.replies.every((x) => !x.ok), JSON.stringify(r.replies));
      assert(r.warnings.length >= 6, JSON.stringify(r.warnings));
    },
  ],
  [
    "a reused id while the first call is in flight is not answered twice",
    { lines: [call(1, "wait"), call(1, "wait"), call(1, "time_at")] },
    (r) => assertEquals(r.replies, []),
  ],
  [
    "a line larger than the message limit is dropped",
    {
      lines: [call(1, "time_at", ["x".repeat(2 * 1024 * 1024), {}]), call(2, "time_at")],
      replies: 1,
    },
    (r) => {
      assertEquals(r.replies.map((x) => [x.id, x.ok]), [[2, true]]);
      assert(r.warnings.some((w) => /dropped/.test(w)), JSON.stringify(r.warnings));
    },
  ],
  [
    "calls after the end and a second end are ignored",
    { lines: [call(1, "time_at")], replies: 1 },
    (r) => {
      assertEquals(r.state, "ok");
      assertEquals(r.message, "done");
    },
  ],
  [
    "a flood of messages gets the sandbox killed",
    // A flood limit that a host reading lines at any sane speed reaches.
    {
      lines: ['{"kind":"log","level":"info","message":"x"}'],
      times: 200_000,
      end: false,
      limits: { flood: 1000 },
    },
    (r) => {
      assertEquals(r.state, "fail");
      assert(/bridge flood/.test(r.message), r.message);
    },
  ],
  [
    "a flood of requests for thread room leaves the host answering; malformed ones are refused",
    {
      lines: [
        ...Array.from({ length: 2000 }, () => '{"kind":"threads","need":true}'),
        '{"kind":"threads"}',
        '{"kind":"threads","need":"yes"}',
        call(1, "time_at"),
      ],
      replies: 1,
    },
    (r) => {
      assertEquals(r.state, "ok", r.message);
      assertEquals(r.replies.map((x) => [x.id, x.ok]), [[1, true]]);
      assert(
        r.warnings.filter((w) => /threads without need/.test(w)).length === 2,
        r.warnings.join("\n"),
      );
    },
  ],
  [
    "a flood of calls beyond call_rate is refused with code limit",
    // TEST_LIMITS: 100 calls per second, 5 s of burst.
    { lines: Array.from({ length: 800 }, (_, i) => call(i + 1, "time_at")), replies: 800 },
    (r) => {
      assert(r.replies.some((x) => x.code === "limit"), "no call was limited");
      assert(r.replies.filter((x) => x.ok).length <= 650, "too many calls answered");
    },
  ],
];

for (const [what, plan, check] of CASES) {
  Deno.test({
    name: `a hostile sandbox: ${what}, and the host stays healthy`,
    ...SHARED,
    fn: async () => {
      const h = await host();
      check(await abuse(plan));
      await h.assertHealthy();
    },
  });
}

closeShared(host);
