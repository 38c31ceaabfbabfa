/**
 * The benchmark's yardstick: a lean onnxruntime graph of the same model with
 * the fused ops (GroupQueryAttention, RotaryEmbedding, SimplifiedLayerNormalization),
 * outputting only logits and present K/V, driven by a bare loop that feeds
 * present back as past. It has no eviction, masks or statistics: it is what a
 * plain onnxruntime runner costs, the reference point kvwarden is measured against.
 * The same decoder body, behind Optimum's input and output names, is what
 * transformers.js runs in the comparison (bench/transformers-js.ts).
 */
import ort from "onnxruntime-node";
import type { ModelWeights } from "../src/model/checkpoints/model-weights.js";
import { OnnxGraph } from "../src/model/graph/onnx-graph.js";

function transpose(matrix: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = matrix[r * cols + c];
  return out;
}

/** Graph values the fused decoder body reads: token ids and positions [B, S], GQA's lengths, and each layer's past. */
export interface FusedDecoderInputs {
  inputIds: string;
  positionIds: string;
  /** int32 [B]: cached plus new tokens, minus one, per sequence. */
  seqlensK: string;
  /** int32 scalar: cached plus new tokens. */
  totalLength: string;
  pastKey: (layer: number) => string;
  pastValue: (layer: number) => string;
}

/** Graph values the body produces; the caller exposes them as outputs under its own names. */
export interface FusedDecoderOutputs {
  logits: string;
  presentKey: string[];
  presentValue: string[];
}

/**
 * Adds the decoder body to `g`: embedding, per layer SimplifiedLayerNormalization,
 * Q/K/V MatMuls, RotaryEmbedding (interleaved, llama2.c's layout) at explicit
 * positions, GroupQueryAttention over past and new K/V, SwiGLU, and the tied head.
 */
export function addFusedDecoder(g: OnnxGraph, weights: ModelWeights, maxPositions: number, inputs: FusedDecoderInputs): FusedDecoderOutputs {
  const { config } = weights;
  const { dim, heads, kvHeads, headSize, vocabSize, hiddenDim } = config;
  const angles = Array.from({ length: maxPositions * (headSize / 2) }, (_, n) => {
    const position = Math.floor(n / (headSize / 2));
    const i = n % (headSize / 2);
    return position / Math.pow(config.ropeTheta, (2 * i) / headSize);
  });
  const cosCache = g.floats("cos_cache", [maxPositions, headSize / 2], angles.map(Math.cos));
  const sinCache = g.floats("sin_cache", [maxPositions, headSize / 2], angles.map(Math.sin));
  const norm = (x: string, scale: Float32Array, name: string) =>
    g.op("SimplifiedLayerNormalization", [x, g.floats(name, [dim], scale)], { axis: -1, epsilon: { float: config.normEps } });
  const matmul = (x: string, w: Float32Array, rows: number, cols: number, name: string) => g.op("MatMul", [x, g.floats(name, [cols, rows], transpose(w, rows, cols))]);
  const presentKey: string[] = [];
  const presentValue: string[] = [];
  let hidden = g.op("Gather", [g.floats("embedding", [vocabSize, dim], weights.embedding), inputs.inputIds], { axis: 0 });
  weights.layers.forEach((w, l) => {
    const x = norm(hidden, w.attnNorm, `attn_norm_${l}`);
    const rotate = (t: string, n: number) =>
      g.op("RotaryEmbedding", [t, inputs.positionIds, cosCache, sinCache], { interleaved: 1, num_heads: n }, undefined, "com.microsoft");
    const q = rotate(matmul(x, w.wq, heads * headSize, dim, `wq_${l}`), heads);
    const k = rotate(matmul(x, w.wk, kvHeads * headSize, dim, `wk_${l}`), kvHeads);
    const v = matmul(x, w.wv, kvHeads * headSize, dim, `wv_${l}`);
    const [attended, key, value] = g.opMulti(
      "GroupQueryAttention",
      [q, k, v, inputs.pastKey(l), inputs.pastValue(l), inputs.seqlensK, inputs.totalLength],
      3,
      { num_heads: heads, kv_num_heads: kvHeads },
      [`attended_${l}`, `present_key_${l}`, `present_value_${l}`],
      "com.microsoft",
    );
    presentKey.push(key);
    presentValue.push(value);
    hidden = g.op("Add", [hidden, matmul(attended, w.wo, dim, heads * headSize, `wo_${l}`)]);
    const y = norm(hidden, w.ffnNorm, `ffn_norm_${l}`);
    const gate = matmul(y, w.w1, hiddenDim, dim, `w1_${l}`);
    const up = matmul(y, w.w3, hiddenDim, dim, `w3_${l}`);
    hidden = g.op("Add", [hidden, matmul(g.op("Mul", [g.op("Mul", [gate, g.op("Sigmoid", [gate])]), up]), w.w2, dim, hiddenDim, `w2_${l}`)]);
  });
  const logits = matmul(norm(hidden, weights.finalNorm, "final_norm"), weights.classifier, vocabSize, dim, "classifier");
  return { logits, presentKey, presentValue };
}

