import type { LayerView } from "../policy.js";

/** H2O's score: the attention each entry of a head has received since it was cached (already summed over its group). */
export function accumulatedAttentionScores(layer: LayerView, head: number): Float64Array {
  const start = layer.offsets[head];
  return Float64Array.from(layer.mass.subarray(start, start + layer.lengths[head]));
}
