import type { CacheView, GroupReduction, LayerView, Pooling } from "../policy.js";
import { summedAttentionPerQueryHead } from "./attention-probabilities.js";
import { reduceOverGroups } from "./group-reduction.js";
import { pool1d } from "./pooling.js";

export interface WindowScoring {
  kernelSize: number;
  pooling: Pooling;
  groupReduction: GroupReduction;
}

/** How many of a head's entries precede `firstWindowPosition`: the rest are the window. */
export function entriesBeforeWindow(layer: LayerView, head: number, firstWindowPosition: number): number {
  const base = layer.offsets[head];
  let count = 0;
  while (count < layer.lengths[head] && layer.positions[base + count] < firstWindowPosition) count++;
  return count;
}

/**
 * SnapKV's score, per KV head, for the entries before the observation window
 * (the window itself is always kept, so it is not scored): the mean over the
 * window's query rows of attention probabilities, reduced over each GQA group,
 * then pooled over those entries alone (so the pooling edges fall where the
 * references put them). Yields after each query head.
 */
export function* windowAttentionScores(cache: CacheView, layer: number, windowRows: readonly number[], scoring: WindowScoring): Generator<void, Float64Array[]> {
  const view = cache.layers[layer];
  const firstWindowPosition = cache.recentQueries.positions[windowRows[0]];
  const perQueryHead = (yield* summedAttentionPerQueryHead(cache, layer, windowRows)).map((sums) => sums.map((sum) => sum / windowRows.length));
  return reduceOverGroups(perQueryHead, cache.shape.kvHeads, scoring.groupReduction).map((scores, h) =>
    pool1d(scores.subarray(0, entriesBeforeWindow(view, h, firstWindowPosition)), scoring.kernelSize, scoring.pooling),
  );
}
