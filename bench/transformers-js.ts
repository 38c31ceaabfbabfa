/**
 * transformers.js (`@huggingface/transformers`) on the same weights, for the
 * benchmark's comparison: stories260K exported into the folder layout it loads
 * offline (config.json, generation_config.json, tokenizer files, and
 * onnx/model.onnx with Optimum's decoder inputs and outputs), then greedy
 * `generate()` from BOS timed per token.
 *
 * The ONNX graph is the lean graph's decoder body (bench/lean-graph.ts: fused
 * GroupQueryAttention, RotaryEmbedding, SimplifiedLayerNormalization) behind
 * Optimum's names: input_ids, attention_mask, position_ids and
 * past_key_values.{i}.key/value in; logits and present.{i}.key/value out.
 * GroupQueryAttention's seqlens_k and total_sequence_length are derived from
 * attention_mask inside the graph, as Optimum's GQA exports do, so the
 * transformers.js loop and the bare loop run the same operators.
 */
import { AutoModelForCausalLM, AutoTokenizer, env, Tensor, type PreTrainedModel } from "@huggingface/transformers";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import type { ModelWeights } from "../src/model/checkpoints/model-weights.js";
import { OnnxGraph } from "../src/model/graph/onnx-graph.js";
import { llama2cAsHfConfig, llama2cTokenizerJson, writeTokenizer } from "../test/model/hf-fixtures.js";
import { addFusedDecoder, FUSED_DECODER_OPSETS } from "./lean-graph.js";

/** The installed transformers.js version, for the report. */
export const transformersJsVersion = env.version;

const INT32 = 6; // onnx TensorProto.DataType.INT32, for Cast

/** The fused decoder with Optimum's decoder-only input and output names (batch 1 in practice). */
export function buildOptimumDecoderGraph(weights: ModelWeights, maxPositions: number): Uint8Array {
  const { layers, kvHeads, headSize, vocabSize } = weights.config;
  const g = new OnnxGraph();
  const inputIds = g.input("input_ids", "int64", ["batch_size", "sequence_length"]);
  const attentionMask = g.input("attention_mask", "int64", ["batch_size", "total_sequence_length"]);
  const positionIds = g.input("position_ids", "int64", ["batch_size", "sequence_length"]);
  for (let l = 0; l < layers; l++) {
    g.input(`past_key_values.${l}.key`, "float32", ["batch_size", kvHeads, "past_sequence_length", headSize]);
    g.input(`past_key_values.${l}.value`, "float32", ["batch_size", kvHeads, "past_sequence_length", headSize]);
  }
  // seqlens_k = sum(attention_mask, axis 1) - 1; total_sequence_length = attention_mask.shape[1].
  const summed = g.op("ReduceSum", [attentionMask, g.ints("mask_sum_axes", [1])], { keepdims: 0 });
  const seqlensK = g.op("Cast", [g.op("Sub", [summed, g.ints("one", [1])])], { to: INT32 });
  const totalLength = g.op("Cast", [g.op("Squeeze", [g.op("Shape", [attentionMask], { start: 1, end: 2 })])], { to: INT32 });
  const out = addFusedDecoder(g, weights, maxPositions, {
    inputIds,
    positionIds,
    seqlensK,
    totalLength,
    pastKey: (l) => `past_key_values.${l}.key`,
    pastValue: (l) => `past_key_values.${l}.value`,
  });
  g.output(out.logits, "logits", "float32", ["batch_size", "sequence_length", vocabSize]);
  for (let l = 0; l < layers; l++) {
    g.output(out.presentKey[l], `present.${l}.key`, "float32", ["batch_size", kvHeads, "total_sequence_length", headSize]);
    g.output(out.presentValue[l], `present.${l}.value`, "float32", ["batch_size", kvHeads, "total_sequence_length", headSize]);
  }
  return g.encode("stories260K-optimum", FUSED_DECODER_OPSETS);
}

