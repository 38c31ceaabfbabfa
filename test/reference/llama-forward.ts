import type { ModelWeights } from "../../src/model/checkpoints/model-weights.js";
import type { ModelConfig } from "../../src/model/config/model-config.js";

/**
 * A plain-loop Llama forward pass written from the model definition
 * (docs/models.md, "The llama2.c format"), independent of the ONNX step graph, in float64.
 * Hugging Face variants follow the config: RoPE on half-split pairs
 * (ropeLayout "half"), rescaled frequencies (ropeScaling), attention biases
 * when the weights have them, an untied classifier.
 * Its cache holds, per layer and per KV head, any list of entries: eviction
 * is just removing entries, and every entry keeps the key it was given at its
 * original position.
 */

export interface CacheEntry {
  /** Original position of the token. */
  position: number;
  /** Post-RoPE key [d]. */
  key: Float64Array;
  value: Float64Array;
}

/** [layer][kvHead] -> entries, oldest first. */
export type ReferenceCache = CacheEntry[][][];

export interface ForwardResult {
  /** Per new row, logits [V]. */
  logits: Float64Array[];
  /** [layer][row][queryHead] -> post-RoPE query [d]. */
  queries: Float64Array[][][];
  /**
   * [layer][row][queryHead] -> attention probabilities over the head's KV
   * group as it stood before the step (its entries in order) followed by the
   * step's rows (zero for rows after this one).
   */
  attention: Float64Array[][][];
}

export function createReferenceCache(config: ModelConfig): ReferenceCache {
  return Array.from({ length: config.layers }, () => Array.from({ length: config.kvHeads }, () => []));
}

/** Keeps only the entries at `keep[layer][kvHead]` (indices into the head's current entries). */
export function evictReference(cache: ReferenceCache, keep: readonly (readonly (readonly number[])[])[]): void {
  cache.forEach((layer, l) =>
    layer.forEach((entries, h) => {
      layer[h] = keep[l][h].map((index) => {
        if (index < 0 || index >= entries.length) throw new Error(`no entry ${index} in layer ${l} head ${h}`);
        return entries[index];
      });
    }),
  );
}

/**
 * Runs `tokens` at original positions firstPosition, firstPosition + 1, ...
 * attending to every cached entry and causally among themselves; appends their
 * keys and values to the cache.
 */
export function referenceForward(weights: ModelWeights, cache: ReferenceCache, tokens: readonly number[], firstPosition: number): ForwardResult {
  const { config } = weights;
  const { dim, heads, kvHeads, headSize, hiddenDim, vocabSize, normEps } = config;
  const group = heads / kvHeads;
  const frequencies = inverseFrequencies(config);
  const rope = (x: Float64Array, headCount: number, position: number) => rotate(x, headCount, headSize, position, frequencies, config.ropeLayout);
  const rows = tokens.length;
  const hidden = tokens.map((token) => Float64Array.from(weights.embedding.subarray(token * dim, (token + 1) * dim)));
  const result: ForwardResult = { logits: [], queries: [], attention: [] };

  weights.layers.forEach((w, l) => {
    const pastLengths = cache[l].map((entries) => entries.length);
    const normed = hidden.map((x) => rmsNorm(x, w.attnNorm, normEps));
    const queries = normed.map((x, r) => splitHeads(rope(project(w.wq, w.bq, x, heads * headSize), heads, firstPosition + r), heads, headSize));
    normed.forEach((x, r) => {
      const keys = splitHeads(rope(project(w.wk, w.bk, x, kvHeads * headSize), kvHeads, firstPosition + r), kvHeads, headSize);
      const values = splitHeads(project(w.wv, w.bv, x, kvHeads * headSize), kvHeads, headSize);
      for (let g = 0; g < kvHeads; g++) cache[l][g].push({ position: firstPosition + r, key: keys[g], value: values[g] });
    });

    const attention = queries.map((rowQueries, r) =>
      rowQueries.map((q, h) => {
        const entries = cache[l][Math.floor(h / group)];
        const past = pastLengths[Math.floor(h / group)];
        // Visible: the past entries and the new rows up to this one.
        const visible = past + r + 1;
        const probs = new Float64Array(past + rows);
        let max = -Infinity;
        for (let j = 0; j < visible; j++) {
          probs[j] = dot(q, entries[j].key) / Math.sqrt(headSize);
          max = Math.max(max, probs[j]);
        }
        let total = 0;
        for (let j = 0; j < visible; j++) total += probs[j] = Math.exp(probs[j] - max);
        for (let j = 0; j < visible; j++) probs[j] /= total;
        return probs;
      }),
    );

    hidden.forEach((x, r) => {
      const mixed = new Float64Array(heads * headSize);
      for (let h = 0; h < heads; h++) {
        const entries = cache[l][Math.floor(h / group)];
        const probs = attention[r][h];
        for (let j = 0; j < probs.length; j++) {
          if (probs[j] === 0) continue;
          for (let i = 0; i < headSize; i++) mixed[h * headSize + i] += probs[j] * entries[j].value[i];
        }
      }
      addInto(x, project(w.wo, w.bo, mixed, dim));
      const y = rmsNorm(x, w.ffnNorm, normEps);
      const gate = matVec(w.w1, y, hiddenDim);
      const up = matVec(w.w3, y, hiddenDim);
      const activated = gate.map((a, i) => (a / (1 + Math.exp(-a))) * up[i]);
      addInto(x, matVec(w.w2, activated, dim));
    });
    result.queries.push(queries);
    result.attention.push(attention);
  });

  result.logits = hidden.map((x) => matVec(weights.classifier, rmsNorm(x, weights.finalNorm, normEps), vocabSize));
  return result;
}

