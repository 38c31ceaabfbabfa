import { SeededRandom } from "../numerics/seeded-random.js";
import { proxyQueries, sinkEntries } from "./protected-parts.js";
import { sinkTokensParameter } from "./sink-tokens.js";
import { eachLayerInSteps, paramOf, type Policy } from "./policy.js";
import { pool1d } from "./scorers/pooling.js";
import { proxyAttentionScores } from "./scorers/proxy-attention.js";
import { lastQueryRows, queryRowsInSpan } from "./scorers/query-rows.js";
import { keepAll } from "./selectors/keep-all.js";
import { selectTopKWithRandom } from "./selectors/top-k-with-random.js";

/** The reference's split of the budget left after the protected entries: 0.07 random of 0.12 + 0.07. */
export const NACL_RANDOM_SHARE = 7 / 19;

/**
 * How NACL splits the budget left after the protected entries: `randomShare`
 * (by default 7/19, the reference's 0.07 : 0.12) to random draws, the rest to
 * proxy top-k. The random share is rounded down, so the deterministic top-k
 * gets any remainder.
 */
export function naclSplit(remaining: number, randomShare = NACL_RANDOM_SHARE): { topCount: number; randomCount: number } {
  const randomCount = Math.floor(Math.max(0, remaining) * randomShare);
  return { topCount: Math.max(0, remaining) - randomCount, randomCount };
}

/**
 * NACL: per head, the sinks and the proxy tokens' own entries, the entries
 * the proxy tokens attend to most, and a seeded random draw biased by the
 * same scores; the same seed keeps the same entries. Pooling and the random
 * share are there for ablations: the reference pools nothing.
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
    {
      name: "randomShare",
      description: "share in [0, 1] of the budget left after sinks and proxies that is drawn at random (0: proxy top-k only; the reference's 0.07 of 0.19)",
      defaultValue: NACL_RANDOM_SHARE,
    },
    { name: "pooling", description: "ablation: pool the scores over neighbouring entries (max or avg, as SnapKV; sinks and proxies count 0); the reference does not", defaultValue: "none" },
    { name: "kernelSize", description: "odd pooling kernel, when pooling is on", defaultValue: 7 },
  ],
  queryRowsNeeded(params, position) {
    const span = params.proxySpan;
    return span && position !== undefined ? Math.max(proxyQueries(this, params), position - span.start) : proxyQueries(this, params);
  },
  readsKeys: true,
  protectedParts: [sinkEntries, proxyQueries],
  *plan(cache, budget, spec) {
    const sinks = paramOf(this, spec.params, "sinkTokens");
    const temperature = paramOf(this, spec.params, "temperature");
    const reduction = paramOf(this, spec.params, "groupReduction");
    const randomShare = paramOf(this, spec.params, "randomShare");
    const pooling = paramOf(this, spec.params, "pooling");
    const kernelSize = paramOf(this, spec.params, "kernelSize");
    const { proxySpan } = spec.params;
    const rows = proxySpan
      ? queryRowsInSpan(cache.recentQueries, proxySpan)
      : lastQueryRows(cache.recentQueries, paramOf(this, spec.params, "proxyTokens"), "eviction.proxy_tokens");
    const proxyPositions = new Set(rows.map((row) => cache.recentQueries.positions[row]));
    const random = new SeededRandom(spec.seed ?? 0n);
    return {
      keep: yield* eachLayerInSteps(cache.layers, function* (layer, l) {
        return (yield* proxyAttentionScores(cache, l, rows, reduction)).map((scores, h) => {
          const entries = layer.lengths[h];
          const count = budget(entries);
          if (entries <= count) return keepAll(entries);
          const isProtected = (slot: number) => slot < sinks || proxyPositions.has(layer.positions[layer.offsets[h] + slot]);
          let protectedCount = 0;
          for (let slot = 0; slot < entries; slot++) if (isProtected(slot)) protectedCount++;
          // Protected entries are kept anyway; zeroed, they lend no score to their neighbours.
          const ranked = pooling === "none" ? scores : pool1d(scores.map((score, slot) => (isProtected(slot) ? 0 : score)), kernelSize, pooling);
          return selectTopKWithRandom(ranked, isProtected, { ...naclSplit(count - protectedCount, randomShare), temperature }, random);
        });
      }),
    };
  },
};
