import type { CacheView } from "../policy.js";
import { summedAttention } from "./attention-probabilities.js";

/** Scores by original position, shared by every head of a layer. */
export interface PositionScores {
  /** Every position some head of the layer holds, ascending. */
  positions: Int32Array;
  scores: Float64Array;
}

/**
 * TOVA's score for one layer: the attention the last query row pays each
 * position, averaged over all query heads. Heads compacted differently by an
 * earlier eviction may hold different positions; a head lacking a position
 * contributes zero to it. Yields after each query head.
 */
export function* lastRowAttentionByPosition(cache: CacheView, layer: number, lastRow: number): Generator<void, PositionScores> {
  const { heads, kvHeads } = cache.shape;
  const view = cache.layers[layer];
  const held = new Set<number>();
  for (let h = 0; h < kvHeads; h++) {
    for (let slot = 0; slot < view.lengths[h]; slot++) held.add(view.positions[view.offsets[h] + slot]);
  }
  const positions = Int32Array.from(held).sort();
  const indexOf = new Map(Array.from(positions, (position, i) => [position, i]));
  const scores = new Float64Array(positions.length);
  const group = heads / kvHeads;
  for (let q = 0; q < heads; q++) {
    const base = view.offsets[Math.floor(q / group)];
    summedAttention(cache, layer, q, [lastRow]).forEach((probability, slot) => {
      scores[indexOf.get(view.positions[base + slot])!] += probability / heads;
    });
    yield;
  }
  return { positions, scores };
}
