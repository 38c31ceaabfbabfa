import type { KvDtype } from "../../kv/layer-cache.js";
import type { ModelConfig } from "../config/model-config.js";
import { weightSourceOf, type ModelWeights } from "../checkpoints/model-weights.js";
import { memoryWeights } from "./graph-weights.js";
import { OnnxGraph } from "./onnx-graph.js";
import { emitProjection, FLOAT32_PROJECTIONS } from "./projection-weights.js";
import { ropeInverseFrequencies } from "./rope.js";
import { STEP_WEIGHTS as W, stepGraphTensors } from "./step-graph-weights.js";
import { STEP_IO } from "./step-io.js";
import type { GraphWeights } from "./weight-layout.js";

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
  /**
   * Only layers [from, to) (default: all): a stage of the step, so that a session thread can run
   * other steps between a long step's stages (docs/worker-threads.md). A stage after the first takes
   * the residual stream as `hidden_in` [B, S, dim] instead of embedding `input_ids` (still fed: it
   * gives the sizes); a stage before the last returns it as `hidden_out` instead of `logits`. `new_keys`,
   * `new_values` and `queries` stack the stage's layers only.
   */
  stage?: StepStage;
}

/** Layers [from, to) of the model: one stage of a step graph. */
export interface StepStage {
  from: number;
  to: number;
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
  // Placed once each: the embedding may serve as the classifier too.
  const placed = new Map<string, string>();
  const weight = (name: string) => placed.get(name) ?? placed.set(name, weights.place(g, name)).get(name)!;
  /** x times projection weight `name`, [.., inFeatures] -> [.., outFeatures]. */
  const project = (x: string, name: string, inFeatures: number, outFeatures: number) => emitProjection(g, weights, x, name, inFeatures, outFeatures);

  const { from, to } = options.stage ?? { from: 0, to: layers };
  if (!(Number.isInteger(from) && Number.isInteger(to) && 0 <= from && from < to && to <= layers)) {
    throw new Error(`a step graph stage is layers [from, to) of 0..${layers}, not [${from}, ${to})`);
  }
  const first = from === 0;
  const last = to === layers;
  const inputIds = g.input(STEP_IO.inputIds, "int64", ["B", "S"]);
  const positionIds = g.input(STEP_IO.positionIds, "int64", ["B", "S"]);
  const causalMask = g.input(STEP_IO.causalMask, "float32", ["S", "S"]);
  const queryRows = g.input(STEP_IO.queryRows, "int64", [1]);

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

  let hidden = first ? g.op("Gather", [weight(W.embedding), inputIds], { axis: 0 }) : g.input(STEP_IO.hiddenIn, "float32", ["B", "S", dim]);
  const newKeys: string[] = [];
  const newValues: string[] = [];
  const queries: string[] = [];
  const scale = 1 / Math.sqrt(headSize);

  for (let l = from; l < to; l++) {
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

  if (last) {
    const logitRows = g.input(STEP_IO.logitRows, "int64", [1]);
    const lastRows = g.op("Slice", [hidden, g.op("Sub", [seqLen, logitRows]), int64Max, axis("row_axis", [1])]);
    const finalHidden = rmsNorm(lastRows, W.finalNorm);
    const logits =
      weights.projections.dtype === "float32"
        ? matMulTransB(finalHidden, weight(weights.has(W.classifier) ? W.classifier : W.embedding), 2)
        : project(finalHidden, W.classifier, dim, vocabSize);
    g.output(logits, STEP_IO.logits, "float32", ["B", "logit_rows", vocabSize]);
  } else {
    g.output(hidden, STEP_IO.hiddenOut, "float32", ["B", "S", dim]);
  }
  const stackLayers = (values: string[]) => {
    const stacked = g.op("Concat", values, { axis: 0 });
    return kvType === "float16" ? g.op("Cast", [stacked], { to: FLOAT16 }) : stacked;
  };
  if (!device) {
    g.output(stackLayers(newKeys), STEP_IO.newKeys, kvType, ["L_times_B", kvHeads, "S", headSize]);
    g.output(stackLayers(newValues), STEP_IO.newValues, kvType, ["L_times_B", kvHeads, "S", headSize]);
  }
  // In the KV dtype, as the sequence's recent-query ring keeps them: half the bytes out of the step in float16.
  g.output(stackLayers(queries), STEP_IO.queries, kvType, ["L_times_B", heads, "R", headSize]);
  return g.encode(options.stage ? `${config.name}-step-${from}-${to}` : `${config.name}-step`, OPSETS);
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
