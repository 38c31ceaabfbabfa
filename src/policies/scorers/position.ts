import type { LayerView } from "../policy.js";

/** Scores each entry of a head by its original position: recent entries score higher. */
export function positionScores(layer: LayerView, head: number): Float64Array {
  const start = layer.offsets[head];
  return Float64Array.from(layer.positions.subarray(start, start + layer.lengths[head]));
}
