import { SeededRandom } from "../model/seeded-random.js";
import { sinkTokensParameter } from "./sink-tokens.js";
import { paramOf, type Policy, type PolicyParams } from "./policy.js";
import { proxyAttentionScores } from "./scorers/proxy-attention.js";
import { lastQueryRows, queryRowsInSpan } from "./scorers/query-rows.js";
import { keepAll } from "./selectors/keep-all.js";
import { selectTopKWithRandom } from "./selectors/top-k-with-random.js";

/**
 * How NACL splits the budget left after the protected entries: 12/19 to proxy
 * top-k and 7/19 to random draws (the reference's 0.12 : 0.07). The random
 * share is rounded down, so the deterministic top-k gets any remainder.
 */
export function naclSplit(remaining: number): { topCount: number; randomCount: number } {
  const randomCount = Math.floor((Math.max(0, remaining) * 7) / 19);
  return { topCount: Math.max(0, remaining) - randomCount, randomCount };
}

function proxyLength(policy: Policy, params: Partial<PolicyParams>): number {
  return params.proxySpan ? params.proxySpan.end - params.proxySpan.start : paramOf(policy, params, "proxyTokens");
}

/**
 * NACL: per head, the sinks and the proxy tokens' own entries, the entries
 * the proxy tokens attend to most, and a seeded random draw biased by the
 * same scores; the same seed keeps the same entries.
 */
export const naclPolicy: Policy = {
  name: "nacl",
  defaultDecodeSlack: 64,
  description:
    "Scores entries by the attention the proxy tokens (the proxy span, else the last proxy_tokens) pay them; keeps sinks, the proxies, the top-scoring entries and a seeded random sample biased by score (NACL).",
  parameters: [
    { name: "proxyTokens", description: "the last P tokens act as proxies when no proxy_span is given", defaultValue: 32 },
    { name: "proxySpan", description: "original positions [start, end) to use as proxies (e.g. the question); overrides proxy_tokens", defaultValue: "last proxy_tokens positions" },
    sinkTokensParameter,
    { name: "temperature", description: "softmax temperature of the random draws; 0 draws uniformly", defaultValue: 1 },
    { name: "groupReduction", description: "how a KV head combines its query heads' scores: sum, mean or max", defaultValue: "sum" },
  ],
  queryRowsNeeded(params) {
    return proxyLength(this, params);
  },
  minimumBudget(params) {
    return paramOf(this, params, "sinkTokens") + proxyLength(this, params) + 1;
  },
  plan(cache, budget, spec) {
    const sinks = paramOf(this, spec.params, "sinkTokens");
    const temperature = paramOf(this, spec.params, "temperature");
    const reduction = paramOf(this, spec.params, "groupReduction");
    const { proxySpan } = spec.params;
    const rows = proxySpan
      ? queryRowsInSpan(cache.recentQueries, proxySpan)
      : lastQueryRows(cache.recentQueries, paramOf(this, spec.params, "proxyTokens"), "eviction.proxy_tokens");
    const proxyPositions = new Set(rows.map((row) => cache.recentQueries.positions[row]));
    const random = new SeededRandom(spec.seed ?? 0n);
    return {
      keep: cache.layers.map((layer, l) =>
        proxyAttentionScores(cache, l, rows, reduction).map((scores, h) => {
          const entries = layer.lengths[h];
          const count = budget(entries);
          if (entries <= count) return keepAll(entries);
          const isProtected = (slot: number) => slot < sinks || proxyPositions.has(layer.positions[layer.offsets[h] + slot]);
          let protectedCount = 0;
          for (let slot = 0; slot < entries; slot++) if (isProtected(slot)) protectedCount++;
          return selectTopKWithRandom(scores, isProtected, { ...naclSplit(count - protectedCount), temperature }, random);
        }),
      ),
    };
  },
};
