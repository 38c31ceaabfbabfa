import type { CacheView } from "../policy.js";

/**
 * For one query head, the sum over the given recent-query rows of its
 * attention probabilities over its KV head's cached entries (one value per
 * slot). Each row is a softmax, scale 1/sqrt(d), over the entries whose
 * position is at most the row's position (causal). Math is float64; callers
 * divide by the row count where they need a mean.
 */
export function summedAttention(cache: CacheView, layer: number, queryHead: number, rows: readonly number[]): Float64Array {
  const { heads, kvHeads, headSize } = cache.shape;
  const view = cache.layers[layer];
  const { keys, positions } = view;
  const queries = cache.recentQueries.layers[layer];
  const held = cache.recentQueries.count;
  const kvHead = Math.floor(queryHead / (heads / kvHeads));
  const entries = view.lengths[kvHead];
  const slotBase = view.offsets[kvHead];
  const scale = 1 / Math.sqrt(headSize);
  const sums = new Float64Array(entries);
  const logits = new Float64Array(entries);
  for (const row of rows) {
    const rowPosition = cache.recentQueries.positions[row];
    const queryBase = (queryHead * held + row) * headSize;
    // Positions ascend per head, so the entries a row may see are a prefix of the slots: found by bisection.
    let visible = 0;
    for (let end = entries; visible < end; ) {
      const middle = (visible + end) >>> 1;
      if (positions[slotBase + middle] <= rowPosition) visible = middle + 1;
      else end = middle;
    }
    if (visible === 0) continue;
    let max = -Infinity;
    for (let slot = 0, keyBase = slotBase * headSize; slot < visible; slot++, keyBase += headSize) {
      let dot = 0;
      for (let i = 0; i < headSize; i++) dot += queries[queryBase + i] * keys[keyBase + i];
      const logit = dot * scale;
      logits[slot] = logit;
      if (logit > max) max = logit;
    }
    let total = 0;
    for (let slot = 0; slot < visible; slot++) {
      const weight = Math.exp(logits[slot] - max);
      logits[slot] = weight;
      total += weight;
    }
    for (let slot = 0; slot < visible; slot++) sums[slot] += logits[slot] / total;
  }
  return sums;
}

/** `summedAttention` for every query head of a layer, indexed by query head, yielding after each (Policy.plan runs in slices). */
export function* summedAttentionPerQueryHead(cache: CacheView, layer: number, rows: readonly number[]): Generator<void, Float64Array[]> {
  const sums: Float64Array[] = [];
  for (let q = 0; q < cache.shape.heads; q++) {
    sums.push(summedAttention(cache, layer, q, rows));
    yield;
  }
  return sums;
}
