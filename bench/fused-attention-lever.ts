/**
 * `make bench-levers`: would fused attention make kvwarden's step faster? The
 * step graph (src/model/graph/llama-step-graph.ts: MatMul/Softmax attention over the store's
 * padded per-head slabs, column sums out) against the same step with
 * com.microsoft GroupQueryAttention: per-head masks as its attention_bias, the
 * slabs as its past, with or without its qk output (the probabilities the
 * column sums need). Same weights and inputs, interleaved rounds; a benchmark, never a test.
 */
import { Command } from "commander";
import { loadavg } from "node:os";
import ort from "onnxruntime-node";
import { CausalMasks } from "../src/model/runners/causal-masks.js";
import { loadLlama2cCheckpoint } from "../src/model/checkpoints/llama2c-checkpoint.js";
import { weightSourceOf, type ModelWeights } from "../src/model/checkpoints/model-weights.js";
import { defaultModelFiles } from "../src/model/default-model.js";
import { memoryWeights } from "../src/model/graph/graph-weights.js";
import { buildStepGraphInMemory } from "../src/model/graph/llama-step-graph.js";
import { STEP_WEIGHTS as W, stepGraphTensors } from "../src/model/graph/step-graph-weights.js";
import { STEP_IO } from "../src/model/graph/step-io.js";
import { FLOAT32_PROJECTIONS } from "../src/model/graph/projection-weights.js";
import { OnnxGraph } from "../src/model/graph/onnx-graph.js";
import { ropeInverseFrequencies } from "../src/model/graph/rope.js";

const options = new Command("fused-attention-lever").option("--quick", "fewer rounds", false).parse().opts();

/**
 * kvwarden's step with GroupQueryAttention, on the step graph's own weights (stories260K: no biases,
 * tied classifier): past slabs [B, Hkv, C, d], a mask per query head [B, Hq, 1, C] joined to the
 * causal mask as attention_bias; `columnSums` adds the qk output.
 */
