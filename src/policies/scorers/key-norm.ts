import type { LayerView } from "../policy.js";

/**
 * Norms this close (relative) count as equal. RoPE preserves a key's norm, so
 * one token's key has the same norm at every position, but rotating it in
 * float32 moves the norm by about 1e-7 relative: without this, those ties
 * would go by rounding noise instead of to the earlier position, as every policy breaks ties.
 * Ten times that: 1e-5 already merged distinct norms (7.5e-6 apart in a
 * held-out recall prompt, test/policies/reference-selection.test.ts).
 */
const NORM_TIE = 1e-6;

/** KNorm's score: minus the L2 norm of each entry's key, so low-norm keys (which draw attention) score high. */
export function keyNormScores(layer: LayerView, head: number, headSize: number): Float64Array {
  const base = layer.offsets[head];
  const norms = Float64Array.from({ length: layer.lengths[head] }, (_, slot) => {
    let squares = 0;
    for (let i = 0; i < headSize; i++) squares += layer.keys[(base + slot) * headSize + i] ** 2;
    return Math.sqrt(squares);
  });
  return tiedWithinRounding(norms).map((norm) => -norm);
}

/** Each run of norms, in ascending order, whose steps are within NORM_TIE takes the run's lowest value. */
function tiedWithinRounding(norms: Float64Array): Float64Array {
  const order = Array.from(norms.keys()).sort((a, b) => norms[a] - norms[b]);
  const snapped = new Float64Array(norms.length);
  let runValue = Number.NaN;
  let previous = Number.NaN;
  for (const slot of order) {
    if (!(norms[slot] - previous <= NORM_TIE * previous)) runValue = norms[slot];
    snapped[slot] = runValue;
    previous = norms[slot];
  }
  return snapped;
}
