/**
 * The task state alerts (`moat.task.<path>`, sent by the hosts) as MoaT's
 * qbroker peers read them: besides moat-scripts' own fields (`task`,
 * `state`, `message`, `host`, `time`) they carry qbroker's `reason` (the
 * message, or `null`), `parent` (`null`: a script task has no parent task)
 * and `result` (`null`: a run returns nothing to report). `state` keeps
 * moat-scripts' names (`start`, `ok`, `error`, `fail`); qbroker's `done` is
 * `ok`, and `setup` is never sent (docs/amqp.md, "Task state alerts").
 *
 * Both buses add the fields when they send such an alert, so that a script
 * listening to `moat.task.#` sees the same on either.
 *
 * @module
 */

/** The first words of a task state alert's topic. */
export const TASK_TOPIC_PREFIX = "moat.task.";

/**
 * `data` with qbroker's task fields added, if `topic` is a task state alert
 * and `data` one of the hosts' transitions; anything else as it is.
 */
export function withQbrokerTaskFields(topic: string, data: unknown): unknown {
  if (!topic.startsWith(TASK_TOPIC_PREFIX)) return data;
  if (data === null || typeof data !== "object" || Array.isArray(data)) return data;
  const t = data as Record<string, unknown>;
  if (typeof t.task !== "string" || typeof t.state !== "string") return data;
  return {
    ...t,
    reason: typeof t.message === "string" ? t.message : null,
    parent: null,
    result: null,
  };
}