/** Index of the largest logit (the first one on ties). */
export function argmax(values: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i] > values[best]) best = i;
  return best;
}

/** y = W x + b (b optional). */
function project(w: Float32Array, bias: Float32Array | undefined, x: Float64Array, rows: number): Float64Array {
  const y = matVec(w, x, rows);
  if (bias) for (let r = 0; r < rows; r++) y[r] += bias[r];
  return y;
}

/** y = W x with W row-major [rows, x.length]. */
function matVec(w: Float32Array, x: Float64Array, rows: number): Float64Array {
  const cols = x.length;
  if (w.length !== rows * cols) throw new Error(`matrix of ${w.length} floats is not [${rows}, ${cols}]`);
  const y = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    let sum = 0;
    for (let c = 0; c < cols; c++) sum += w[r * cols + c] * x[c];
    y[r] = sum;
  }
  return y;
}

function rmsNorm(x: Float64Array, scale: Float32Array, eps: number): Float64Array {
  let squares = 0;
  for (const v of x) squares += v * v;
  const inverse = 1 / Math.sqrt(squares / x.length + eps);
  return x.map((v, i) => v * inverse * scale[i]);
}

/**
 * theta^(-2i / d) per pair i, rescaled per Hugging Face's rope_scaling rules:
 * "linear" divides every frequency by the factor; "llama3" divides those whose
 * wavelength exceeds original_context / low_freq_factor, keeps those below
 * original_context / high_freq_factor, and interpolates linearly in
 * original_context / wavelength between the two.
 */
function inverseFrequencies(config: ModelConfig): number[] {
  const { headSize, ropeTheta, ropeScaling } = config;
  return Array.from({ length: headSize / 2 }, (_, i) => {
    const frequency = Math.pow(ropeTheta, (-2 * i) / headSize);
    if (!ropeScaling) return frequency;
    if (ropeScaling.type === "linear") return frequency / ropeScaling.factor;
    const { factor, lowFreqFactor, highFreqFactor, originalContextLength } = ropeScaling;
    const ratio = (originalContextLength * frequency) / (2 * Math.PI); // original_context / wavelength
    if (ratio > highFreqFactor) return frequency;
    if (ratio < lowFreqFactor) return frequency / factor;
    const blend = (ratio - lowFreqFactor) / (highFreqFactor - lowFreqFactor);
    return blend * frequency + (1 - blend) * (frequency / factor);
  });
}

/**
 * Rotates each head's pairs by position * frequency[i]: pairs (2i, 2i + 1)
 * for llama2.c's interleaved layout, (i, i + d/2) for Hugging Face's half split.
 */
function rotate(x: Float64Array, headCount: number, headSize: number, position: number, frequencies: number[], layout: ModelConfig["ropeLayout"]): Float64Array {
  const out = new Float64Array(x.length);
  const half = headSize / 2;
  for (let h = 0; h < headCount; h++) {
    for (let i = 0; i < half; i++) {
      const angle = position * frequencies[i];
      const [cos, sin] = [Math.cos(angle), Math.sin(angle)];
      const [a, b] = layout === "interleaved" ? [h * headSize + 2 * i, h * headSize + 2 * i + 1] : [h * headSize + i, h * headSize + half + i];
      out[a] = x[a] * cos - x[b] * sin;
      out[b] = x[a] * sin + x[b] * cos;
    }
  }
  return out;
}

function splitHeads(x: Float64Array, headCount: number, headSize: number): Float64Array[] {
  return Array.from({ length: headCount }, (_, h) => x.slice(h * headSize, (h + 1) * headSize));
}

function dot(a: Float64Array, b: Float64Array): number {
  let sum = 0;
  for (let i = 0; i < a.length; i++) sum += a[i] * b[i];
  return sum;
}

function addInto(x: Float64Array, y: Float64Array): void {
  for (let i = 0; i < x.length; i++) x[i] += y[i];
}
