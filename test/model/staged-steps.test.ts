import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Engine, type EngineModel } from "../../src/engine/engine.js";
import { DEFAULT_ENGINE_OPTIONS } from "../../src/engine/engine-options.js";
import type { KvDtype } from "../../src/kv/layer-cache.js";
import { loadModel } from "../../src/model/load-model.js";
import { STAGED_STEP_MIN_SLOTS, stageBounds } from "../../src/model/runners/step-runner.js";
import { GREEDY, life, prompt, recording } from "../support/cache-life.js";
import { MODEL_FILES } from "../support/test-model.js";

const load = (stepStages: number | undefined, kvDtype: KvDtype = "float32") =>
  loadModel(MODEL_FILES, { executionProvider: "cpu", intraOpThreads: 1, sessionThreads: 1, stepStages, kvDtype });

describe("stageBounds", () => {
  it("cuts the layers into as even stages as they divide, never more stages than layers", () => {
    expect(stageBounds(5, 5)).toEqual([0, 1, 2, 3, 4, 5]);
    expect(stageBounds(5, 2)).toEqual([0, 3, 5]);
    expect(stageBounds(12, 4)).toEqual([0, 3, 6, 9, 12]);
    expect(stageBounds(5, 9)).toEqual([0, 1, 2, 3, 4, 5]);
    expect(stageBounds(5, 1)).toEqual([0, 5]);
  });
});

/**
 * Long decode steps cut into stages (RunnerOptions.stepStages, docs/worker-threads.md) compute
 * exactly what whole steps do: the same logits, bit for bit, and the same tokens, through eviction,
 * truncate, fork and batches; stories260K's weights are small enough that stages are its default.
 */
describe.each<KvDtype>(["float32", "float16"])("steps in stages (%s)", (kvDtype) => {
  const models = new Map<string, EngineModel>();

  beforeAll(async () => {
    for (const [name, stepStages] of [["whole", 1], ["default", undefined], ["two stages", 2]] as const) models.set(name, await load(stepStages, kvDtype));
  });
  afterAll(async () => {
    for (const model of models.values()) await model.runner.release();
  });

  it("go in stages for decode steps over 4,096 cached slots or more, unless told not to", () => {
    for (const [name, model] of models) {
      expect(model.runner.parallelism, name).toBe(1);
      expect(model.runner.decodeInStages?.(STAGED_STEP_MIN_SLOTS), name).toBe(name !== "whole");
      expect(model.runner.decodeInStages?.(STAGED_STEP_MIN_SLOTS - 1), name).toBe(false);
    }
  });

  it("give the same logits and tokens as whole steps", async () => {
    const outcomes = new Map<string, { logits: Float32Array[]; tokens: number[][] }>();
    for (const [name, model] of models) {
      const logits: Float32Array[] = [];
      const engine = new Engine({ ...model, runner: recording(model.runner, logits) }, { ...DEFAULT_ENGINE_OPTIONS, allowPastContext: true });
      // From 4,200 tokens, its decode steps attend enough slots to go in stages (STAGED_STEP_MIN_SLOTS).
      outcomes.set(name, { tokens: await life(engine, 4200), logits });
      engine.close();
    }
    const whole = outcomes.get("whole")!;
    for (const [name, staged] of outcomes) {
      expect(staged.tokens, name).toEqual(whole.tokens);
      expect(staged.logits.length, name).toBe(whole.logits.length);
      staged.logits.forEach((logits, step) => expect(logits, `${name}, step ${step}`).toEqual(whole.logits[step]));
    }
  });
});

describe("a short stream beside a long one whose steps go in stages", () => {
  let model: EngineModel;
  beforeAll(async () => {
    model = await load(undefined);
  });
  afterAll(() => model.runner.release());

  it("generates, in both streams, the tokens each generates alone", async () => {
    const engine = new Engine(model, { ...DEFAULT_ENGINE_OPTIONS, allowPastContext: true });
    const decode = async (sequenceId: string, tokens: number) => {
      const out: number[] = [];
      for await (const token of engine.decode({ sequenceId, maxNewTokens: tokens, sampling: GREEDY, stopTokenIds: [], ignoreEos: true })) out.push(token.tokenId);
      return out;
    };
    // 4,500 cached: every long decode step is staged (STAGED_STEP_MIN_SLOTS), each short one whole, in lanes of their own.
    await engine.prefill({ sequenceId: "long", tokenIds: prompt(4500) });
    await engine.prefill({ sequenceId: "short", tokenIds: prompt(6) });
    await engine.fork("long", "long-beside");
    await engine.fork("short", "short-beside");
    const alone = [await decode("long", 12), await decode("short", 60)];
    const beside = await Promise.all([decode("long-beside", 12), decode("short-beside", 60)]);
    expect(beside).toEqual(alone);
    engine.close();
  });
});
