import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { LayerCache } from "../../src/kv/layer-cache.js";
import { SlabPool } from "../../src/kv/slab-pool.js";
import { convertHfCheckpoint } from "../../src/model/conversion/convert.js";
import { loadModelDir } from "../../src/model/load-model.js";
import { createReferenceCache, evictReference, referenceForward } from "../reference/llama-forward.js";
import {
  byteLevelTokenizerJson,
  loadHfWeights,
  randomHfConfig,
  randomHfTensors,
  writeHfCheckpoint,
  writeTokenizer,
  type CheckpointLayout,
  type RandomModel,
} from "./hf-fixtures.js";

/** Max error, relative to max(1, |expected|), between the fp32 graph and the fp64 reference. */
const TOLERANCE = 1e-4;

interface Case {
  label: string;
  model: RandomModel;
  layout: CheckpointLayout;
  /** What the converted config must say. */
  expected: Record<string, unknown>;
}

const CASES: Case[] = [
  {
    label: "Llama: grouped-query attention, untied head, llama3 RoPE scaling, float32 in 3 shards",
    model: {
      architecture: "LlamaForCausalLM",
      hidden: 64,
      heads: 4,
      kvHeads: 2,
      layers: 2,
      vocab: 300,
      intermediate: 96,
      tied: false,
      ropeTheta: 500000,
      // With d = 16 and an original context of 16, the pairs span all three llama3 bands.
      ropeScaling: { rope_type: "llama3", factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 16 },
    },
    layout: { dtype: "F32", shards: 3 },
    expected: { headSize: 16, ropeScaling: { type: "llama3", factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalContextLength: 16 } },
  },
  {
    label: "Llama: attention_bias (q, k, v, o), linear RoPE scaling, bfloat16",
    model: {
      architecture: "LlamaForCausalLM",
      hidden: 32,
      heads: 4,
      kvHeads: 4,
      layers: 2,
      vocab: 280,
      intermediate: 64,
      tied: false,
      attentionBias: true,
      ropeTheta: 10000,
      ropeScaling: { type: "linear", factor: 4 },
    },
    layout: { dtype: "BF16", shards: 1 },
    expected: { ropeScaling: { type: "linear", factor: 4 } },
  },
  {
    label: "Mistral: head_dim unlike hidden/heads, one KV head, tied, sliding window, float16 in 2 shards",
    model: {
      architecture: "MistralForCausalLM",
      hidden: 32,
      heads: 4,
      kvHeads: 1,
      headDim: 12,
      layers: 3,
      vocab: 270,
      intermediate: 48,
      tied: true,
      ropeTheta: 1000000,
      ropeScaling: null,
      extra: { sliding_window: 64 },
    },
    layout: { dtype: "F16", shards: 2 },
    expected: { headSize: 12, kvHeads: 1, contextLength: 64, ropeScaling: null },
  },
  {
    label: "Qwen2: q/k/v biases, tied, rope_theta 1e6, bfloat16 in 2 shards",
    model: {
      architecture: "Qwen2ForCausalLM",
      hidden: 48,
      heads: 6,
      kvHeads: 2,
      layers: 2,
      vocab: 290,
      intermediate: 80,
      tied: true,
      ropeTheta: 1000000,
      ropeScaling: null,
      extra: { use_sliding_window: false, sliding_window: 32, max_window_layers: 2 },
    },
    layout: { dtype: "BF16", shards: 2 },
    expected: { headSize: 8, contextLength: 512 },
  },
];

describe("tiny random Hugging Face checkpoints against the reference forward pass", () => {
  const root = mkdtempSync(join(tmpdir(), "kvwarden-hf-arch-"));
  const worst: Record<string, number> = {};
  afterAll(() => {
    console.log(`max relative error, graph vs reference: ${Object.entries(worst).map(([k, v]) => `${k} ${v.toExponential(2)}`).join("; ")}`);
    rmSync(root, { recursive: true, force: true });
  });

  it.each(CASES.map((c, i) => [c.label, c, i] as const))("%s", async (label, { model, layout, expected }, index) => {
    const hfDir = join(root, `hf-${index}`);
    const outDir = join(root, `converted-${index}`);
    writeHfCheckpoint(hfDir, randomHfConfig(model), randomHfTensors(model, 1000 + index), layout);
    writeTokenizer(hfDir, byteLevelTokenizerJson([], ["<|bos|>", "<|eos|>"]), { bos_token: "<|bos|>", eos_token: "<|eos|>" });
    await convertHfCheckpoint(hfDir, outDir);
    const loaded = await loadModelDir(outDir, { executionProvider: "cpu", intraOpThreads: 1 });
    const weights = loadHfWeights(hfDir);
    try {
      expect(loaded.config).toMatchObject({ architecture: model.architecture, ropeLayout: "half", ...expected });
      const { config } = loaded;
      const { layers, kvHeads, headSize, vocabSize } = config;
      const pool = new SlabPool(16 * 1024 * 1024);
      const caches = Array.from({ length: layers }, () => new LayerCache(pool, { kvHeads, headSize }));
      const reference = createReferenceCache(config);
      let error = 0;
      let fed = 0;
      const step = async (tokens: number[]) => {
        for (const layer of caches) layer.reserve(tokens.length);
        const out = await loaded.runner.run({ tokens, firstPosition: fed, past: caches, queryRows: 1, logitRows: tokens.length });
        const ref = referenceForward(weights, reference, tokens, fed);
        ref.logits.forEach((row, r) => row.forEach((v, i) => (error = Math.max(error, Math.abs(out.logits[r * vocabSize + i] - v) / Math.max(1, Math.abs(v))))));
        const stride = kvHeads * tokens.length * headSize;
        caches.forEach((layer, l) => {
          layer.append(out.newKeys, out.newValues, l * stride, tokens.length, fed, out.attentionColsums[l]);
          // The stored keys are the reference's post-RoPE keys.
          for (let g = 0; g < kvHeads; g++) {
            reference[l][g].forEach((entry, j) =>
              entry.key.forEach((v, i) => (error = Math.max(error, Math.abs(layer.keys[(layer.offsets[g] + j) * headSize + i] - v) / Math.max(1, Math.abs(v))))),
            );
          }
        });
        fed += tokens.length;
        return ref.logits.at(-1)!.indexOf(Math.max(...ref.logits.at(-1)!));
      };
      await step([256, 72, 101, 108, 108, 111, 32]);
      let next = await step([119, 111, 114, 108, 100]);
      for (let i = 0; i < 4; i++) next = await step([next]);
      // Ragged eviction: each head keeps its own entries.
      const keep = reference.map((layer) => layer.map((entries, g) => entries.map((_, j) => j).filter((j) => (j + g) % 3 !== 1)));
      evictReference(reference, keep);
      caches.forEach((layer, l) => layer.retain(keep[l].map((slots) => Int32Array.from(slots))));
      for (let i = 0; i < 3; i++) next = await step([next]);
      worst[label.split(":")[0] + ` (${layout.dtype})`] = error;
      expect(error).toBeLessThan(TOLERANCE);
    } finally {
      await loaded.runner.release();
    }
  });
});
