import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { convertHfCheckpoint } from "../../src/model/conversion/convert.js";
import { HfCheckpoint } from "../../src/model/checkpoints/hf-checkpoint.js";
import { parseHfConfig } from "../../src/model/checkpoints/hf-config.js";
import { SafetensorsCheckpoint } from "../../src/model/checkpoints/safetensors.js";
import { byteLevelTokenizerJson, randomHfConfig, randomHfTensors, writeHfCheckpoint, writeSafetensors, writeTokenizer, type RandomModel } from "./hf-fixtures.js";

const LLAMA: RandomModel = {
  architecture: "LlamaForCausalLM",
  hidden: 16,
  heads: 2,
  kvHeads: 1,
  layers: 1,
  vocab: 260,
  intermediate: 24,
  tied: true,
  ropeTheta: 10000,
  ropeScaling: null,
};

const parse = (changes: Record<string, unknown>) => () => parseHfConfig({ ...randomHfConfig(LLAMA), ...changes }, "test");

describe("Hugging Face config.json", () => {
  it("refuses what the step graph does not compute, naming the field", () => {
    expect(parse({ architectures: ["GPT2LMHeadModel"] })).toThrow(/config.json: architectures is \["GPT2LMHeadModel"\]; kvwarden runs LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM/);
    expect(parse({ rope_scaling: { rope_type: "yarn", factor: 4 } })).toThrow(/rope_scaling.rope_type is "yarn"; supported: "default", "linear", "llama3"/);
    expect(parse({ rope_scaling: { type: "dynamic", factor: 2 } })).toThrow(/rope_scaling.type is "dynamic"/);
    expect(parse({ rope_scaling: { rope_type: "llama3", factor: 8 } })).toThrow(/rope_scaling.low_freq_factor is missing/);
    expect(parse({ quantization_config: { quant_method: "awq" } })).toThrow(/quantization_config is set/);
    expect(parse({ hidden_act: "gelu" })).toThrow(/hidden_act is "gelu"/);
    expect(parse({ mlp_bias: true })).toThrow(/mlp_bias is true/);
    expect(parse({ num_hidden_layers: undefined })).toThrow(/num_hidden_layers is missing/);
    expect(parse({ num_key_value_heads: 3, num_attention_heads: 4 })).toThrow(/num_key_value_heads \(3\) must divide num_attention_heads \(4\)/);
    expect(parse({ partial_rotary_factor: 0.5 })).toThrow(/partial_rotary_factor/);
    expect(() => parseHfConfig({ ...randomHfConfig({ ...LLAMA, architecture: "Qwen2ForCausalLM" }), use_sliding_window: true }, "q")).toThrow(/use_sliding_window is true/);
  });

  it("reads defaults, rope_parameters (newer transformers) and Mistral's sliding window", () => {
    const spec = parseHfConfig({ ...randomHfConfig(LLAMA), rope_theta: undefined, rms_norm_eps: undefined, num_key_value_heads: undefined }, "d");
    expect(spec.config).toMatchObject({ ropeTheta: 10000, normEps: 1e-6, kvHeads: 2, headSize: 8, ropeLayout: "half" });
    const v5 = parseHfConfig({ ...randomHfConfig(LLAMA), rope_theta: undefined, rope_scaling: undefined, rope_parameters: { rope_type: "linear", rope_theta: 5e5, factor: 2 } }, "v5");
    expect(v5.config).toMatchObject({ ropeTheta: 5e5, ropeScaling: { type: "linear", factor: 2 } });
    const mistral = parseHfConfig({ ...randomHfConfig({ ...LLAMA, architecture: "MistralForCausalLM" }), sliding_window: 100 }, "m");
    expect(mistral.config.contextLength).toBe(100);
    const qwen = parseHfConfig(randomHfConfig({ ...LLAMA, architecture: "Qwen2ForCausalLM" }), "q");
    expect(qwen).toMatchObject({ qkvBias: true, outputBias: false, tiedEmbeddings: true });
  });
});

describe("Hugging Face safetensors", () => {
  const root = mkdtempSync(join(tmpdir(), "kvwarden-hf-config-"));
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  const checkpoint = (name: string, edit: (tensors: ReturnType<typeof randomHfTensors>) => void) => {
    const dir = join(root, name);
    const tensors = randomHfTensors(LLAMA, 1);
    edit(tensors);
    writeHfCheckpoint(dir, randomHfConfig(LLAMA), tensors, { dtype: "F32", shards: 1 });
    writeTokenizer(dir, byteLevelTokenizerJson([], ["<s>", "</s>"]), { bos_token: "<s>", eos_token: "</s>" });
    return dir;
  };

  it("names a missing tensor before converting anything", () => {
    const dir = checkpoint("missing", (tensors) => tensors.splice(tensors.findIndex((t) => t.name.endsWith("k_proj.weight")), 1));
    expect(() => HfCheckpoint.open(dir)).toThrow(/the checkpoint has no tensor 'model.layers.0.self_attn.k_proj.weight'/);
  });

  it("names a tensor of the wrong shape", async () => {
    const dir = checkpoint("shape", (tensors) => {
      const norm = tensors.find((t) => t.name === "model.norm.weight")!;
      norm.shape = [8, 2];
    });
    await expect(convertHfCheckpoint(dir, join(root, "shape-out"))).rejects.toThrow(/tensor 'model.norm.weight' has shape \[8,2\], expected \[16\]/);
  });

  it("names a tensor stored in a dtype it does not read", async () => {
    const dir = checkpoint("int8", () => {});
    const raw = Buffer.from('{"model.norm.weight":{"dtype":"I8","shape":[16],"data_offsets":[0,16]}}');
    const prefix = Buffer.alloc(8);
    prefix.writeBigUInt64LE(BigInt(raw.length));
    // An index pointing model.norm.weight at an int8 shard, everything else at the float32 file.
    writeFileSync(join(dir, "int8.safetensors"), Buffer.concat([prefix, raw, Buffer.alloc(16)]));
    const names = randomHfTensors(LLAMA, 1).map((t) => t.name);
    const weightMap = Object.fromEntries(names.map((n) => [n, n === "model.norm.weight" ? "int8.safetensors" : "model.safetensors"]));
    writeFileSync(join(dir, "model.safetensors.index.json"), JSON.stringify({ weight_map: weightMap }));
    await expect(convertHfCheckpoint(dir, join(root, "int8-out"))).rejects.toThrow(/tensor 'model.norm.weight' is stored as I8; kvwarden reads F32, F16 and BF16/);
  });

  it("reads float16 and bfloat16 tensors as the float32 values they round to", () => {
    const data = Float32Array.of(1, -2, 1 / 3, 65504, 2 ** -24, -0);
    const expected = {
      F16: [1, -2, 0.333251953125, 65504, 2 ** -24, -0],
      BF16: [1, -2, 0.333984375, 65536, 2 ** -24, -0],
    };
    for (const dtype of ["F16", "BF16"] as const) {
      const dir = join(root, dtype);
      mkdirSync(dir);
      writeSafetensors(join(dir, "model.safetensors"), [{ name: "x", shape: [2, 3], data }], dtype);
      expect(Array.from(SafetensorsCheckpoint.open(dir).read("x", [2, 3])), dtype).toEqual(expected[dtype]);
    }
  });
});
