import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Engine, type EngineModel } from "../../src/engine/engine.js";
import { DEFAULT_ENGINE_OPTIONS } from "../../src/engine/engine-options.js";
import type { KvDtype } from "../../src/kv/layer-cache.js";
import { loadModel } from "../../src/model/load-model.js";
import type { ModelRunner, StepOutput } from "../../src/model/runners/model-runner.js";
import { STAGED_STEP_MIN_SLOTS, stageBounds } from "../../src/model/runners/step-runner.js";
import { MODEL_FILES } from "../support/test-model.js";

const GREEDY = { temperature: 0, topK: 0, topP: 0, seed: 0n };
const prompt = (n: number) => Array.from({ length: n }, (_, i) => (i === 0 ? 1 : 3 + ((i * 7919) % 500)));

const load = (stepStages: number | undefined, kvDtype: KvDtype = "float32") =>
  loadModel(MODEL_FILES, { executionProvider: "cpu", intraOpThreads: 1, sessionThreads: 1, stepStages, kvDtype });

/** The logits of every step over a long context (STAGED_STEP_MIN_SLOTS or more), in order, and whether it went in stages. */
function recordingLongSteps(runner: ModelRunner, steps: { logits: Float32Array; inStages: boolean }[]): ModelRunner {
  const long = (past: readonly { capacity: number }[]) => Math.max(...past.map((layer) => layer.capacity)) >= STAGED_STEP_MIN_SLOTS;
  const keep = (inStages: boolean | undefined) => (out: StepOutput) => {
    steps.push({ logits: Float32Array.from(out.logits), inStages: inStages === true });
    return out;
  };
  return Object.assign(Object.create(runner) as ModelRunner, {
    run: (input: Parameters<ModelRunner["run"]>[0]) => (long(input.past) && input.tokens.length === 1 ? runner.run(input).then(keep(input.inStages)) : runner.run(input)),
    runDecodeBatch: (input: Parameters<ModelRunner["runDecodeBatch"]>[0]) => runner.runDecodeBatch(input),
  });
}

describe("stageBounds", () => {
  it("cuts the layers into as even stages as they divide, never more stages than layers", () => {
    expect(stageBounds(5, 5)).toEqual([0, 1, 2, 3, 4, 5]);
    expect(stageBounds(5, 2)).toEqual([0, 3, 5]);
    expect(stageBounds(12, 4)).toEqual([0, 3, 6, 9, 12]);
    expect(stageBounds(5, 9)).toEqual([0, 1, 2, 3, 4, 5]);
    expect(stageBounds(5, 1)).toEqual([0, 5]);
  });
});

describe("which steps may go in stages", () => {
  const models = new Map<string, EngineModel>();
  beforeAll(async () => {
    for (const [name, stepStages] of [["whole", 1], ["default", undefined], ["two stages", 2]] as const) models.set(name, await load(stepStages));
  });
  afterAll(async () => {
    for (const model of models.values()) await model.runner.release();
  });

  it("decode steps over 4,096 cached slots or more, unless told not to; one run at a time per thread", () => {
    for (const [name, model] of models) {
      expect(model.runner.parallelism, name).toBe(1);
      expect(model.runner.decodeInStages?.(STAGED_STEP_MIN_SLOTS), name).toBe(name !== "whole");
      expect(model.runner.decodeInStages?.(STAGED_STEP_MIN_SLOTS - 1), name).toBe(false);
    }
  });
});

/**
 * A long stream's decode steps go in stages while a short stream decodes beside it, the short
 * one's steps between them (docs/worker-threads.md); stories260K's weights are small enough that
 * stages are its default. Both streams generate what they generate alone, and the long one's steps
 * give bit for bit the logits of its whole steps alone.
 */
describe.each<{ kvDtype: KvDtype; stepStages?: number }>([
  { kvDtype: "float32" },
  { kvDtype: "float16" },
  { kvDtype: "float32", stepStages: 2 },
])("a short stream beside a long one whose steps go in stages ($kvDtype, --step-stages $stepStages)", ({ kvDtype, stepStages }) => {
  let model: EngineModel;
  beforeAll(async () => {
    model = await load(stepStages, kvDtype);
  });
  afterAll(() => model.runner.release());

  it("generates in both streams the tokens each generates alone; the long one's logits are those of its whole steps", async () => {
    const steps: { logits: Float32Array; inStages: boolean }[] = [];
    const engine = new Engine({ ...model, runner: recordingLongSteps(model.runner, steps) }, { ...DEFAULT_ENGINE_OPTIONS, allowPastContext: true });
    const decode = async (sequenceId: string, tokens: number) => {
      const out: number[] = [];
      for await (const token of engine.decode({ sequenceId, maxNewTokens: tokens, sampling: GREEDY, stopTokenIds: [], ignoreEos: true })) out.push(token.tokenId);
      return out;
    };
    // 4,500 cached: the long stream's steps attend enough slots to go in stages, the short one's not, in lanes of their own.
    await engine.prefill({ sequenceId: "long", tokenIds: prompt(4500) });
    await engine.prefill({ sequenceId: "short", tokenIds: prompt(6) });
    await engine.fork("long", "long-beside");
    await engine.fork("short", "short-beside");
    const alone = [await decode("long", 12), await decode("short", 100)];
    const stepsAlone = steps.splice(0);
    const beside = await Promise.all([decode("long-beside", 12), decode("short-beside", 100)]);
    expect(beside).toEqual(alone);
    // Alone, the long stream's steps run whole (stages would only cost); beside the short one, in stages.
    // (The first of 12 tokens comes from the prompt's logits: 11 steps.) Beside, those taken while the short one decodes.
    expect(stepsAlone.map((step) => step.inStages)).toEqual(Array(11).fill(false));
    expect(steps).toHaveLength(11);
    expect(steps.filter((step) => step.inStages).length).toBeGreaterThanOrEqual(3);
    steps.forEach((step, i) => expect(step.logits, `step ${i}`).toEqual(stepsAlone[i].logits));
    engine.close();
  });
});
