import type { WeightDtype } from "../graph/weight-layout.js";
import type { ModelConfig } from "./model-config.js";

/** Bytes per projection weight as stored (quantized: the codes, leaving out the per-block scales). */
const BYTES_PER_WEIGHT: Record<WeightDtype, number> = { float32: 4, int8: 1, int4: 0.5 };

/**
 * The weight bytes one step reads, however many sequences it runs: every layer's projections
 * and the output head (the embedding is looked up one row per token, so it is left out). On a
 * model of realistic size a decode step is bound by reading these (docs/performance.md).
 */
export function stepWeightBytes(config: ModelConfig, dtype: WeightDtype): number {
  const { dim, hiddenDim, heads, kvHeads, headSize, layers, vocabSize } = config;
  const attention = 2 * dim * heads * headSize + 2 * dim * kvHeads * headSize;
  const mlp = 3 * dim * hiddenDim;
  return (layers * (attention + mlp) + vocabSize * dim) * BYTES_PER_WEIGHT[dtype];
}