/**
 * Writes the model folder transformers.js loads with `env.localModelPath` =
 * dirname(dir) and model id basename(dir): config, generation config, the
 * tok512 tokenizer as tokenizer.json (the same conversion the Hugging Face
 * checkpoint tests use), and onnx/model.onnx (fp32, no suffix).
 */
export function exportForTransformersJs(weights: ModelWeights, tokenizerPath: string, dir: string): void {
  const { config } = weights;
  mkdirSync(join(dir, "onnx"), { recursive: true });
  const hfConfig = { ...llama2cAsHfConfig(config), head_dim: config.headSize, "transformers.js_config": { dtype: "fp32" } };
  writeFileSync(join(dir, "config.json"), JSON.stringify(hfConfig, null, 2));
  writeTokenizer(
    dir,
    llama2cTokenizerJson(tokenizerPath, config.vocabSize),
    { tokenizer_class: "LlamaTokenizer", bos_token: "<s>", eos_token: "</s>", unk_token: "<unk>", add_bos_token: true, add_eos_token: false, model_max_length: config.contextLength },
    { bos_token_id: 1, eos_token_id: 2 },
  );
  writeFileSync(join(dir, "onnx", "model.onnx"), buildOptimumDecoderGraph(weights, config.contextLength));
}

export interface TransformersJsModel {
  model: PreTrainedModel;
  /** Decodes token ids to text with the exported tokenizer.json (checks that it loads). */
  decode(ids: number[]): string;
  /** Removes the exported folder. */
  release(): Promise<void>;
}

/**
 * Exports the weights into a temporary folder and loads them with
 * transformers.js, offline, on the CPU execution provider with `threads`
 * intra-op threads (onnxruntime-node, the same native library kvwarden uses).
 */
export async function loadTransformersJs(weights: ModelWeights, tokenizerPath: string, threads: number): Promise<TransformersJsModel> {
  const root = mkdtempSync(join(tmpdir(), "kvwarden-transformers-js-"));
  const dir = join(root, "stories260K");
  exportForTransformersJs(weights, tokenizerPath, dir);
  env.allowRemoteModels = false;
  env.allowLocalModels = true;
  env.useFSCache = false;
  env.localModelPath = dirname(dir);
  const options = { local_files_only: true } as const;
  const [model, tokenizer] = await Promise.all([
    AutoModelForCausalLM.from_pretrained(basename(dir), {
      ...options,
      device: "cpu",
      dtype: "fp32",
      session_options: { intraOpNumThreads: threads, interOpNumThreads: 1, executionMode: "sequential", graphOptimizationLevel: "all", logSeverityLevel: 3 },
    }),
    AutoTokenizer.from_pretrained(basename(dir), options),
  ]);
  return {
    model,
    decode: (ids) => tokenizer.decode(ids, { skip_special_tokens: false }),
    release: async () => {
      await model.dispose();
      rmSync(root, { recursive: true, force: true });
    },
  };
}

/**
 * Greedy `generate()` of `tokens` new tokens from BOS (min_new_tokens keeps it
 * from stopping at EOS, as kvwarden's benchmark ignores EOS). Returns the new
 * tokens and milliseconds per token of the whole call.
 */
export async function transformersJsGreedy(model: PreTrainedModel, tokens: number): Promise<{ tokens: number[]; msPerToken: number }> {
  const start = performance.now();
  const output = (await model.generate({
    inputs: new Tensor("int64", BigInt64Array.of(1n), [1, 1]),
    max_new_tokens: tokens,
    min_new_tokens: tokens,
    do_sample: false,
  })) as Tensor;
  const msPerToken = (performance.now() - start) / tokens;
  const ids = Array.from(output.data as BigInt64Array, Number).slice(1);
  if (ids.length !== tokens) throw new Error(`transformers.js generated ${ids.length} tokens, expected ${tokens}`);
  return { tokens: ids, msPerToken };
}

/** Index of the first difference between two token lists, or -1 when they are equal. */
export function firstMismatch(a: readonly number[], b: readonly number[]): number {
  const n = Math.max(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return -1;
}
