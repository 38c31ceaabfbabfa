import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Engine, type EngineModel } from "../../src/engine/engine.js";
import { loadModel } from "../../src/model/load-model.js";
import type { ModelRunner } from "../../src/model/runners/model-runner.js";
import { DEFAULT_TEST_OPTIONS } from "../support/test-server.js";
import { MODEL_FILES } from "../support/test-model.js";

/**
 * A device-resident cache undoes a failed multi-chunk prefill as the host slabs do: the chunks that
 * ran had already replaced the device slabs, so the rollback must bring back the earlier entries'
 * layout (and give back the capacity) before the next step reads them.
 */

const PROMPT = Array.from({ length: 21 }, (_, i) => (i === 0 ? 1 : 3 + ((i * 37) % 400)));
const FAILED_FEED = Array.from({ length: 30 }, (_, i) => 5 + i);
const greedy = { temperature: 0, topK: 0, topP: 0, seed: 0n };

/** The runner, failing the step after `steps` more succeed once `failAfter` is called. */
function failing(runner: ModelRunner): { runner: ModelRunner; failAfter(steps: number): void } {
  let remaining = Infinity;
  const wrapped: ModelRunner = Object.create(runner);
  Object.assign(wrapped, {
    run: (input: Parameters<ModelRunner["run"]>[0]) => (remaining-- <= 0 ? ((remaining = Infinity), Promise.reject(new Error("injected step failure"))) : runner.run(input)),
  });
  return { runner: wrapped, failAfter: (steps) => (remaining = steps) };
}

async function tokensAfter(engine: Engine, sequenceId: string): Promise<number[]> {
  const tokens: number[] = [];
  for await (const m of engine.decode({ sequenceId, maxNewTokens: 20, sampling: greedy, stopTokenIds: [], ignoreEos: true })) tokens.push(m.tokenId);
  return tokens;
}

let cpu: EngineModel;
let gpu: EngineModel;
beforeAll(async () => {
  cpu = await loadModel(MODEL_FILES, { executionProvider: "cpu", intraOpThreads: 1 });
  gpu = await loadModel(MODEL_FILES, { executionProvider: "webgpu", intraOpThreads: 1 });
});
afterAll(async () => {
  await cpu.runner.release();
  await gpu.runner.release();
});

describe("a device-resident cache after a failed prefill", () => {
  it("is as before the call: same bytes, same entries, and it decodes as the CPU path that never saw the call", async () => {
    const options = { ...DEFAULT_TEST_OPTIONS, prefillChunkTokens: 8 };
    const faulty = failing(gpu.runner);
    const onGpu = new Engine({ ...gpu, runner: faulty.runner }, options);
    const onCpu = new Engine(cpu, options);
    await onGpu.prefill({ sequenceId: "s", tokenIds: PROMPT });
    await onCpu.prefill({ sequenceId: "s", tokenIds: PROMPT });
    const before = onGpu.stats({ sequenceId: "s", includePositions: true });
    faulty.failAfter(2); // two 8-token chunks run and grow the slabs, the third fails
    await expect(onGpu.prefill({ sequenceId: "s", tokenIds: FAILED_FEED })).rejects.toThrow("injected step failure");
    expect(onGpu.stats({ sequenceId: "s", includePositions: true }).sequences).toEqual(before.sequences.map((s) => ({ ...s, idleMs: expect.any(Number) })));
    expect(onGpu.stats().kvBytesDevice).toBe(before.kvBytesDevice);
    expect(await tokensAfter(onGpu, "s")).toEqual(await tokensAfter(onCpu, "s"));
    onGpu.close();
    onCpu.close();
  });
});
