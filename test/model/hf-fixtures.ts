import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { ModelWeights } from "../../src/model/checkpoints/model-weights.js";
import type { ModelConfig } from "../../src/model/config/model-config.js";
import { HfCheckpoint } from "../../src/model/checkpoints/hf-checkpoint.js";
import { SeededRandom } from "../../src/numerics/seeded-random.js";

/**
 * Hugging Face checkpoints and tokenizers made by the tests themselves (no
 * hub is reachable): safetensors writing, stories260K in transformers'
 * layout, tiny random models of each architecture, small BPE tokenizers.
 */

type Json = Record<string, unknown>;
export type StorageDtype = "F32" | "F16" | "BF16";

export interface NamedTensor {
  name: string;
  shape: number[];
  data: Float32Array;
}

const scratch = new Float32Array(1);
const scratchBits = new Uint32Array(scratch.buffer);

/** Nearest float16, ties to even (finite, in-range values; enough for test weights). */
function float16Bits(value: number): number {
  scratch[0] = value;
  const x = scratchBits[0];
  const sign = (x >>> 16) & 0x8000;
  const exponent = ((x >>> 23) & 0xff) - 127 + 15;
  let mantissa = x & 0x7fffff;
  if (exponent >= 31) return sign | 0x7c00;
  if (exponent <= 0) {
    if (exponent < -10) return sign;
    mantissa |= 0x800000;
    const shift = 14 - exponent;
    const half = mantissa >>> shift;
    const rest = mantissa & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    return sign | (half + (rest > mid || (rest === mid && half & 1) ? 1 : 0));
  }
  const half = (exponent << 10) | (mantissa >>> 13);
  const rest = mantissa & 0x1fff;
  return sign | (half + (rest > 0x1000 || (rest === 0x1000 && half & 1) ? 1 : 0)); // a carry rounds into the exponent
}

/** Nearest bfloat16, ties to even. */
function bfloat16Bits(value: number): number {
  scratch[0] = value;
  const x = scratchBits[0];
  return ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
}

function encodeTensor(data: Float32Array, dtype: StorageDtype): Uint8Array {
  if (dtype === "F32") return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  const bits = Uint16Array.from(data, dtype === "F16" ? float16Bits : bfloat16Bits);
  return new Uint8Array(bits.buffer);
}

/** A safetensors file: u64 header length, JSON header (space-padded to 8 bytes), data. */
export function writeSafetensors(path: string, tensors: readonly NamedTensor[], dtype: StorageDtype): void {
  const header: Json = { __metadata__: { format: "pt" } };
  const blobs: Uint8Array[] = [];
  let offset = 0;
  for (const tensor of tensors) {
    const bytes = encodeTensor(tensor.data, dtype);
    header[tensor.name] = { dtype, shape: tensor.shape, data_offsets: [offset, offset + bytes.length] };
    blobs.push(bytes);
    offset += bytes.length;
  }
  let json = JSON.stringify(header);
  json += " ".repeat((8 - (json.length % 8)) % 8);
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  writeFileSync(path, Buffer.concat([prefix, Buffer.from(json), ...blobs]));
}

export interface CheckpointLayout {
  dtype: StorageDtype;
  /** More than 1: model-0000i-of-0000n.safetensors files and model.safetensors.index.json. */
  shards: number;
}

/** config.json and the tensors, as transformers' save_pretrained lays them out. */
export function writeHfCheckpoint(dir: string, config: Json, tensors: readonly NamedTensor[], layout: CheckpointLayout): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "config.json"), JSON.stringify(config, null, 2));
  if (layout.shards <= 1) {
    writeSafetensors(join(dir, "model.safetensors"), tensors, layout.dtype);
    return;
  }
  const weightMap: Record<string, string> = {};
  const perShard = Math.ceil(tensors.length / layout.shards);
  for (let s = 0; s < layout.shards; s++) {
    const file = `model-${String(s + 1).padStart(5, "0")}-of-${String(layout.shards).padStart(5, "0")}.safetensors`;
    const shard = tensors.slice(s * perShard, (s + 1) * perShard);
    writeSafetensors(join(dir, file), shard, layout.dtype);
    for (const tensor of shard) weightMap[tensor.name] = file;
  }
  writeFileSync(join(dir, "model.safetensors.index.json"), JSON.stringify({ metadata: {}, weight_map: weightMap }, null, 2));
}

/**
 * llama2.c rotates interleaved pairs; transformers' Llama rotates halves. Its
 * conversion script reorders each head's q/k rows so that row 2i becomes row i
 * and row 2i + 1 becomes row d/2 + i, which leaves attention unchanged.
 */
