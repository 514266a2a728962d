/**
 * The task state alerts (`moat.task.<path>`, sent by the hosts) in the shape
 * MoaT's qbroker peers read: `state` holds qbroker's state names (`start`,
 * `done`, `error`, `fail`), `status` the word moat-scripts uses for the same
 * transition (`start`, `ok`, `error`, `fail`, as `moat status` shows it),
 * and the bodies carry qbroker's `reason` (the message, or `null`),
 * `parent` (`null`: a script task has no parent task) and `result` (`null`:
 * a run returns nothing to report) besides moat-scripts' own `task`,
 * `message`, `host` and `time`. qbroker's `setup` is never sent: a host sets
 * a run up as part of its start (docs/amqp.md, "Task state alerts").
 *
 * Both buses shape such an alert when they send it, so that a script
 * listening to `moat.task.#` sees the same on either.
 *
 * @module
 */

/** The first words of a task state alert's topic. */
export const TASK_TOPIC_PREFIX = "moat.task.";

/** qbroker's name of each of moat-scripts' task transitions. */
export const QBROKER_TASK_STATES: Readonly<Record<string, string>> = {
  start: "start",
  ok: "done",
  error: "error",
  fail: "fail",
};

/**
 * `data` in qbroker's task alert shape, if `topic` is a task state alert
 * and `data` one of the hosts' transitions (a `task` and one of
 * moat-scripts' state names); anything else as it is.
 */
export function withQbrokerTaskFields(topic: string, data: unknown): unknown {
  if (!topic.startsWith(TASK_TOPIC_PREFIX)) return data;
  if (data === null || typeof data !== "object" || Array.isArray(data)) return data;
  const t = data as Record<string, unknown>;
  if (typeof t.task !== "string" || typeof t.state !== "string") return data;
  const state = Object.hasOwn(QBROKER_TASK_STATES, t.state)
    ? QBROKER_TASK_STATES[t.state]
    : undefined;
  if (state === undefined) return data;
  return {
    ...t,
    state,
    status: t.state,
    reason: typeof t.message === "string" ? t.message : null,
    parent: null,
    result: null,
  };
}
