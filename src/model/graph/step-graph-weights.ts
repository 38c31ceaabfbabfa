import type { WeightSource } from "../checkpoints/model-weights.js";
import { projectionTensors } from "./projection-weights.js";
import type { GraphTensor, ProjectionStorage } from "./weight-layout.js";

/** Names of the step graph's weights (which `stepGraphTensors` yields in the layout the graph reads). */
export const STEP_WEIGHTS = {
  embedding: "embedding",
  attnNorm: (l: number) => `attn_norm_${l}`,
  qkv: (l: number) => `wqkv_${l}`,
  qkvBias: (l: number) => `bqkv_${l}`,
  output: (l: number) => `wo_${l}`,
  outputBias: (l: number) => `bo_${l}`,
  ffnNorm: (l: number) => `ffn_norm_${l}`,
  gateUp: (l: number) => `w13_${l}`,
  down: (l: number) => `w2_${l}`,
  finalNorm: "final_norm",
  /** Untied models only; a tied classifier is the embedding. */
  classifier: "classifier",
};
const W = STEP_WEIGHTS;

/**
 * The step graph's weights in the layout it reads, one at a time: q/k/v and gate/up
 * fused, projections stored as `projections` says (see projection-weights.ts). Only
 * one layer of `source` is read at a time, so converting never holds a whole model.
 */
export function* stepGraphTensors(source: WeightSource, projections: ProjectionStorage): Generator<GraphTensor> {
  const { dim, heads, kvHeads, headSize, vocabSize, hiddenDim, layers } = source.config;
  const qkvWidth = (heads + 2 * kvHeads) * headSize;
  yield { name: W.embedding, dims: [vocabSize, dim], data: source.embedding() };
  for (let l = 0; l < layers; l++) {
    const w = source.layer(l);
    yield { name: W.attnNorm(l), dims: [dim], data: w.attnNorm };
    yield* projectionTensors(W.qkv(l), concatRows([w.wq, w.wk, w.wv]), qkvWidth, dim, projections);
    if (w.bq || w.bk || w.bv) {
      const bias = (b: Float32Array | undefined, size: number) => b ?? new Float32Array(size);
      const data = concatRows([bias(w.bq, heads * headSize), bias(w.bk, kvHeads * headSize), bias(w.bv, kvHeads * headSize)]);
      yield { name: W.qkvBias(l), dims: [qkvWidth], data };
    }
    yield* projectionTensors(W.output(l), w.wo, dim, heads * headSize, projections);
    if (w.bo) yield { name: W.outputBias(l), dims: [dim], data: w.bo };
    yield { name: W.ffnNorm(l), dims: [dim], data: w.ffnNorm };
    yield* projectionTensors(W.gateUp(l), concatRows([w.w1, w.w3]), 2 * hiddenDim, dim, projections);
    yield* projectionTensors(W.down(l), w.w2, dim, hiddenDim, projections);
  }
  yield { name: W.finalNorm, dims: [dim], data: source.finalNorm() };
  if (projections.dtype === "float32") {
    // Kept [V, dim] (read with transB), like the embedding: no transposed copy of the largest matrix.
    if (!source.tiedClassifier) yield { name: W.classifier, dims: [vocabSize, dim], data: source.classifier() };
  } else {
    // Quantized even when tied (a copy beside the float embedding, which Gather reads):
    // the classifier is read whole every step, the embedding one row per token.
    yield* projectionTensors(W.classifier, source.tiedClassifier ? source.embedding() : source.classifier(), vocabSize, dim, projections);
  }
}

/** Stacks row-major matrices with the same column count. */
function concatRows(matrices: Float32Array[]): Float32Array {
  const out = new Float32Array(matrices.reduce((n, m) => n + m.length, 0));
  let offset = 0;
  for (const m of matrices) {
    out.set(m, offset);
    offset += m.length;
  }
  return out;
}
