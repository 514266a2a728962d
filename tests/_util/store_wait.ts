/**
 * Waiting for keys in a store without polling: read once, then watch.
 *
 * @module
 */

import type { Store } from "../../host/store/store.ts";
import { withTimeout } from "./wait.ts";

/**
 * Resolve with the value of `key` once `pred(value)` holds (`undefined`
 * for an absent key), at most `ms` milliseconds.
 */
export async function waitForKey(
  store: Store,
  key: string,
  pred: (value: string | undefined) => boolean,
  ms: number,
): Promise<string | undefined> {
  const { promise, resolve } = Promise.withResolvers<string | undefined>();
  const watch = await store.watch(key, (events) => {
    for (const e of events) {
      if (e.kv.key !== key) continue;
      const v = e.type === "put" ? e.kv.value : undefined;
      if (pred(v)) resolve(v);
    }
  });
  try {
    const now = (await store.get(key))?.value;
    if (pred(now)) return now;
    return await withTimeout(promise, ms, `key ${key}`);
  } finally {
    await watch.close();
  }
}
