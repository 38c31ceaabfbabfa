import ort from "onnxruntime-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildLeanGraph, leanGreedy } from "../../bench/lean-graph.js";
import { buildOptimumDecoderGraph, loadTransformersJs, transformersJsGreedy, type TransformersJsModel } from "../../bench/transformers-js.js";
import { loadTestWeights, MODEL_FILES, REFERENCE_FIRST_TOKENS, REFERENCE_TEXT } from "../support/test-model.js";

/**
 * The benchmark's comparison engines decode what the published llama2.c
 * sample says: the lean graph in a bare loop, and transformers.js loading the
 * exported Optimum-layout folder offline. (Correctness only; speed is `make bench`.)
 */
describe("bench: lean graph and transformers.js on stories260K", () => {
  const weights = loadTestWeights();
  let transformersJs: TransformersJsModel;

  beforeAll(async () => {
    transformersJs = await loadTransformersJs(weights, MODEL_FILES.tokenizerPath, 1);
  });
  afterAll(async () => {
    await transformersJs?.release();
  });

  it("exports a graph with Optimum's decoder inputs and outputs", async () => {
    const session = await ort.InferenceSession.create(buildOptimumDecoderGraph(weights, 64), { intraOpNumThreads: 1, logSeverityLevel: 3 });
    const layers = Array.from({ length: weights.config.layers }, (_, l) => l);
    expect(session.inputNames).toEqual(["input_ids", "attention_mask", "position_ids", ...layers.flatMap((l) => [`past_key_values.${l}.key`, `past_key_values.${l}.value`])]);
    expect(session.outputNames).toEqual(["logits", ...layers.flatMap((l) => [`present.${l}.key`, `present.${l}.value`])]);
    await session.release();
  });

  it("transformers.js generate() decodes the reference sample from BOS", async () => {
    const { tokens } = await transformersJsGreedy(transformersJs.model, 200);
    expect(tokens.slice(0, 20)).toEqual(REFERENCE_FIRST_TOKENS);
    expect(transformersJs.decode(tokens)).toBe(REFERENCE_TEXT);
  });

  it("the lean graph's bare loop picks the same tokens", async () => {
    const session = await ort.InferenceSession.create(buildLeanGraph(weights, 64), { intraOpNumThreads: 1, logSeverityLevel: 3 });
    const { tokens } = await leanGreedy(session, weights, 20);
    expect(tokens).toEqual(REFERENCE_FIRST_TOKENS);
    await session.release();
  });
});