/** Opsets the fused decoder needs. */
export const FUSED_DECODER_OPSETS = { "": 17, "com.microsoft": 1 };

/** The lean graph: GQA's lengths are graph inputs the loop computes, past/present named per layer. */
export function buildLeanGraph(weights: ModelWeights, maxPositions: number): Uint8Array {
  const { layers, kvHeads, headSize, vocabSize } = weights.config;
  const g = new OnnxGraph();
  const inputIds = g.input("input_ids", "int64", [1, "S"]);
  const positionIds = g.input("position_ids", "int64", [1, "S"]);
  const seqlensK = g.input("seqlens_k", "int32", [1]);
  const totalLength = g.input("total_sequence_length", "int32", []);
  const past = Array.from({ length: layers }, (_, l) => ({
    key: g.input(`past_key_${l}`, "float32", [1, kvHeads, "P", headSize]),
    value: g.input(`past_value_${l}`, "float32", [1, kvHeads, "P", headSize]),
  }));
  const out = addFusedDecoder(g, weights, maxPositions, {
    inputIds,
    positionIds,
    seqlensK,
    totalLength,
    pastKey: (l) => past[l].key,
    pastValue: (l) => past[l].value,
  });
  for (let l = 0; l < layers; l++) {
    g.output(out.presentKey[l], `present_key_out_${l}`, "float32", [1, kvHeads, "T", headSize]);
    g.output(out.presentValue[l], `present_value_out_${l}`, "float32", [1, kvHeads, "T", headSize]);
  }
  g.output(out.logits, "logits", "float32", [1, "S", vocabSize]);
  return g.encode("lean", FUSED_DECODER_OPSETS);
}

/** Greedy decoding from BOS with the lean graph: the bare loop. Returns the tokens and ms per step. */
export async function leanGreedy(session: ort.InferenceSession, weights: ModelWeights, steps: number): Promise<{ tokens: number[]; msPerStep: number }> {
  const { layers, kvHeads, headSize } = weights.config;
  let past: Record<string, ort.Tensor> = {};
  for (let l = 0; l < layers; l++) {
    past[`past_key_${l}`] = new ort.Tensor("float32", new Float32Array(0), [1, kvHeads, 0, headSize]);
    past[`past_value_${l}`] = new ort.Tensor("float32", new Float32Array(0), [1, kvHeads, 0, headSize]);
  }
  let token = 1;
  const tokens: number[] = [];
  const start = performance.now();
  for (let position = 0; position < steps; position++) {
    const out = await session.run({
      input_ids: new ort.Tensor("int64", BigInt64Array.of(BigInt(token)), [1, 1]),
      position_ids: new ort.Tensor("int64", BigInt64Array.of(BigInt(position)), [1, 1]),
      seqlens_k: new ort.Tensor("int32", Int32Array.of(position), [1]),
      total_sequence_length: new ort.Tensor("int32", Int32Array.of(position + 1), []),
      ...past,
    });
    const logits = out.logits.data as Float32Array;
    token = 0;
    for (let i = 1; i < logits.length; i++) if (logits[i] > logits[token]) token = i;
    tokens.push(token);
    past = {};
    for (let l = 0; l < layers; l++) {
      past[`past_key_${l}`] = out[`present_key_out_${l}`];
      past[`past_value_${l}`] = out[`present_value_out_${l}`];
    }
  }
  return { tokens, msPerStep: (performance.now() - start) / steps };
}
