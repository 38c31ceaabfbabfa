import type { KvDtype } from "../../kv/layer-cache.js";
import { weightSourceOf, type ModelConfig, type ModelWeights, type WeightSource } from "../checkpoints/llama2c-checkpoint.js";
import { memoryWeights } from "./graph-weights.js";
import { OnnxGraph } from "./onnx-graph.js";
import { emitProjection, FLOAT32_PROJECTIONS, projectionTensors } from "./projection-weights.js";
import type { GraphTensor, GraphWeights, ProjectionStorage } from "./weight-layout.js";
import { ropeInverseFrequencies } from "./rope.js";

/**
 * Names of the step graph's inputs and outputs: the contract between the graph
 * and the runner that feeds it.
 *
 * B sequences run side by side (B = 1 for a prefill chunk; a batch of decode steps has S = 1).
 *
 * Inputs: `input_ids`, `position_ids` [B, S] (original positions, never derived
 * from cache length); `causal_mask` [S, S] (additive, among the new tokens);
 * `query_rows` [1] (how many trailing rows of post-RoPE queries to return);
 * `logit_rows` [1] (how many trailing rows get logits: 1 to generate, all to score a prompt);
 * per layer `past_key_l` / `past_value_l` [B, Hkv, 1, C_l, d] (the store's slab,
 * fed without copying, in the store's KV dtype) and `past_mask_l` [B, Hkv, 1, 1, C_l]
 * (additive; hides padding, so sequences, heads and layers may hold different lengths).
 *
 * Outputs: `logits` [B, logit_rows, V]; `new_keys` / `new_values`
 * [L * B, Hkv, S, d] (post-RoPE rows for the store to append, in its KV dtype, layer-major); `queries`
 * [L * B, Hq, R, d] (post-RoPE queries of the last R rows, for attention scorers);
 * per layer `attention_colsum_l` [B, Hkv, C_l + S] (attention probabilities
 * summed over the chunk's rows and each KV head's query group, for H2O).
 */
export const STEP_IO = {
  inputIds: "input_ids",
  positionIds: "position_ids",
  causalMask: "causal_mask",
  queryRows: "query_rows",
  logitRows: "logit_rows",
  pastKey: (layer: number) => `past_key_${layer}`,
  pastValue: (layer: number) => `past_value_${layer}`,
  pastMask: (layer: number) => `past_mask_${layer}`,
  logits: "logits",
  newKeys: "new_keys",
  newValues: "new_values",
  queries: "queries",
  attentionColsum: (layer: number) => `attention_colsum_${layer}`,
  /** Device-resident graphs only (see StepGraphOptions.deviceCache). */
  appendRows: (layer: number) => `append_rows_${layer}`,
  presentKey: (layer: number) => `present_key_${layer}`,
  presentValue: (layer: number) => `present_value_${layer}`,
} as const;

const OPSETS = { "": 23, "com.microsoft": 1 };
const FLOAT = 1;
const FLOAT16 = 10;

export interface StepGraphOptions {
  /** The KV store's element type: past K/V come in and new K/V go out in it; attention runs in float32. */
  kvDtype: KvDtype;
  /**
   * For the WebGPU execution provider: only operators it runs (no com.microsoft FusedMatMul, which
   * would pull the cache back to the host), and the cache stays on the device. Instead of
   * `new_keys`/`new_values` the graph returns per layer `present_key_l`/`present_value_l`
   * [1, Hkv, 1, C, d]: the past slab with the new rows written in (ScatterND) at `append_rows_l`
   * [Hkv * S, 1] (int64: for head h's s-th new row, its flat row h * C + length_h + s of the slab),
   * so the next step reads a slab that never left the device. One sequence per run (B = 1).
   */
  deviceCache?: boolean;
}

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

/** The step graph of a model held in memory, with its weights inside the graph. */
export function buildStepGraphInMemory(weights: ModelWeights, options: StepGraphOptions): Uint8Array {
  return buildLlamaStepGraph(weights.config, memoryWeights(stepGraphTensors(weightSourceOf(weights), FLOAT32_PROJECTIONS), FLOAT32_PROJECTIONS), options);
}

