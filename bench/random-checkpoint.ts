/**
 * A Llama-shaped Hugging Face checkpoint with random weights, large enough for
 * benchmarks: model.safetensors in BF16, written one tensor at a time (the
 * model is never held whole), with config.json and a byte-level tokenizer.
 * Weights are uniform with scale 1 / sqrt(inputs), so activations stay O(1).
 */
import { closeSync, mkdirSync, openSync, writeFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import { byteLevelTokenizerJson, randomHfConfig, writeTokenizer, type RandomModel } from "../test/model/hf-fixtures.js";

interface TensorSpec {
  name: string;
  shape: number[];
  /** Values are uniform in center +- scale. */
  scale: number;
  center: number;
}

function tensorSpecs(model: RandomModel): TensorSpec[] {
  const { hidden, heads, kvHeads, intermediate, vocab } = model;
  const headSize = hidden / heads;
  const matrix = (name: string, rows: number, columns: number): TensorSpec => ({ name, shape: [rows, columns], scale: 1 / Math.sqrt(columns), center: 0 });
  const norm = (name: string): TensorSpec => ({ name, shape: [hidden], scale: 0.2, center: 1 });
  const specs: TensorSpec[] = [{ name: "model.embed_tokens.weight", shape: [vocab, hidden], scale: 1, center: 0 }];
  for (let l = 0; l < model.layers; l++) {
    const p = `model.layers.${l}`;
    specs.push(
      norm(`${p}.input_layernorm.weight`),
      matrix(`${p}.self_attn.q_proj.weight`, heads * headSize, hidden),
      matrix(`${p}.self_attn.k_proj.weight`, kvHeads * headSize, hidden),
      matrix(`${p}.self_attn.v_proj.weight`, kvHeads * headSize, hidden),
      matrix(`${p}.self_attn.o_proj.weight`, hidden, heads * headSize),
      norm(`${p}.post_attention_layernorm.weight`),
      matrix(`${p}.mlp.gate_proj.weight`, intermediate, hidden),
      matrix(`${p}.mlp.up_proj.weight`, intermediate, hidden),
      matrix(`${p}.mlp.down_proj.weight`, hidden, intermediate),
    );
  }
  specs.push(norm("model.norm.weight"));
  if (!model.tied) specs.push(matrix("lm_head.weight", vocab, hidden));
  return specs;
}

/** Writes the checkpoint into `dir`; returns its parameter count. Same seed, same weights. */
export function writeRandomCheckpoint(dir: string, model: RandomModel, seed: number): number {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "config.json"), JSON.stringify({ ...randomHfConfig(model), max_position_embeddings: 4096 }, null, 2));
  writeTokenizer(dir, byteLevelTokenizerJson([], ["<|bos|>", "<|eos|>"]), { bos_token: "<|bos|>", eos_token: "<|eos|>" });

  const specs = tensorSpecs(model);
  const header: Record<string, unknown> = { __metadata__: { format: "pt" } };
  let offset = 0;
  for (const spec of specs) {
    const bytes = spec.shape.reduce((a, b) => a * b, 1) * 2;
    header[spec.name] = { dtype: "BF16", shape: spec.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  json += " ".repeat((8 - (json.length % 8)) % 8);
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));

  const fd = openSync(join(dir, "model.safetensors"), "w");
  try {
    writeSync(fd, prefix);
    writeSync(fd, Buffer.from(json));
    // xorshift32: the bench needs speed, not statistical quality.
    let state = seed >>> 0 || 1;
    for (const spec of specs) {
      const count = spec.shape.reduce((a, b) => a * b, 1);
      const bits = new Uint16Array(count);
      const value = new Float32Array(1);
      const valueBits = new Uint32Array(value.buffer);
      for (let i = 0; i < count; i++) {
        state ^= state << 13;
        state ^= state >>> 17;
        state ^= state << 5;
        value[0] = spec.center + spec.scale * ((state >>> 0) / 2147483648 - 1);
        bits[i] = valueBits[0] >>> 16; // BF16 by truncation
      }
      writeSync(fd, new Uint8Array(bits.buffer));
    }
  } finally {
    closeSync(fd);
  }
  return specs.reduce((n, spec) => n + spec.shape.reduce((a, b) => a * b, 1), 0);
}
