/**
 * A Hugging Face Llama checkpoint written as a GGUF file that llama.cpp loads
 * (docs/llama-cpp-anchor.md): llama.cpp's tensor names and hyperparameter keys, q and k rows
 * reordered for its RoPE, and a placeholder vocabulary of the model's size (both engines are fed
 * token ids, never text). Every matrix is stored in one type ("pure", as kvwarden's int8 and int4
 * conversions quantize every projection and the classifier); norms stay F32.
 */
import { HfCheckpoint } from "../src/model/checkpoints/hf-checkpoint.js";
import type { LayerWeights } from "../src/model/checkpoints/model-weights.js";
import type { ModelConfig } from "../src/model/config/model-config.js";
import { encodeGgmlTensor, GgmlType } from "./ggml-blocks.js";
import { writeGgufFile, type GgufTensor, type GgufValue } from "./gguf-file.js";

/** GGUF's token types: normal, unknown, control, byte. */
const TOKEN_TYPE = { normal: 1, unknown: 2, control: 3, byte: 6 } as const;
/** general.file_type for an all-F32, Q4_0 or Q8_0 model (llama_ftype). */
const FILE_TYPE: Record<GgmlType, number> = { [GgmlType.F32]: 0, [GgmlType.Q4_0]: 2, [GgmlType.Q8_0]: 7 };

/**
 * Transformers' Llama rotates the two halves of each head (i with i + d/2); llama.cpp's "llama"
 * architecture rotates adjacent pairs (2i with 2i + 1). Row s * d/2 + i of each head moves to row
 * 2i + s, which leaves attention unchanged.
 */
function interleaveRopeRows(w: Float32Array, headCount: number, headSize: number, columns: number): Float32Array {
  const out = new Float32Array(w.length);
  for (let h = 0; h < headCount; h++) {
    for (let i = 0; i < headSize / 2; i++) {
      for (const s of [0, 1]) {
        const from = (h * headSize + s * (headSize / 2) + i) * columns;
        out.set(w.subarray(from, from + columns), (h * headSize + 2 * i + s) * columns);
      }
    }
  }
  return out;
}

/**
 * Ids 0-255 are bytes and 256/257 BOS/EOS, as in the bench's byte-level tokenizer
 * (bench/random-checkpoint.ts); 258 is an unknown token and the rest fill the model's vocabulary.
 */
function placeholderVocabulary(config: ModelConfig): Map<string, GgufValue> {
  const byteCount = 256;
  const tokens = Array.from({ length: config.vocabSize }, (_, id) =>
    id < byteCount ? `<0x${id.toString(16).toUpperCase().padStart(2, "0")}>` : (["<s>", "</s>", "<unk>"][id - byteCount] ?? `<unused${id}>`),
  );
  const types = Int32Array.from(tokens, (_, id) =>
    id < byteCount ? TOKEN_TYPE.byte : id < byteCount + 2 ? TOKEN_TYPE.control : id === byteCount + 2 ? TOKEN_TYPE.unknown : TOKEN_TYPE.normal,
  );
  return new Map<string, GgufValue>([
    ["tokenizer.ggml.model", { string: "llama" }],
    ["tokenizer.ggml.tokens", { strings: tokens }],
    ["tokenizer.ggml.scores", { float32s: new Float32Array(config.vocabSize) }],
    ["tokenizer.ggml.token_type", { int32s: types }],
    ["tokenizer.ggml.bos_token_id", { uint32: byteCount }],
    ["tokenizer.ggml.eos_token_id", { uint32: byteCount + 1 }],
    ["tokenizer.ggml.unknown_token_id", { uint32: byteCount + 2 }],
  ]);
}