/** Builds the one ONNX graph that serves prefill chunks and decode steps. */
export function buildLlamaStepGraph(config: ModelConfig, weights: GraphWeights, options: StepGraphOptions): Uint8Array {
  const { dim, heads, kvHeads, headSize, vocabSize, hiddenDim, layers } = config;
  const group = heads / kvHeads;
  const kvType = options.kvDtype;
  const g = new OnnxGraph();
  const weight = (name: string) => weights.place(g, name);
  /** x times projection weight `name`, [.., inFeatures] -> [.., outFeatures]. */
  const project = (x: string, name: string, inFeatures: number, outFeatures: number) => emitProjection(g, weights, x, name, inFeatures, outFeatures);

  const inputIds = g.input(STEP_IO.inputIds, "int64", ["B", "S"]);
  const positionIds = g.input(STEP_IO.positionIds, "int64", ["B", "S"]);
  const causalMask = g.input(STEP_IO.causalMask, "float32", ["S", "S"]);
  const queryRows = g.input(STEP_IO.queryRows, "int64", [1]);
  const logitRows = g.input(STEP_IO.logitRows, "int64", [1]);

  const shape = (name: string, dims: number[]) => g.ints(name, dims);
  const axis = (name: string, values: number[]) => g.ints(name, values);

  // Sizes known only at run time.
  const idsShape = g.op("Shape", [inputIds]);
  const seqLen = g.op("Gather", [idsShape, axis("one", [1])], { axis: 0 }); // [S] as a 1-element tensor
  const queryStart = g.op("Sub", [seqLen, queryRows]);
  const int64Max = g.ints("int64_max", [Number.MAX_SAFE_INTEGER]);

  // RoPE at explicit positions: the cos/sin rows of this step's B * S positions are computed once
  // and indexed by row, so any position works (no table limit).
  const angles = g.op("Mul", [
    g.op("Reshape", [g.op("Cast", [positionIds], { to: FLOAT }), shape("pos_column", [-1, 1])]),
    g.floats("inv_freq", [1, headSize / 2], ropeInverseFrequencies(config)),
  ]); // [B * S, d/2]
  const cosRows = g.op("Cos", [angles]);
  const sinRows = g.op("Sin", [angles]);
  const rowIndex = g.op("Reshape", [
    g.op("Range", [g.ints("zero_scalar_src", [0]), g.op("Size", [inputIds]), g.ints("one_scalar_src", [1])].map((t) => g.op("Squeeze", [t]))),
    idsShape,
  ]); // [B, S]: token (b, s) reads row b * S + s of the cos/sin rows
  const interleaved = config.ropeLayout === "interleaved" ? 1 : 0;
  const rope = (x: string, headCount: number): string => {
    const rotated = g.op("RotaryEmbedding", [x, rowIndex, cosRows, sinRows], { interleaved, num_heads: headCount }, undefined, "com.microsoft");
    // [B, S, H*d] -> [B, H, S, d] (a 0 in a Reshape shape keeps that dimension: B)
    return g.op("Transpose", [g.op("Reshape", [rotated, shape(`heads_${g.opCount()}`, [0, -1, headCount, headSize])])], {
      perm: [0, 2, 1, 3],
    });
  };
  const rmsNorm = (x: string, scale: string) => g.op("RMSNormalization", [x, weight(scale)], { axis: -1, epsilon: { float: config.normEps } });
  const toFloat = (x: string) => (kvType === "float16" ? g.op("Cast", [x], { to: FLOAT }) : x);
  const device = options.deviceCache === true;
  // a x b^T x alpha; WebGPU has no FusedMatMul, so there a Transpose, MatMul and Mul.
  const matMulTransB = (a: string, b: string, rank: number, alpha?: number): string => {
    if (!device) return g.op("FusedMatMul", [a, b], alpha === undefined ? { transB: 1 } : { transB: 1, alpha: { float: alpha } }, undefined, "com.microsoft");
    const perm = [...Array.from({ length: rank - 2 }, (_, i) => i), rank - 1, rank - 2];
    const product = g.op("MatMul", [a, g.op("Transpose", [b], { perm })]);
    return alpha === undefined ? product : g.op("Mul", [product, g.floats(`alpha_${g.opCount()}`, [], [alpha])]);
  };

  const embedding = weight(W.embedding);
  let hidden = g.op("Gather", [embedding, inputIds], { axis: 0 });
  const newKeys: string[] = [];
  const newValues: string[] = [];
  const queries: string[] = [];
  const scale = 1 / Math.sqrt(headSize);

  for (let l = 0; l < layers; l++) {
    // Fed as [B, Hkv, 1, C, d]: the group axis is already there for the grouped matmuls.
    const pastKey = g.input(STEP_IO.pastKey(l), kvType, ["B", kvHeads, 1, `C${l}`, headSize]);
    const pastValue = g.input(STEP_IO.pastValue(l), kvType, ["B", kvHeads, 1, `C${l}`, headSize]);
    const pastMask = g.input(STEP_IO.pastMask(l), "float32", ["B", kvHeads, 1, 1, `C${l}`]);

    const x = rmsNorm(hidden, W.attnNorm(l));
    // One MatMul for q, k and v (fewer, larger kernels), split afterwards.
    let qkv = project(x, W.qkv(l), dim, (heads + 2 * kvHeads) * headSize);
    if (weights.has(W.qkvBias(l))) qkv = g.op("Add", [qkv, weight(W.qkvBias(l))]);
    const [qFlat, kFlat, vFlat] = g.opMulti("Split", [qkv, g.ints(`qkv_split_${l}`, [heads * headSize, kvHeads * headSize, kvHeads * headSize])], 3, {
      axis: -1,
    });
    const q = rope(qFlat, heads); // [B, Hq, S, d]
    const k = rope(kFlat, kvHeads); // [B, Hkv, S, d]
    const v = g.op("Transpose", [g.op("Reshape", [vFlat, shape(`v_shape_${l}`, [0, -1, kvHeads, headSize])])], { perm: [0, 2, 1, 3] });
    newKeys.push(k);
    newValues.push(v);
    if (device) appendToDeviceSlabs(g, l, kvType, kvHeads, headSize, pastKey, pastValue, k, v);
    queries.push(g.op("Slice", [q, queryStart, int64Max, axis(`q_axis_${l}`, [2])]));

    // Grouped-query attention without expanding K/V: queries as [B, Hkv, G, S, d].
    const groupedQ = g.op("Reshape", [q, shape(`gq_shape_${l}`, [0, kvHeads, group, -1, headSize])]);
    const unsqueezeGroup = axis(`unsq_${l}`, [2]);
    const new5 = (t: string) => g.op("Unsqueeze", [t, unsqueezeGroup]); // [B, Hkv, 1, S, d]
    // Scores against the cached entries and against the new rows, kept apart so the
    // cache is never concatenated (copied) inside the graph.
    const pastScores = g.op("Add", [matMulTransB(groupedQ, toFloat(pastKey), 5, scale), pastMask]);
    const newScores = g.op("Add", [matMulTransB(groupedQ, new5(k), 5, scale), causalMask]);
    const probs = g.op("Softmax", [g.op("Concat", [pastScores, newScores], { axis: -1 })], { axis: -1 }); // [B, Hkv, G, S, C+S]
    g.output(g.op("ReduceSum", [probs, axis(`colsum_axes_${l}`, [2, 3])], { keepdims: 0 }), STEP_IO.attentionColsum(l), "float32", [
      "B",
      kvHeads,
      `C${l}_plus_S`,
    ]);
    const pastLen = g.op("Gather", [g.op("Shape", [pastKey]), axis(`c_index_${l}`, [3])], { axis: 0 });
    const [pastProbs, newProbs] = g.opMulti("Split", [probs, g.op("Concat", [pastLen, seqLen], { axis: 0 })], 2, { axis: -1 });
    const attended = g.op("Add", [g.op("MatMul", [pastProbs, toFloat(pastValue)]), g.op("MatMul", [newProbs, new5(v)])]); // [B, Hkv, G, S, d]
    const merged = g.op("Reshape", [
      g.op("Transpose", [g.op("Reshape", [attended, shape(`att_heads_${l}`, [0, heads, -1, headSize])])], { perm: [0, 2, 1, 3] }),
      shape(`att_flat_${l}`, [0, -1, heads * headSize]),
    ]);
    let attentionOut = project(merged, W.output(l), heads * headSize, dim);
    if (weights.has(W.outputBias(l))) attentionOut = g.op("Add", [attentionOut, weight(W.outputBias(l))]);
    hidden = g.op("Add", [hidden, attentionOut]);

    const y = rmsNorm(hidden, W.ffnNorm(l));
    const [gate, up] = g.opMulti("Split", [project(y, W.gateUp(l), dim, 2 * hiddenDim)], 2, { axis: -1, num_outputs: 2 });
    const activated = g.op("Mul", [g.op("Mul", [gate, g.op("Sigmoid", [gate])]), up]); // SwiGLU
    hidden = g.op("Add", [hidden, project(activated, W.down(l), hiddenDim, dim)]);
  }

  const lastRows = g.op("Slice", [hidden, g.op("Sub", [seqLen, logitRows]), int64Max, axis("row_axis", [1])]);
  const finalHidden = rmsNorm(lastRows, W.finalNorm);
  const logits =
    weights.projections.dtype === "float32"
      ? matMulTransB(finalHidden, weights.has(W.classifier) ? weight(W.classifier) : embedding, 2)
      : project(finalHidden, W.classifier, dim, vocabSize);
  g.output(logits, STEP_IO.logits, "float32", ["B", "logit_rows", vocabSize]);
  const stackLayers = (values: string[]) => {
    const stacked = g.op("Concat", values, { axis: 0 });
    return kvType === "float16" ? g.op("Cast", [stacked], { to: FLOAT16 }) : stacked;
  };
  if (!device) {
    g.output(stackLayers(newKeys), STEP_IO.newKeys, kvType, ["L_times_B", kvHeads, "S", headSize]);
    g.output(stackLayers(newValues), STEP_IO.newValues, kvType, ["L_times_B", kvHeads, "S", headSize]);
  }
  g.output(g.op("Concat", queries, { axis: 0 }), STEP_IO.queries, "float32", ["L_times_B", heads, "R", headSize]);
  return g.encode(`${config.name}-step`, OPSETS);
}

/** The device-resident graph's per-layer `present_*` outputs: the past slab with the new rows written in. */
function appendToDeviceSlabs(g: OnnxGraph, l: number, kvType: KvDtype, kvHeads: number, headSize: number, pastKey: string, pastValue: string, k: string, v: string): void {
  const targets = g.input(STEP_IO.appendRows(l), "int64", [`N${l}`, 1]);
  const rows = g.ints(`rows_shape_${l}`, [-1, headSize]);
  const slabShape = g.ints(`slab_shape_${l}`, [1, kvHeads, 1, -1, headSize]);
  const toKv = (x: string) => (kvType === "float16" ? g.op("Cast", [x], { to: FLOAT16 }) : x);
  const present = (past: string, fresh: string, name: string) => {
    const written = g.op("ScatterND", [g.op("Reshape", [past, rows]), targets, g.op("Reshape", [toKv(fresh), rows])]);
    g.output(g.op("Reshape", [written, slabShape]), name, kvType, [1, kvHeads, 1, `C${l}`, headSize]);
  };
  present(pastKey, k, STEP_IO.presentKey(l));
  present(pastValue, v, STEP_IO.presentValue(l));
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
