import type { ModelWeights } from "./checkpoint.js";
import { OnnxGraph } from "./onnx-graph.js";

/**
 * Names of the step graph's inputs and outputs: the contract between the graph
 * and the runner that feeds it.
 *
 * Inputs: `input_ids`, `position_ids` [1, S] (original positions, never derived
 * from cache length); `causal_mask` [S, S] (additive, among the new tokens);
 * `query_rows` [1] (how many trailing rows of post-RoPE queries to return);
 * `logit_rows` [1] (how many trailing rows get logits: 1 to generate, all to score a prompt);
 * per layer `past_key_l` / `past_value_l` [1, Hkv, 1, C_l, d] (the store's slab,
 * fed without copying) and `past_mask_l` [1, Hkv, 1, 1, C_l] (additive; hides
 * padding, so heads and layers may hold different lengths).
 *
 * Outputs: `logits` [1, logit_rows, V]; `new_keys` / `new_values`
 * [L, Hkv, S, d] (post-RoPE rows for the store to append); `queries`
 * [L, Hq, R, d] (post-RoPE queries of the last R rows, for attention scorers);
 * per layer `attention_colsum_l` [1, Hkv, C_l + S] (attention probabilities
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
} as const;

const OPSETS = { "": 23, "com.microsoft": 1 };

/** Builds the one ONNX graph that serves prefill chunks and decode steps. */
export function buildLlamaStepGraph(weights: ModelWeights): Uint8Array {
  const { config } = weights;
  const { dim, heads, kvHeads, headSize, vocabSize, hiddenDim, layers } = config;
  const group = heads / kvHeads;
  const g = new OnnxGraph();

  const inputIds = g.input(STEP_IO.inputIds, "int64", [1, "S"]);
  const positionIds = g.input(STEP_IO.positionIds, "int64", [1, "S"]);
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

  // RoPE (llama2.c layout: interleaved pairs) at explicit positions: the cos/sin rows of this
  // step's S positions are computed once and indexed by row, so any position works (no table limit).
  const inverseFrequency = Float32Array.from({ length: headSize / 2 }, (_, i) => 1 / Math.pow(config.ropeTheta, (2 * i) / headSize));
  const angles = g.op("Mul", [
    g.op("Reshape", [g.op("Cast", [positionIds], { to: 1 }), shape("pos_column", [-1, 1])]),
    g.floats("inv_freq", [1, headSize / 2], inverseFrequency),
  ]); // [S, d/2]
  const cosRows = g.op("Cos", [angles]);
  const sinRows = g.op("Sin", [angles]);
  const rowIndex = g.op("Unsqueeze", [
    g.op("Range", [g.ints("zero_scalar_src", [0]), seqLen, g.ints("one_scalar_src", [1])].map((t) => g.op("Squeeze", [t]))),
    axis("row_index_axis", [0]),
  ]); // [1, S]: row s of the cos/sin rows
  const rope = (x: string, headCount: number): string => {
    const rotated = g.op("RotaryEmbedding", [x, rowIndex, cosRows, sinRows], { interleaved: 1, num_heads: headCount }, undefined, "com.microsoft");
    // [1, S, H*d] -> [1, H, S, d]
    return g.op("Transpose", [g.op("Reshape", [rotated, shape(`heads_${g.opCount()}`, [1, -1, headCount, headSize])])], {
      perm: [0, 2, 1, 3],
    });
  };

  const transposed = (name: string, matrix: Float32Array, rows: number, cols: number) =>
    g.floats(name, [cols, rows], transpose(matrix, rows, cols));
  const rmsNorm = (x: string, scale: Float32Array, name: string) =>
    g.op("RMSNormalization", [x, g.floats(name, [dim], scale)], { axis: -1, epsilon: { float: config.normEps } });

  let hidden = g.op("Gather", [g.floats("embedding", [vocabSize, dim], weights.embedding), inputIds], { axis: 0 });
  const newKeys: string[] = [];
  const newValues: string[] = [];
  const queries: string[] = [];
  const scale = { float: 1 / Math.sqrt(headSize) };

  weights.layers.forEach((w, l) => {
    // Fed as [1, Hkv, 1, C, d]: the group axis is already there for the grouped matmuls.
    const pastKey = g.input(STEP_IO.pastKey(l), "float32", [1, kvHeads, 1, `C${l}`, headSize]);
    const pastValue = g.input(STEP_IO.pastValue(l), "float32", [1, kvHeads, 1, `C${l}`, headSize]);
    const pastMask = g.input(STEP_IO.pastMask(l), "float32", [1, kvHeads, 1, 1, `C${l}`]);

    const x = rmsNorm(hidden, w.attnNorm, `attn_norm_${l}`);
    // One MatMul for q, k and v (fewer, larger kernels), split afterwards.
    const qkvWeights = concatRows([w.wq, w.wk, w.wv]);
    const qkvWidth = (heads + 2 * kvHeads) * headSize;
    const [qFlat, kFlat, vFlat] = g.opMulti(
      "Split",
      [g.op("MatMul", [x, transposed(`wqkv_${l}`, qkvWeights, qkvWidth, dim)]), g.ints(`qkv_split_${l}`, [heads * headSize, kvHeads * headSize, kvHeads * headSize])],
      3,
      { axis: -1 },
    );
    const q = rope(qFlat, heads); // [1, Hq, S, d]
    const k = rope(kFlat, kvHeads); // [1, Hkv, S, d]
    const v = g.op("Transpose", [g.op("Reshape", [vFlat, shape(`v_shape_${l}`, [1, -1, kvHeads, headSize])])], { perm: [0, 2, 1, 3] });
    newKeys.push(k);
    newValues.push(v);
    queries.push(g.op("Slice", [q, queryStart, int64Max, axis(`q_axis_${l}`, [2])]));

    // Grouped-query attention without expanding K/V: queries as [1, Hkv, G, S, d].
    const groupedQ = g.op("Reshape", [q, shape(`gq_shape_${l}`, [1, kvHeads, group, -1, headSize])]);
    const unsqueezeGroup = axis(`unsq_${l}`, [2]);
    const new5 = (t: string) => g.op("Unsqueeze", [t, unsqueezeGroup]); // [1, Hkv, 1, S, d]
    // Scores against the cached entries and against the new rows, kept apart so the
    // cache is never concatenated (copied) inside the graph.
    const pastScores = g.op("Add", [
      g.op("FusedMatMul", [groupedQ, pastKey], { transB: 1, alpha: scale }, undefined, "com.microsoft"),
      pastMask,
    ]);
    const newScores = g.op("Add", [
      g.op("FusedMatMul", [groupedQ, new5(k)], { transB: 1, alpha: scale }, undefined, "com.microsoft"),
      causalMask,
    ]);
    const probs = g.op("Softmax", [g.op("Concat", [pastScores, newScores], { axis: -1 })], { axis: -1 }); // [1, Hkv, G, S, C+S]
    g.output(g.op("ReduceSum", [probs, axis(`colsum_axes_${l}`, [2, 3])], { keepdims: 0 }), STEP_IO.attentionColsum(l), "float32", [
      1,
      kvHeads,
      `C${l}_plus_S`,
    ]);
    const pastLen = g.op("Gather", [g.op("Shape", [pastKey]), axis(`c_index_${l}`, [3])], { axis: 0 });
    const [pastProbs, newProbs] = g.opMulti("Split", [probs, g.op("Concat", [pastLen, seqLen], { axis: 0 })], 2, { axis: -1 });
    const attended = g.op("Add", [g.op("MatMul", [pastProbs, pastValue]), g.op("MatMul", [newProbs, new5(v)])]); // [1, Hkv, G, S, d]
    const merged = g.op("Reshape", [
      g.op("Transpose", [g.op("Reshape", [attended, shape(`att_heads_${l}`, [1, heads, -1, headSize])])], { perm: [0, 2, 1, 3] }),
      shape(`att_flat_${l}`, [1, -1, heads * headSize]),
    ]);
    hidden = g.op("Add", [hidden, g.op("MatMul", [merged, transposed(`wo_${l}`, w.wo, dim, heads * headSize)])]);

    const y = rmsNorm(hidden, w.ffnNorm, `ffn_norm_${l}`);
    const [gate, up] = g.opMulti("Split", [g.op("MatMul", [y, transposed(`w13_${l}`, concatRows([w.w1, w.w3]), 2 * hiddenDim, dim)])], 2, {
      axis: -1,
      num_outputs: 2,
    });
    const activated = g.op("Mul", [g.op("Mul", [gate, g.op("Sigmoid", [gate])]), up]); // SwiGLU
    hidden = g.op("Add", [hidden, g.op("MatMul", [activated, transposed(`w2_${l}`, w.w2, dim, hiddenDim)])]);
  });

  const lastRows = g.op("Slice", [hidden, g.op("Sub", [seqLen, logitRows]), int64Max, axis("row_axis", [1])]);
  const logits = g.op("MatMul", [rmsNorm(lastRows, weights.finalNorm, "final_norm"), transposed("classifier", weights.classifier, vocabSize, dim)]);
  g.output(logits, STEP_IO.logits, "float32", [1, "logit_rows", vocabSize]);
  const stackLayers = (values: string[]) => g.op("Concat", values, { axis: 0 });
  g.output(stackLayers(newKeys), STEP_IO.newKeys, "float32", [layers, kvHeads, "S", headSize]);
  g.output(stackLayers(newValues), STEP_IO.newValues, "float32", [layers, kvHeads, "S", headSize]);
  g.output(stackLayers(queries), STEP_IO.queries, "float32", [layers, heads, "R", headSize]);
  return g.encode(`${config.name}-step`, OPSETS);
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

/** [rows, cols] row-major -> [cols, rows] row-major. */
function transpose(matrix: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = matrix[r * cols + c];
  return out;
}