function buildFusedStep(model: ModelWeights, columnSums: boolean): Uint8Array {
  const config = model.config;
  const { heads, kvHeads, headSize, vocabSize } = config;
  const weights = memoryWeights(stepGraphTensors(weightSourceOf(model), FLOAT32_PROJECTIONS), FLOAT32_PROJECTIONS);
  const g = new OnnxGraph();
  const weight = (name: string) => weights.place(g, name);
  const ids = g.input("input_ids", "int64", ["B", "S"]);
  const positions = g.input("position_ids", "int64", ["B", "S"]);
  const causal = g.input("causal_mask", "float32", ["S", "S"]);
  const seqlensK = g.input("seqlens_k", "int32", ["B"]);
  const total = g.input("total_sequence_length", "int32", []);
  const angles = g.op("Mul", [
    g.op("Reshape", [g.op("Cast", [positions], { to: 1 }), g.ints("pos_column", [-1, 1])]),
    g.floats("inv_freq", [1, headSize / 2], ropeInverseFrequencies(config)),
  ]);
  const cos = g.op("Cos", [angles]);
  const sin = g.op("Sin", [angles]);
  const range = [g.ints("zero", [0]), g.op("Size", [ids]), g.ints("one", [1])].map((t) => g.op("Squeeze", [t]));
  const rowIndex = g.op("Reshape", [g.op("Range", range), g.op("Shape", [ids])]);
  const norm = (x: string, scale: string) => g.op("SimplifiedLayerNormalization", [x, weight(scale)], { axis: -1, epsilon: { float: config.normEps } });
  const causal4 = g.op("Unsqueeze", [causal, g.ints("axes_01", [0, 1])]); // [1, 1, S, S]
  const embedding = weight(W.embedding);
  let hidden = g.op("Gather", [embedding, ids], { axis: 0 });
  const newKeys: string[] = [];
  const newValues: string[] = [];
  for (let l = 0; l < config.layers; l++) {
    const pastKey = g.input(`past_key_${l}`, "float32", ["B", kvHeads, `C${l}`, headSize]);
    const pastValue = g.input(`past_value_${l}`, "float32", ["B", kvHeads, `C${l}`, headSize]);
    const pastMask = g.input(`past_mask_${l}`, "float32", ["B", heads, 1, `C${l}`]);
    const x = norm(hidden, W.attnNorm(l));
    const qkv = g.op("MatMul", [x, weight(W.qkv(l))]);
    const [qFlat, kFlat, vFlat] = g.opMulti("Split", [qkv, g.ints(`split_${l}`, [heads * headSize, kvHeads * headSize, kvHeads * headSize])], 3, { axis: -1 });
    const rotate = (t: string, n: number) => g.op("RotaryEmbedding", [t, rowIndex, cos, sin], { interleaved: 1, num_heads: n }, undefined, "com.microsoft");
    const q = rotate(qFlat, heads);
    const k = rotate(kFlat, kvHeads);
    newKeys.push(k);
    newValues.push(vFlat);
    // attention_bias [B, Hq, S, C + S]: the past mask on every row, then the causal mask.
    const rows = g.op("Slice", [g.op("Shape", [causal4]), g.ints(`at2_${l}`, [2]), g.ints(`at3_${l}`, [3])]);
    const pastRows = g.op("Expand", [pastMask, g.op("Concat", [g.ints(`b1_${l}`, [1, 1]), rows, g.ints(`b1c_${l}`, [1])], { axis: 0 })]);
    const causalRows = g.op("Expand", [causal4, g.op("Concat", [g.op("Slice", [g.op("Shape", [pastMask]), g.ints(`s0_${l}`, [0]), g.ints(`s2_${l}`, [2])]), rows, rows], { axis: 0 })]);
    const bias = g.op("Concat", [pastRows, causalRows], { axis: -1 });
    const outs = g.opMulti(
      "GroupQueryAttention",
      [q, k, vFlat, pastKey, pastValue, seqlensK, total, "", "", "", bias],
      columnSums ? 4 : 3,
      { num_heads: heads, kv_num_heads: kvHeads, ...(columnSums ? { qk_output: 2 } : {}) },
      undefined,
      "com.microsoft",
    );
    if (columnSums) {
      const summedRows = g.op("ReduceSum", [outs[3], g.ints(`rows_axis_${l}`, [2])], { keepdims: 0 }); // [B, Hq, T]
      const grouped = g.op("Reshape", [summedRows, g.ints(`groups_${l}`, [0, kvHeads, heads / kvHeads, -1])]);
      g.output(g.op("ReduceSum", [grouped, g.ints(`group_axis_${l}`, [2])], { keepdims: 0 }), `colsum_${l}`, "float32", ["B", kvHeads, "T"]);
    }
    hidden = g.op("Add", [hidden, g.op("MatMul", [outs[0], weight(W.output(l))])]);
    const y = norm(hidden, W.ffnNorm(l));
    const [gate, up] = g.opMulti("Split", [g.op("MatMul", [y, weight(W.gateUp(l))])], 2, { axis: -1, num_outputs: 2 });
    const activated = g.op("Mul", [g.op("Mul", [gate, g.op("Sigmoid", [gate])]), up]);
    hidden = g.op("Add", [hidden, g.op("MatMul", [activated, weight(W.down(l))])]);
  }
  const lastRow = g.op("Slice", [hidden, g.ints("minus_one", [-1]), g.ints("int64_max", [Number.MAX_SAFE_INTEGER]), g.ints("row_axis", [1])]);
  const classifier = weights.has(W.classifier) ? weight(W.classifier) : embedding;
  const logits = g.op("FusedMatMul", [norm(lastRow, W.finalNorm), classifier], { transB: 1 }, undefined, "com.microsoft");
  g.output(logits, "logits", "float32", ["B", 1, vocabSize]);
  g.output(g.op("Concat", newKeys, { axis: 0 }), "new_keys", "float32", ["L_times_B", "S", kvHeads * headSize]);
  g.output(g.op("Concat", newValues, { axis: 0 }), "new_values", "float32", ["L_times_B", "S", kvHeads * headSize]);
  return g.encode("fused-step", { "": 23, "com.microsoft": 1 });
}

interface Case {
  name: string;
  batch: number;
  tokens: number;
  cached: number;
}

