import type { CacheView, KeepPlan } from "../policies/policy.js";
import { summedAttention } from "../policies/scorers/attention-probabilities.js";

/** Recent query rows that make up the observation window: enough to be representative, few enough to be cheap. */
export const OBSERVATION_ROWS = 16;

/**
 * How much of the observation window's attention went to the entries an
 * eviction drops: for every layer, query head and one of the last `windowRows`
 * recent-query rows held, the row's softmax over the entries it can see
 * (causal), summed over the entries `keep` leaves out, divided by the total.
 * 0 means the window never looked at what is dropped; it estimates the
 * eviction's quality cost. Undefined when no query rows are held. Read the
 * cache before the plan is applied. Yields after each query head (it costs as
 * much as an attention policy's plan, and runs in slices as one does).
 */
export function* evictedAttentionShare(cache: CacheView, keep: KeepPlan, windowRows = OBSERVATION_ROWS): Generator<void, number | undefined> {
  const held = cache.recentQueries.count;
  const rows = Array.from({ length: Math.min(held, windowRows) }, (_, i) => held - Math.min(held, windowRows) + i);
  if (rows.length === 0) return undefined;
  const group = cache.shape.heads / cache.shape.kvHeads;
  let total = 0;
  let kept = 0;
  for (let layer = 0; layer < cache.shape.layers; layer++) {
    for (let queryHead = 0; queryHead < cache.shape.heads; queryHead++) {
      const sums = summedAttention(cache, layer, queryHead, rows);
      for (const sum of sums) total += sum;
      for (const slot of keep[layer][Math.floor(queryHead / group)]) kept += sums[slot];
      yield;
    }
  }
  return total === 0 ? 0 : Math.min(1, Math.max(0, (total - kept) / total));
}
