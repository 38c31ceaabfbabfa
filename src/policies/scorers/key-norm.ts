import type { LayerView } from "../policy.js";

/** KNorm's score: minus the L2 norm of each entry's key, so low-norm keys (which draw attention) score high. */
export function keyNormScores(layer: LayerView, head: number, headSize: number): Float64Array {
  const base = layer.offsets[head];
  return Float64Array.from({ length: layer.lengths[head] }, (_, slot) => {
    let squares = 0;
    for (let i = 0; i < headSize; i++) squares += layer.keys[(base + slot) * headSize + i] ** 2;
    return -Math.sqrt(squares);
  });
}
