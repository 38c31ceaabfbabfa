import type { ModelConfig } from "../config/model-config.js";

/** Weights as row-major [out, in] matrices (y = W x), per layer. */
export interface LayerWeights {
  attnNorm: Float32Array;
  wq: Float32Array;
  wk: Float32Array;
  wv: Float32Array;
  wo: Float32Array;
  ffnNorm: Float32Array;
  w1: Float32Array;
  w2: Float32Array;
  w3: Float32Array;
  /** Attention biases, present only in checkpoints that have them (Qwen2: q, k, v). */
  bq?: Float32Array;
  bk?: Float32Array;
  bv?: Float32Array;
  bo?: Float32Array;
}

export interface ModelWeights {
  config: ModelConfig;
  embedding: Float32Array;
  layers: LayerWeights[];
  finalNorm: Float32Array;
  /** The classifier; the embedding itself when tied. */
  classifier: Float32Array;
}

/**
 * Weights handed out a piece at a time, so a large checkpoint is never held
 * whole: a converter asks for one layer, writes it and lets it go.
 */
export interface WeightSource {
  config: ModelConfig;
  /** The classifier is the embedding (read once, stored once). */
  tiedClassifier: boolean;
  embedding(): Float32Array;
  layer(index: number): LayerWeights;
  finalNorm(): Float32Array;
  /** Untied models only. */
  classifier(): Float32Array;
}

/** Weights already in memory, as a source. */
export function weightSourceOf(weights: ModelWeights): WeightSource {
  return {
    config: weights.config,
    tiedClassifier: weights.classifier === weights.embedding,
    embedding: () => weights.embedding,
    layer: (index) => weights.layers[index],
    finalNorm: () => weights.finalNorm,
    classifier: () => weights.classifier,
  };
}
