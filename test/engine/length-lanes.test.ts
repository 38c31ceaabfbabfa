import { describe, expect, it } from "vitest";
import { DISPATCH_COST_ENTRIES, lanesOf, runCostEntries } from "../../src/engine/length-lanes.js";
import { stepWeightBytes } from "../../src/model/config/step-weight-bytes.js";
import type { ModelConfig } from "../../src/model/config/model-config.js";

/** A Llama shape; only the dimensions matter here. */
function llama(shape: Pick<ModelConfig, "dim" | "hiddenDim" | "layers" | "heads" | "kvHeads" | "headSize" | "vocabSize">): ModelConfig {
  return { name: "shape", architecture: "LlamaForCausalLM", contextLength: 2048, ropeTheta: 10000, ropeLayout: "half", ropeScaling: null, normEps: 1e-5, ...shape };
}

// stories260K (llama2.c) and the ~200M benchmark Llama (bench/llama-200m.ts).
const stories260K = llama({ dim: 64, hiddenDim: 172, layers: 5, heads: 8, kvHeads: 4, headSize: 8, vocabSize: 512 });
const bench200M = llama({ dim: 1024, hiddenDim: 2816, layers: 12, heads: 16, kvHeads: 4, headSize: 64, vocabSize: 32000 });

describe("what a run costs besides the entries it attends (runCostEntries)", () => {
  it("counts the weights a step reads: every layer's projections and the output head, by stored width", () => {
    // Per layer q, o: 1024 x 1024 each; k, v: 1024 x 256 each; gate, up, down: 1024 x 2816 each. Head: 32000 x 1024.
    const weights = 12 * (2 * 1024 * 1024 + 2 * 1024 * 256 + 3 * 1024 * 2816) + 32000 * 1024;
    expect(stepWeightBytes(bench200M, "float32")).toBe(weights * 4);
    expect(stepWeightBytes(bench200M, "int8")).toBe(weights);
    expect(stepWeightBytes(bench200M, "int4")).toBe(weights / 2);
  });

  it("is the weights over one cached entry's bytes in every layer, at least the dispatch cost", () => {
    // One float32 entry of the 200M model: 12 layers x 4 KV heads x (64 + 64 + 3) four-byte words.
    const entryBytes = 12 * 4 * 131 * 4;
    expect(runCostEntries(stepWeightBytes(bench200M, "float32"), 12, { kvHeads: 4, headSize: 64 })).toBe(Math.round(stepWeightBytes(bench200M, "float32") / entryBytes));
    expect(runCostEntries(stepWeightBytes(bench200M, "float32"), 12, { kvHeads: 4, headSize: 64 })).toBe(26723);
    // float16 entries are about half as wide, so a run costs about twice as many of them.
    expect(runCostEntries(stepWeightBytes(bench200M, "float32"), 12, { kvHeads: 4, headSize: 64, kvDtype: "float16" })).toBe(Math.round(stepWeightBytes(bench200M, "float32") / (12 * 4 * 67 * 4)));
    // stories260K reads about 1 MB of weights: onnxruntime's dispatch is what a run costs there.
    expect(runCostEntries(stepWeightBytes(stories260K, "float32"), 5, { kvHeads: 4, headSize: 8 })).toBe(DISPATCH_COST_ENTRIES);
  });
});

describe("length lanes", () => {
  const entries = (n: number) => n;

  it("puts a sequence in the lane of the shortest while padding it costs less than a run of its own", () => {
    expect(lanesOf([8192, 2, 900, 1030], entries, 1024)).toEqual([[2, 900], [1030], [8192]]);
  });

  it("keeps a short and a long sequence in one run on a model whose weights outweigh the long one's cache", () => {
    const runCost = runCostEntries(stepWeightBytes(bench200M, "float32"), 12, { kvHeads: 4, headSize: 64 });
    expect(lanesOf([8192, 2], entries, runCost)).toEqual([[2, 8192]]);
    expect(lanesOf([40_000, 2], entries, runCost)).toEqual([[2], [40_000]]);
  });
});
