import type { CacheView, KeepPlan } from "../policies/policy.js";
import { summedAttention } from "../policies/scorers/attention-probabilities.js";

/**
 * How much of the observation window's attention went to the entries an
 * eviction drops: for every layer, query head and held recent-query row, the
 * row's softmax over the entries it can see (causal), summed over the entries
 * `keep` leaves out, divided by the total. 0 means the window never looked at
 * what is dropped; it estimates the eviction's quality cost. Undefined when no
 * query rows are held. Read the cache before the plan is applied.
 */
export function evictedAttentionShare(cache: CacheView, keep: KeepPlan): number | undefined {
  const rows = Array.from({ length: cache.recentQueries.count }, (_, i) => i);
  if (rows.length === 0) return undefined;
  const group = cache.shape.heads / cache.shape.kvHeads;
  let total = 0;
  let kept = 0;
  for (let layer = 0; layer < cache.shape.layers; layer++) {
    for (let queryHead = 0; queryHead < cache.shape.heads; queryHead++) {
      const sums = summedAttention(cache, layer, queryHead, rows);
      for (const sum of sums) total += sum;
      for (const slot of keep[layer][Math.floor(queryHead / group)]) kept += sums[slot];
    }
  }
  return total === 0 ? 0 : Math.min(1, Math.max(0, (total - kept) / total));
}
