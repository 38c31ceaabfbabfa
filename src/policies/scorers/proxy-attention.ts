import type { CacheView, GroupReduction } from "../policy.js";
import { summedAttentionPerQueryHead } from "./attention-probabilities.js";
import { reduceOverGroups } from "./group-reduction.js";

/**
 * NACL's score, per KV head and slot: the attention probabilities the proxy
 * rows pay each entry, summed over the rows and reduced over each GQA group
 * (sum by default), with no pooling and no normalisation. Yields after each query head.
 */
export function* proxyAttentionScores(cache: CacheView, layer: number, proxyRows: readonly number[], reduction: GroupReduction): Generator<void, Float64Array[]> {
  return reduceOverGroups(yield* summedAttentionPerQueryHead(cache, layer, proxyRows), cache.shape.kvHeads, reduction);
}
