import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Engine, type EngineModel } from "../../src/engine/engine.js";
import { loadModel } from "../../src/model/load-model.js";
import { WebGpuStepRunner } from "../../src/model/runners/webgpu-step-runner.js";
import { DEFAULT_TEST_OPTIONS } from "../support/test-server.js";
import { MODEL_FILES } from "../support/test-model.js";

/**
 * Keys and values stay on the device: decoding, and evicting with a policy that does not score keys,
 * copies none of them to the host; a policy that scores keys has them read back once per layer per
 * eviction, and values never.
 */

const greedy = { temperature: 0, topK: 0, topP: 0, seed: 0n };
const PROMPT = Array.from({ length: 90 }, (_, i) => (i === 0 ? 1 : 3 + ((i * 53) % 400)));

let model: EngineModel;
let keyReads = 0;
beforeAll(async () => {
  model = await loadModel(MODEL_FILES, { executionProvider: "webgpu", intraOpThreads: 1 });
  const runner = model.runner as WebGpuStepRunner;
  const readKeys = runner.readKeys.bind(runner);
  runner.readKeys = (...args) => {
    keyReads++;
    return readKeys(...args);
  };
});
afterAll(() => model.runner.release());

async function decode(engine: Engine, sequenceId: string, tokens: number, eviction?: Parameters<Engine["decode"]>[0]["eviction"]): Promise<void> {
  for await (const _ of engine.decode({ sequenceId, maxNewTokens: tokens, sampling: greedy, stopTokenIds: [], ignoreEos: true, eviction })) {
    // generate
  }
}

describe("what of a device-resident cache comes to the host", () => {
  it("nothing while decoding, under an h2o decode budget or after streaming_llm; the keys once per layer for snapkv", async () => {
    const engine = new Engine(model, DEFAULT_TEST_OPTIONS);
    await engine.prefill({ sequenceId: "s", tokenIds: PROMPT, eviction: { policy: "streaming_llm", budget: { maxTokens: 48 }, params: {} } });
    await decode(engine, "s", 30, { policy: "h2o", budget: { maxTokens: 40 }, params: {} });
    expect(engine.stats({ sequenceId: "s" }).sequences[0].headLengths.flat().every((n) => n <= 40)).toBe(true);
    expect(keyReads).toBe(0);
    // snapkv scores with query rows a sequence keeps only while no policy that reads fewer was named
    // for it (docs/policies.md): a second sequence, named none, keeps them.
    await engine.prefill({ sequenceId: "t", tokenIds: PROMPT });
    expect(keyReads).toBe(0);
    await engine.evict("t", { policy: "snapkv", budget: { maxTokens: 36 }, params: { window: 8 } });
    expect(engine.stats({ sequenceId: "t" }).sequences[0].headLengths.flat().every((n) => n === 36)).toBe(true);
    expect(keyReads).toBe(model.config.layers);
    engine.close();
  });
});
