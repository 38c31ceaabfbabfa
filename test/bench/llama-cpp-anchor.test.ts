import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { encodeGgmlTensor, GgmlType } from "../../bench/ggml-blocks.js";
import { LlamaCppEngine } from "../../bench/llama-cpp-engine.js";
import { llama200M } from "../../bench/llama-200m.js";
import { writeLlamaGguf } from "../../bench/llama-gguf.js";
import { writeRandomCheckpoint } from "../../bench/random-checkpoint.js";
import { Engine } from "../../src/engine/engine.js";
import { DEFAULT_ENGINE_OPTIONS } from "../../src/engine/engine-options.js";
import { convertHfCheckpoint } from "../../src/model/conversion/convert.js";
import { loadModelDir } from "../../src/model/load-model.js";
import type { EngineModel } from "../../src/engine/engine.js";

/**
 * The llama.cpp anchor of `make bench` runs the same model as kvwarden: the bench's random Llama
 * generator at a tiny size, converted to GGUF F32 by the bench's own writer, decodes the same
 * greedy tokens in llama.cpp (node-llama-cpp, 1 thread) as in kvwarden float32, with top-1
 * log-probabilities that agree (docs/llama-cpp-anchor.md). Correctness only; speed is the bench's.
 */
const TINY = { ...llama200M(2), hidden: 128, heads: 4, kvHeads: 2, vocab: 512, intermediate: 256 };
const PROMPT = [256, 72, 101, 108, 108, 111, 44, 32, 119, 111, 114, 108, 100, 300, 411, 7];
const GENERATED = 24;
const greedy = { temperature: 0, topK: 0, topP: 0, seed: 0n };

describe("bench: llama.cpp anchor on the bench's model", () => {
  const root = mkdtempSync(join(tmpdir(), "kvwarden-llama-cpp-anchor-"));
  let model: EngineModel;
  let engine: Engine;
  let llamaCpp: LlamaCppEngine;

  beforeAll(async () => {
    const hfDir = join(root, "hf");
    writeRandomCheckpoint(hfDir, TINY, 11);
    writeLlamaGguf(hfDir, join(root, "f32.gguf"), GgmlType.F32);
    await convertHfCheckpoint(hfDir, join(root, "kvwarden"));
    model = await loadModelDir(join(root, "kvwarden"), { executionProvider: "cpu", intraOpThreads: 1 });
    engine = new Engine(model, { ...DEFAULT_ENGINE_OPTIONS, kvBudgetBytes: 2 ** 26, maxSequenceTokens: 256, prefillChunkTokens: 64 });
    llamaCpp = await LlamaCppEngine.load(join(root, "f32.gguf"), 256, 1);
  });
  afterAll(async () => {
    await llamaCpp?.release();
    await model?.runner.release();
    rmSync(root, { recursive: true, force: true });
  });

  it("greedy float32 tokens are identical and top-1 log-probabilities agree", async () => {
    await engine.prefill({ sequenceId: "greedy", tokenIds: PROMPT });
    const kvwarden: number[] = [];
    for await (const token of engine.decode({ sequenceId: "greedy", maxNewTokens: GENERATED, sampling: greedy, stopTokenIds: [], ignoreEos: true })) kvwarden.push(token.tokenId);
    // Scoring the prompt and the generated tokens gives, at each generated position, kvwarden's top-1.
    const scored = await engine.prefill({ sequenceId: "scored", tokenIds: [...PROMPT, ...kvwarden.slice(0, -1)], logprobs: { top: 1 } });
    const kvwardenTop = scored.logprobs!.slice(PROMPT.length).map((score) => score.top[0].logprob);

    const native = await llamaCpp.greedyWithProbabilities(PROMPT, GENERATED);
    expect(native.tokens).toEqual(kvwarden);
    // The run must not be degenerate: a model that repeats one token would pass trivially.
    expect(new Set(kvwarden).size).toBeGreaterThan(4);
    expect(kvwardenTop).toHaveLength(GENERATED - 1);
    kvwardenTop.forEach((logprob, i) => expect(Math.abs(Math.log(native.probabilities[i]) - logprob)).toBeLessThan(5e-4));
  });

  it("Q8_0 and Q4_0 blocks hold a float16 scale and the codes of ggml's formats", () => {
    const values = Float32Array.from({ length: 32 }, (_, j) => j - 16); // largest magnitude: -16
    const q8 = encodeGgmlTensor(values, GgmlType.Q8_0);
    expect(q8.length).toBe(34);
    expect(new DataView(q8.buffer).getUint16(0, true)).toBe(0x3008); // 16 / 127 in float16
    expect(Array.from(new Int8Array(q8.buffer, 2, 32))).toEqual(Array.from(values, (v) => Math.sign(v) * Math.round(Math.abs(v * 127) / 16)));
    const q4 = encodeGgmlTensor(values, GgmlType.Q4_0);
    expect(q4.length).toBe(18);
    expect(new DataView(q4.buffer).getUint16(0, true)).toBe(0x4000); // -16 / -8 = 2
    // Codes floor(v / 2 + 8.5) capped at 15: element j in the low nibble, j + 16 in the high one.
    const code = (v: number) => Math.min(15, Math.floor(v / 2 + 8.5));
    expect(Array.from(q4.subarray(2))).toEqual(Array.from({ length: 16 }, (_, j) => code(values[j]) | (code(values[j + 16]) << 4)));
  });
});