/** Both graphs' feeds for one case: the same random cache, each head's last few slots masked as padding. */
function feedsFor(weights: ModelWeights, { batch, tokens, cached }: Case): { step: Record<string, ort.Tensor>; fused: Record<string, ort.Tensor> } {
  const { layers, heads, kvHeads, headSize } = weights.config;
  const group = heads / kvHeads;
  const int64 = (f: (i: number) => number) => new ort.Tensor("int64", BigInt64Array.from({ length: batch * tokens }, (_, i) => BigInt(f(i))), [batch, tokens]);
  const common = {
    input_ids: int64((i) => 3 + ((i * 7919) % 500)),
    position_ids: int64((i) => cached + (i % tokens)),
    causal_mask: new CausalMasks().of(tokens),
  };
  const step: Record<string, ort.Tensor> = {
    ...common,
    [STEP_IO.queryRows]: new ort.Tensor("int64", BigInt64Array.of(BigInt(Math.min(tokens, 32))), [1]),
    [STEP_IO.logitRows]: new ort.Tensor("int64", BigInt64Array.of(1n), [1]),
  };
  const fused: Record<string, ort.Tensor> = {
    ...common,
    seqlens_k: new ort.Tensor("int32", new Int32Array(batch).fill(cached + tokens - 1), [batch]),
    total_sequence_length: new ort.Tensor("int32", Int32Array.of(cached + tokens), []),
  };
  for (let l = 0; l < layers; l++) {
    const random = () => Float32Array.from({ length: batch * kvHeads * cached * headSize }, () => Math.random() - 0.5);
    const [keys, values] = [random(), random()];
    const mask = new Float32Array(batch * kvHeads * cached);
    for (let row = 0; row < batch * kvHeads; row++) mask.fill(-Infinity, row * cached + Math.max(1, cached - 1 - (row % 4)), (row + 1) * cached);
    const queryMask = new Float32Array(batch * heads * cached);
    for (let row = 0; row < batch * heads; row++) queryMask.set(mask.subarray(Math.floor(row / group) * cached, Math.floor(row / group + 1) * cached), row * cached);
    step[STEP_IO.pastKey(l)] = new ort.Tensor("float32", keys, [batch, kvHeads, 1, cached, headSize]);
    step[STEP_IO.pastValue(l)] = new ort.Tensor("float32", values, [batch, kvHeads, 1, cached, headSize]);
    step[STEP_IO.pastMask(l)] = new ort.Tensor("float32", mask, [batch, kvHeads, 1, 1, cached]);
    fused[`past_key_${l}`] = new ort.Tensor("float32", keys, [batch, kvHeads, cached, headSize]);
    fused[`past_value_${l}`] = new ort.Tensor("float32", values, [batch, kvHeads, cached, headSize]);
    fused[`past_mask_${l}`] = new ort.Tensor("float32", queryMask, [batch, heads, 1, cached]);
  }
  return { step, fused };
}

const weights = loadLlama2cCheckpoint((await defaultModelFiles()).modelPath, "stories260K");
const sessionOptions: ort.InferenceSession.SessionOptions = { intraOpNumThreads: 1, graphOptimizationLevel: "all", logSeverityLevel: 3 };
const stepGraph = await ort.InferenceSession.create(buildStepGraphInMemory(weights, { kvDtype: "float32" }), sessionOptions);
const fusedGraphs = {
  "without column sums": await ort.InferenceSession.create(buildFusedStep(weights, false), sessionOptions),
  "with column sums (qk output)": await ort.InferenceSession.create(buildFusedStep(weights, true), sessionOptions),
};
const cases: Case[] = [
  { name: "decode, 128 cached", batch: 1, tokens: 1, cached: 128 },
  { name: "decode, 1024 cached", batch: 1, tokens: 1, cached: 1024 },
  { name: "decode batch of 8, 128 cached", batch: 8, tokens: 1, cached: 128 },
  { name: "prefill chunk of 256", batch: 1, tokens: 256, cached: 1 },
];
const rounds = options.quick ? 3 : 9;
const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
const msPerRun = async (session: ort.InferenceSession, feeds: Record<string, ort.Tensor>, runs: number) => {
  const start = performance.now();
  for (let i = 0; i < runs; i++) await session.run(feeds);
  return (performance.now() - start) / runs;
};

console.log(`Command: \`node dist/bench/fused-attention-lever.js${options.quick ? " --quick" : ""}\` (\`make bench-levers\`); 1 intra-op thread, ${rounds} interleaved rounds, medians.`);
console.log();
console.log("| case | fused variant | step graph ms | GQA ms | speed-up | max logit difference |");
console.log("|---|---|---|---|---|---|");
for (const c of cases) {
  const feeds = feedsFor(weights, c);
  const runs = c.tokens > 1 ? 20 : 200;
  for (const [variant, fused] of Object.entries(fusedGraphs)) {
    const [expected, actual] = [await stepGraph.run(feeds.step), await fused.run(feeds.fused)];
    const a = expected.logits.data as Float32Array;
    const b = actual.logits.data as Float32Array;
    const difference = a.reduce((max, v, i) => Math.max(max, Math.abs(v - b[i])), 0);
    const stepMs: number[] = [];
    const fusedMs: number[] = [];
    for (let round = 0; round < rounds; round++) {
      stepMs.push(await msPerRun(stepGraph, feeds.step, runs));
      fusedMs.push(await msPerRun(fused, feeds.fused, runs));
    }
    const speedUp = median(stepMs.map((ms, i) => ms / fusedMs[i]));
    console.log(`| ${c.name} | ${variant} | ${median(stepMs).toFixed(3)} | ${median(fusedMs).toFixed(3)} | ${speedUp.toFixed(2)}x | ${difference.toExponential(1)} |`);
  }
}
console.log();
console.log(`Load average at the end: ${loadavg().map((l) => l.toFixed(2)).join(" ")}.`);
await stepGraph.release();
for (const session of Object.values(fusedGraphs)) await session.release();