function hyperparameters(config: ModelConfig, type: GgmlType): Map<string, GgufValue> {
  return new Map<string, GgufValue>([
    ["general.architecture", { string: "llama" }],
    ["general.name", { string: config.name }],
    ["general.file_type", { uint32: FILE_TYPE[type] }],
    ["llama.context_length", { uint32: config.contextLength }],
    ["llama.embedding_length", { uint32: config.dim }],
    ["llama.block_count", { uint32: config.layers }],
    ["llama.feed_forward_length", { uint32: config.hiddenDim }],
    ["llama.attention.head_count", { uint32: config.heads }],
    ["llama.attention.head_count_kv", { uint32: config.kvHeads }],
    ["llama.attention.key_length", { uint32: config.headSize }],
    ["llama.attention.value_length", { uint32: config.headSize }],
    ["llama.rope.dimension_count", { uint32: config.headSize }],
    ["llama.rope.freq_base", { float32: config.ropeTheta }],
    ["llama.attention.layer_norm_rms_epsilon", { float32: config.normEps }],
    ["llama.vocab_size", { uint32: config.vocabSize }],
  ]);
}

export interface WrittenGguf {
  fileBytes: number;
  /** Bytes a decode step reads: every tensor but the token embedding, of which it gathers one row. */
  readPerStepBytes: number;
}

/** Writes the Llama checkpoint in `hfDir` to `path` with its matrices in `type`. */
export function writeLlamaGguf(hfDir: string, path: string, type: GgmlType): WrittenGguf {
  const checkpoint = HfCheckpoint.open(hfDir);
  const config = checkpoint.config;
  if (config.ropeLayout !== "half" || config.ropeScaling !== null || checkpoint.spec.qkvBias || checkpoint.spec.outputBias) {
    throw new Error(`${config.name}: only plain Llama checkpoints (no RoPE scaling, no biases) are written as GGUF here`);
  }
  const { dim, hiddenDim, heads, kvHeads, headSize, vocabSize } = config;
  // One layer is read at a time and kept while its tensors are written.
  let held: { index: number; weights: LayerWeights } | undefined;
  const layer = (l: number) => {
    if (held?.index !== l) held = { index: l, weights: checkpoint.layer(l) };
    return held.weights;
  };
  const norm = (name: string, read: () => Float32Array): GgufTensor => ({ name, dims: [dim], type: GgmlType.F32, data: () => encodeGgmlTensor(read(), GgmlType.F32) });
  const matrix = (name: string, rows: number, columns: number, read: () => Float32Array): GgufTensor => ({ name, dims: [columns, rows], type, data: () => encodeGgmlTensor(read(), type) });

  const tensors: GgufTensor[] = [matrix("token_embd.weight", vocabSize, dim, () => checkpoint.embedding())];
  for (let l = 0; l < config.layers; l++) {
    const p = `blk.${l}`;
    tensors.push(
      norm(`${p}.attn_norm.weight`, () => layer(l).attnNorm),
      matrix(`${p}.attn_q.weight`, heads * headSize, dim, () => interleaveRopeRows(layer(l).wq, heads, headSize, dim)),
      matrix(`${p}.attn_k.weight`, kvHeads * headSize, dim, () => interleaveRopeRows(layer(l).wk, kvHeads, headSize, dim)),
      matrix(`${p}.attn_v.weight`, kvHeads * headSize, dim, () => layer(l).wv),
      matrix(`${p}.attn_output.weight`, dim, heads * headSize, () => layer(l).wo),
      norm(`${p}.ffn_norm.weight`, () => layer(l).ffnNorm),
      matrix(`${p}.ffn_gate.weight`, hiddenDim, dim, () => layer(l).w1),
      matrix(`${p}.ffn_up.weight`, hiddenDim, dim, () => layer(l).w3),
      matrix(`${p}.ffn_down.weight`, dim, hiddenDim, () => layer(l).w2),
    );
  }
  tensors.push(norm("output_norm.weight", () => checkpoint.finalNorm()));
  tensors.push(matrix("output.weight", vocabSize, dim, () => (checkpoint.tiedClassifier ? checkpoint.embedding() : checkpoint.classifier())));
  const { fileBytes, tensorBytes } = writeGgufFile(path, new Map([...hyperparameters(config, type), ...placeholderVocabulary(config)]), tensors);
  const embeddingBytes = tensorBytes.get("token_embd.weight")!;
  const allBytes = [...tensorBytes.values()].reduce((a, b) => a + b, 0);
  return { fileBytes, readPerStepBytes: allBytes - embeddingBytes + embeddingBytes / vocabSize };
}
