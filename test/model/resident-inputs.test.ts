import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Engine, type EngineModel } from "../../src/engine/engine.js";
import { DEFAULT_ENGINE_OPTIONS } from "../../src/engine/engine-options.js";
import type { KvDtype } from "../../src/kv/layer-cache.js";
import { loadModel } from "../../src/model/load-model.js";
import type { ModelRunner, StepOutput } from "../../src/model/runners/model-runner.js";
import { MODEL_FILES } from "../support/test-model.js";

const GREEDY = { temperature: 0, topK: 0, topP: 0, seed: 0n };
const prompt = (n: number) => Array.from({ length: n }, (_, i) => (i === 0 ? 1 : 3 + ((i * 7919) % 500)));

/** Every step's logits, in the order the steps ran. */
function recording(runner: ModelRunner, logits: Float32Array[]): ModelRunner {
  const keep = (out: StepOutput) => {
    logits.push(Float32Array.from(out.logits));
    return out;
  };
  return Object.assign(Object.create(runner) as ModelRunner, {
    run: (input: Parameters<ModelRunner["run"]>[0]) => runner.run(input).then(keep),
    runDecodeBatch: (input: Parameters<ModelRunner["runDecodeBatch"]>[0]) => runner.runDecodeBatch(input).then(keep),
  });
}

/**
 * What a sequence's life does to its cache (prefill, decode, eviction, truncate, fork, neighbours
 * stepping with it in one batch), in the same order every time: calls one at a time, or two
 * decodes started together (their steps run as batches, through the batch arena).
 */
async function life(engine: Engine): Promise<number[][]> {
  const decode = async (sequenceId: string, tokens: number) => {
    const out: number[] = [];
    for await (const token of engine.decode({ sequenceId, maxNewTokens: tokens, sampling: GREEDY, stopTokenIds: [], ignoreEos: true })) out.push(token.tokenId);
    return out;
  };
  const generated: number[][] = [];
  await engine.prefill({ sequenceId: "long", tokenIds: prompt(300) });
  generated.push(await decode("long", 40));
  await engine.evict("long", { policy: "h2o", budget: { maxTokens: 200 }, params: {} });
  generated.push(await decode("long", 20));
  await engine.truncate("long", 350);
  generated.push(await decode("long", 20));
  await engine.fork("long", "copy");
  generated.push(await decode("copy", 20), await decode("long", 10));
  generated.push(...(await Promise.all([decode("copy", 12), decode("long", 16)])));
  await engine.prefill({ sequenceId: "short", tokenIds: prompt(5) });
  generated.push(await decode("short", 10), await decode("long", 10));
  generated.push(...(await Promise.all([decode("short", 14), decode("long", 10)])));
  // The long one leaves first: the two short ones go on in a batch arena shrunk to them (laid out anew, not sent again).
  await engine.prefill({ sequenceId: "other", tokenIds: prompt(7) });
  generated.push(...(await Promise.all([decode("long", 3), decode("short", 20), decode("other", 20)])));
  return generated;
}

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
