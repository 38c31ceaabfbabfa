import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Engine, type EngineModel } from "../../src/engine/engine.js";
import { DEFAULT_ENGINE_OPTIONS } from "../../src/engine/engine-options.js";
import type { KvDtype } from "../../src/kv/layer-cache.js";
import { loadModel } from "../../src/model/load-model.js";
import { life, recording } from "../support/cache-life.js";
import { MODEL_FILES } from "../support/test-model.js";

/**
 * Session threads that keep a sequence's cache between steps and get only its new entries
 * (docs/worker-threads.md) compute exactly what threads sent the whole cache every step do:
 * the same logits, bit for bit, and the same tokens, through eviction, truncate and fork.
 */
describe.each<KvDtype>(["float32", "float16"])("cache layers (%s) kept on the session threads", (kvDtype) => {
  const models: EngineModel[] = [];

  beforeAll(async () => {
    for (const residentInputMinBytes of [Infinity, 0]) {
      models.push(await loadModel(MODEL_FILES, { executionProvider: "cpu", intraOpThreads: 1, sessionThreads: 2, residentInputMinBytes, kvDtype }));
    }
  });
  afterAll(async () => {
    for (const model of models) await model.runner.release();
  });

  it("give the same logits and tokens as the whole cache sent every step", async () => {
    const outcomes: { logits: Float32Array[]; tokens: number[][] }[] = [];
    for (const model of models) {
      const logits: Float32Array[] = [];
      const engine = new Engine({ ...model, runner: recording(model.runner, logits) }, DEFAULT_ENGINE_OPTIONS);
      outcomes.push({ tokens: await life(engine), logits });
      engine.close();
    }
    const [whole, kept] = outcomes;
    expect(kept.tokens).toEqual(whole.tokens);
    expect(kept.logits.length).toBe(whole.logits.length);
    kept.logits.forEach((logits, step) => expect(logits, `step ${step}`).toEqual(whole.logits[step]));
  });
});