export function permuteForHalfSplitRope(w: Float32Array, headCount: number, headSize: number, columns: number): Float32Array {
  const out = new Float32Array(w.length);
  for (let h = 0; h < headCount; h++) {
    for (let i = 0; i < headSize / 2; i++) {
      for (const [from, to] of [[2 * i, i], [2 * i + 1, headSize / 2 + i]]) {
        const source = (h * headSize + from) * columns;
        out.set(w.subarray(source, source + columns), (h * headSize + to) * columns);
      }
    }
  }
  return out;
}

/** stories260K's weights under transformers' Llama names, q/k permuted. */
export function llama2cAsHfTensors(weights: ModelWeights): NamedTensor[] {
  const { dim, heads, kvHeads, headSize, hiddenDim, vocabSize } = weights.config;
  const tensors: NamedTensor[] = [{ name: "model.embed_tokens.weight", shape: [vocabSize, dim], data: weights.embedding }];
  weights.layers.forEach((w, l) => {
    const p = `model.layers.${l}`;
    tensors.push(
      { name: `${p}.input_layernorm.weight`, shape: [dim], data: w.attnNorm },
      { name: `${p}.self_attn.q_proj.weight`, shape: [heads * headSize, dim], data: permuteForHalfSplitRope(w.wq, heads, headSize, dim) },
      { name: `${p}.self_attn.k_proj.weight`, shape: [kvHeads * headSize, dim], data: permuteForHalfSplitRope(w.wk, kvHeads, headSize, dim) },
      { name: `${p}.self_attn.v_proj.weight`, shape: [kvHeads * headSize, dim], data: w.wv },
      { name: `${p}.self_attn.o_proj.weight`, shape: [dim, heads * headSize], data: w.wo },
      { name: `${p}.post_attention_layernorm.weight`, shape: [dim], data: w.ffnNorm },
      { name: `${p}.mlp.gate_proj.weight`, shape: [hiddenDim, dim], data: w.w1 },
      { name: `${p}.mlp.up_proj.weight`, shape: [hiddenDim, dim], data: w.w3 },
      { name: `${p}.mlp.down_proj.weight`, shape: [dim, hiddenDim], data: w.w2 },
    );
  });
  tensors.push({ name: "model.norm.weight", shape: [dim], data: weights.finalNorm });
  if (weights.classifier !== weights.embedding) tensors.push({ name: "lm_head.weight", shape: [vocabSize, dim], data: weights.classifier });
  return tensors;
}

export function llama2cAsHfConfig(config: ModelConfig): Json {
  return {
    architectures: ["LlamaForCausalLM"],
    model_type: "llama",
    hidden_size: config.dim,
    intermediate_size: config.hiddenDim,
    num_hidden_layers: config.layers,
    num_attention_heads: config.heads,
    num_key_value_heads: config.kvHeads,
    vocab_size: config.vocabSize,
    max_position_embeddings: config.contextLength,
    rms_norm_eps: config.normEps,
    rope_theta: config.ropeTheta,
    rope_scaling: null,
    hidden_act: "silu",
    tie_word_embeddings: true,
    bos_token_id: 1,
    eos_token_id: 2,
    torch_dtype: "float32",
  };
}

export interface RandomModel {
  architecture: "LlamaForCausalLM" | "MistralForCausalLM" | "Qwen2ForCausalLM";
  hidden: number;
  heads: number;
  kvHeads: number;
  /** Set in config.json as head_dim (else hidden / heads). */
  headDim?: number;
  layers: number;
  vocab: number;
  intermediate: number;
  tied: boolean;
  /** Llama only: biases on q, k, v and o. */
  attentionBias?: boolean;
  ropeTheta: number;
  ropeScaling: Json | null;
  /** More config.json fields. */
  extra?: Json;
}

