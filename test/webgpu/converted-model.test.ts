import { existsSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Engine, type EngineModel } from "../../src/engine/engine.js";
import { convertHfCheckpoint } from "../../src/model/conversion/convert.js";
import { loadModelDir } from "../../src/model/load-model.js";
import { llama2cAsHfConfig, llama2cAsHfTensors, llama2cTokenizerJson, writeHfCheckpoint, writeTokenizer } from "../model/hf-fixtures.js";
import { DEFAULT_TEST_OPTIONS } from "../support/test-server.js";
import { loadTestWeights, MODEL_FILES, REFERENCE_FIRST_TOKENS } from "../support/test-model.js";

/**
 * A converted model folder on WebGPU: the device-resident step graph is written beside the CPU
 * one (weights referenced in weights.bin, read by onnxruntime) and generates what the CPU path does.
 */
describe("a converted Hugging Face folder with --execution-provider webgpu", () => {
  const root = mkdtempSync(join(tmpdir(), "kvwarden-webgpu-hf-"));
  const outDir = join(root, "converted");
  let gpu: EngineModel;
  let cpu: EngineModel;

  beforeAll(async () => {
    const weights = loadTestWeights();
    const hfDir = join(root, "hf");
    writeHfCheckpoint(hfDir, llama2cAsHfConfig(weights.config), llama2cAsHfTensors(weights), { dtype: "F32", shards: 1 });
    writeTokenizer(hfDir, llama2cTokenizerJson(MODEL_FILES.tokenizerPath, weights.config.vocabSize), { bos_token: "<s>", eos_token: "</s>" }, { bos_token_id: 1, eos_token_id: 2 });
    await convertHfCheckpoint(hfDir, outDir);
    gpu = await loadModelDir(outDir, { executionProvider: "webgpu", intraOpThreads: 1 });
    cpu = await loadModelDir(outDir, { executionProvider: "cpu", intraOpThreads: 1 });
  });
  afterAll(async () => {
    await Promise.all([gpu?.runner.release(), cpu?.runner.release()]);
    rmSync(root, { recursive: true, force: true });
  });

  it("writes the device-resident graph without weights and decodes greedily as the CPU path", async () => {
    const graph = join(outDir, "step-kv-float32-device.onnx");
    expect(existsSync(graph)).toBe(true);
    expect(statSync(graph).size).toBeLessThan(64 * 1024);
    const generate = async (model: EngineModel) => {
      const engine = new Engine(model, DEFAULT_TEST_OPTIONS);
      await engine.prefill({ sequenceId: "s", tokenIds: [1] });
      const tokens: number[] = [];
      for await (const m of engine.decode({ sequenceId: "s", maxNewTokens: 40, sampling: { temperature: 0, topK: 0, topP: 0, seed: 0n }, stopTokenIds: [], ignoreEos: true })) {
        tokens.push(m.tokenId);
      }
      engine.close();
      return tokens;
    };
    const onGpu = await generate(gpu);
    expect(onGpu.slice(0, REFERENCE_FIRST_TOKENS.length)).toEqual(REFERENCE_FIRST_TOKENS);
    expect(onGpu).toEqual(await generate(cpu));
  });
});
