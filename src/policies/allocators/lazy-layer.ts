import { eachLayerInSteps, type CacheView } from "../policy.js";
import { summedAttention } from "../scorers/attention-probabilities.js";

/**
 * SimLayerKV's laziness of one layer: the attention probability that the
 * given query rows put on each head's first `sinks` entries and last
 * C - sinks entries (C = budget(T) of that head), averaged over rows and all
 * query heads. A head within its budget counts everything, so it scores 1.
 * Yields after each query head.
 */
export function* lazinessScore(cache: CacheView, layer: number, rows: readonly number[], sinks: number, budget: (entries: number) => number): Generator<void, number> {
  const { heads, kvHeads } = cache.shape;
  const view = cache.layers[layer];
  let mass = 0;
  for (let q = 0; q < heads; q++) {
    const entries = view.lengths[Math.floor(q / (heads / kvHeads))];
    const recentFrom = entries - Math.max(0, budget(entries) - sinks);
    summedAttention(cache, layer, q, rows).forEach((sum, slot) => {
      if (slot < sinks || slot >= recentFrom) mass += sum;
    });
    yield;
  }
  return mass / (heads * rows.length);
}

/** Layers whose laziness exceeds `delta`: SimLayerKV trims these to sinks + recent and leaves the rest whole. Scored a query head at a time (Policy.plan). */
export function* lazyLayers(cache: CacheView, rows: readonly number[], sinks: number, budget: (entries: number) => number, delta: number): Generator<void, number[]> {
  const scores = yield* eachLayerInSteps(cache.layers, (_, l) => lazinessScore(cache, l, rows, sinks, budget));
  return scores.flatMap((score, l) => (score > delta ? [l] : []));
}