/** Tensors of a random model whose activations stay O(1). */
export function randomHfTensors(model: RandomModel, seed: number): NamedTensor[] {
  const random = new SeededRandom(seed);
  const uniform = (shape: number[], scale: number, center = 0) =>
    Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => center + scale * (2 * random.next() - 1));
  const headSize = model.headDim ?? model.hidden / model.heads;
  const q = model.heads * headSize;
  const kv = model.kvHeads * headSize;
  const matrix = (name: string, rows: number, columns: number): NamedTensor => ({ name, shape: [rows, columns], data: uniform([rows, columns], 1 / Math.sqrt(columns)) });
  const vector = (name: string, size: number, scale: number, center = 0): NamedTensor => ({ name, shape: [size], data: uniform([size], scale, center) });
  const qkvBias = model.architecture === "Qwen2ForCausalLM" || model.attentionBias === true;
  const tensors: NamedTensor[] = [{ name: "model.embed_tokens.weight", shape: [model.vocab, model.hidden], data: uniform([model.vocab, model.hidden], 1) }];
  for (let l = 0; l < model.layers; l++) {
    const p = `model.layers.${l}`;
    tensors.push(
      vector(`${p}.input_layernorm.weight`, model.hidden, 0.2, 1),
      matrix(`${p}.self_attn.q_proj.weight`, q, model.hidden),
      matrix(`${p}.self_attn.k_proj.weight`, kv, model.hidden),
      matrix(`${p}.self_attn.v_proj.weight`, kv, model.hidden),
      matrix(`${p}.self_attn.o_proj.weight`, model.hidden, q),
      vector(`${p}.post_attention_layernorm.weight`, model.hidden, 0.2, 1),
      matrix(`${p}.mlp.gate_proj.weight`, model.intermediate, model.hidden),
      matrix(`${p}.mlp.up_proj.weight`, model.intermediate, model.hidden),
      matrix(`${p}.mlp.down_proj.weight`, model.hidden, model.intermediate),
    );
    if (qkvBias) {
      tensors.push(vector(`${p}.self_attn.q_proj.bias`, q, 0.5), vector(`${p}.self_attn.k_proj.bias`, kv, 0.5), vector(`${p}.self_attn.v_proj.bias`, kv, 0.5));
    }
    if (model.attentionBias) tensors.push(vector(`${p}.self_attn.o_proj.bias`, model.hidden, 0.5));
  }
  tensors.push(vector("model.norm.weight", model.hidden, 0.2, 1));
  if (!model.tied) tensors.push(matrix("lm_head.weight", model.vocab, model.hidden));
  return tensors;
}

export function randomHfConfig(model: RandomModel): Json {
  return {
    architectures: [model.architecture],
    hidden_size: model.hidden,
    intermediate_size: model.intermediate,
    num_hidden_layers: model.layers,
    num_attention_heads: model.heads,
    num_key_value_heads: model.kvHeads,
    ...(model.headDim === undefined ? {} : { head_dim: model.headDim }),
    vocab_size: model.vocab,
    max_position_embeddings: 512,
    rms_norm_eps: 1e-6,
    rope_theta: model.ropeTheta,
    rope_scaling: model.ropeScaling,
    hidden_act: "silu",
    tie_word_embeddings: model.tied,
    ...(model.attentionBias === undefined ? {} : { attention_bias: model.attentionBias }),
    bos_token_id: 256,
    eos_token_id: 257,
    ...model.extra,
  };
}

/** The whole checkpoint in memory, as the reference pass reads it. */
export function loadHfWeights(dir: string): ModelWeights {
  const checkpoint = HfCheckpoint.open(dir);
  const embedding = checkpoint.embedding();
  return {
    config: checkpoint.config,
    embedding,
    layers: Array.from({ length: checkpoint.config.layers }, (_, l) => checkpoint.layer(l)),
    finalNorm: checkpoint.finalNorm(),
    classifier: checkpoint.tiedClassifier ? embedding : checkpoint.classifier(),
  };
}

const ADDED = { single_word: false, lstrip: false, rstrip: false, normalized: false, special: true };

/** GPT-2's byte alphabet, written out from its definition: printable bytes as themselves, the rest from U+0100 on. */
function byteAlphabet(): string[] {
  let next = 256;
  return Array.from({ length: 256 }, (_, byte) => {
    const printable = (byte >= 33 && byte <= 126) || (byte >= 161 && byte <= 172) || byte >= 174;
    return String.fromCodePoint(printable ? byte : next++);
  });
}

/**
 * A byte-level BPE tokenizer as Qwen2 and Llama 3 ship them: the 256 byte
 * symbols, then `merges` (pairs of strings, in rank order; spaces as
 * themselves), then special tokens (ids from 256 + merges).
 */
export function byteLevelTokenizerJson(merges: [string, string][], specials: string[]): Json {
  const alphabet = byteAlphabet();
  const symbol = (text: string) => Array.from(Buffer.from(text, "utf8"), (byte) => alphabet[byte]).join("");
  const vocab: Record<string, number> = Object.fromEntries(alphabet.map((char, id) => [char, id]));
  const mergeList = merges.map(([a, b]) => {
    vocab[symbol(a + b)] = Object.keys(vocab).length;
    return `${symbol(a)} ${symbol(b)}`;
  });
  const first = Object.keys(vocab).length;
  return {
    version: "1.0",
    added_tokens: specials.map((content, i) => ({ id: first + i, content, ...ADDED })),
    normalizer: null,
    pre_tokenizer: {
      type: "Sequence",
      pretokenizers: [
        { type: "Split", pattern: { Regex: "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+" }, behavior: "Isolated", invert: false },
        { type: "ByteLevel", add_prefix_space: false, trim_offsets: false, use_regex: false },
      ],
    },
    post_processor: { type: "ByteLevel", add_prefix_space: false, trim_offsets: false, use_regex: false },
    decoder: { type: "ByteLevel", add_prefix_space: false, trim_offsets: false, use_regex: false },
    model: { type: "BPE", dropout: null, unk_token: null, continuing_subword_prefix: "", end_of_word_suffix: "", fuse_unk: false, byte_fallback: false, ignore_merges: false, vocab, merges: mergeList },
  };
}

/**
 * stories260K's llama2.c tokenizer (tok512.bin) as the sentencepiece-style
 * tokenizer.json that transformers writes for Llama 2: "▁" for spaces, byte
 * fallback pieces, and merges ranked by the merged piece's score, which makes
 * BPE merge exactly as llama2.c's greedy encoder does.
 */
export function llama2cTokenizerJson(tokPath: string, vocabSize: number): Json {
  const bytes = readFileSync(tokPath);
  const pieces: string[] = [];
  const scores: number[] = [];
  let offset = 4;
  for (let id = 0; id < vocabSize; id++) {
    scores.push(bytes.readFloatLE(offset));
    const length = bytes.readInt32LE(offset + 4);
    pieces.push(bytes.subarray(offset + 8, offset + 8 + length).toString("utf8").replaceAll(" ", "▁"));
    offset += 8 + length;
  }
  const specials = ["<unk>", "<s>", "</s>"];
  specials.forEach((piece, id) => (pieces[id] = piece));
  const vocab: Record<string, number> = Object.fromEntries(pieces.map((piece, id) => [piece, id]));
  const merges: { pair: string; score: number; id: number }[] = [];
  pieces.forEach((piece, id) => {
    if (id < 3 || /^<0x[0-9A-F]{2}>$/.test(piece)) return;
    const chars = Array.from(piece);
    for (let k = 1; k < chars.length; k++) {
      const [left, right] = [chars.slice(0, k).join(""), chars.slice(k).join("")];
      if (left in vocab && right in vocab) merges.push({ pair: `${left} ${right}`, score: scores[id], id });
    }
  });
  merges.sort((a, b) => b.score - a.score || a.id - b.id);
  return {
    version: "1.0",
    added_tokens: specials.map((content, id) => ({ id, content, ...ADDED })),
    normalizer: { type: "Sequence", normalizers: [{ type: "Prepend", prepend: "▁" }, { type: "Replace", pattern: { String: " " }, content: "▁" }] },
    pre_tokenizer: null,
    post_processor: {
      type: "TemplateProcessing",
      single: [{ SpecialToken: { id: "<s>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }],
      pair: [{ SpecialToken: { id: "<s>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }, { SpecialToken: { id: "<s>", type_id: 1 } }, { Sequence: { id: "B", type_id: 1 } }],
      special_tokens: { "<s>": { id: "<s>", ids: [1], tokens: ["<s>"] } },
    },
    decoder: {
      type: "Sequence",
      decoders: [{ type: "Replace", pattern: { String: "▁" }, content: " " }, { type: "ByteFallback" }, { type: "Fuse" }, { type: "Strip", content: " ", start: 1, stop: 0 }],
    },
    model: { type: "BPE", dropout: null, unk_token: "<unk>", continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: true, byte_fallback: true, vocab, merges: merges.map((m) => m.pair) },
  };
}

/** Writes tokenizer.json and tokenizer_config.json (and generation_config.json when given). */
export function writeTokenizer(dir: string, tokenizerJson: Json, tokenizerConfig: Json, generationConfig?: Json): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "tokenizer.json"), JSON.stringify(tokenizerJson));
  writeFileSync(join(dir, "tokenizer_config.json"), JSON.stringify(tokenizerConfig, null, 2));
  if (generationConfig) writeFileSync(join(dir, "generation_config.json"), JSON.stringify(generationConfig, null, 2));
}
