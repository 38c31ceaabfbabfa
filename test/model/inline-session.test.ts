import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { Engine, type EngineModel } from "../../src/engine/engine.js";
import { DEFAULT_ENGINE_OPTIONS } from "../../src/engine/engine-options.js";
import type { ModelConfig } from "../../src/model/config/model-config.js";
import { loadModel } from "../../src/model/load-model.js";
import { INLINE_RUN_MAX_FLOPS, InlineSession, runFlops } from "../../src/model/runners/inline-session.js";
import type { ModelRunner, StepOutput } from "../../src/model/runners/model-runner.js";
import { MODEL_FILES, loadTestWeights } from "../support/test-model.js";

const GREEDY = { temperature: 0, topK: 0, topP: 0, seed: 0n };
const prompt = (n: number) => Array.from({ length: n }, (_, i) => (i === 0 ? 1 : 3 + ((i * 7919) % 500)));

/** Every step's logits, by the step's positions and tokens: steps of different lanes may run in another order once two run at once. */
function recording(runner: ModelRunner, logits: Map<string, Float32Array>): ModelRunner {
  const keep = (key: string) => (out: StepOutput) => {
    logits.set(key, Float32Array.from(out.logits));
    return out;
  };
  return Object.assign(Object.create(runner) as ModelRunner, {
    run: (input: Parameters<ModelRunner["run"]>[0]) => runner.run(input).then(keep(`${input.firstPosition}: ${input.tokens.join()}`)),
    runDecodeBatch: (input: Parameters<ModelRunner["runDecodeBatch"]>[0]) => runner.runDecodeBatch(input).then(keep(`${input.positions.join()}: ${input.tokens.join()}`)),
  });
}

describe("which runs are done on the event loop", () => {
  const stories260K = loadTestWeights().config;

  it("counts a run's arithmetic: projections, classifier and attention per token row", () => {
    // stories260K: 5 layers of 45,312 projection weights, a 32,768-weight classifier, 640 attention multiply-adds per cached entry.
    expect(runFlops(stories260K, 1, 0)).toBe(2 * (5 * 45_312 + 32_768));
    expect(runFlops(stories260K, 1, 1000)).toBe(2 * (5 * 45_312 + 32_768) + 2 * 640 * 1000);
    expect(runFlops(stories260K, 3, 10)).toBe(3 * runFlops(stories260K, 1, 10));
  });

  it("takes stories260K's decode steps up to about 1,150 cached entries and prefill chunks of up to 3 tokens", () => {
    const inline = (tokens: number, cached: number) => runFlops(stories260K, tokens, cached) <= INLINE_RUN_MAX_FLOPS;
    expect([1, 1000, 1150, 1200, 8192].map((cached) => inline(1, cached))).toEqual([true, true, true, false, false]);
    expect([2, 3, 4, 512].map((tokens) => inline(tokens, 0))).toEqual([true, true, false, false]);
  });

  it("creates no session for a model whose smallest run is larger (no second copy of its weights)", async () => {
    const llama200M: ModelConfig = { ...stories260K, dim: 1024, hiddenDim: 2816, layers: 12, heads: 16, kvHeads: 16, headSize: 64, vocabSize: 32_000 };
    expect(await InlineSession.create(new Uint8Array(), {}, llama200M, INLINE_RUN_MAX_FLOPS)).toBeUndefined();
    expect(await InlineSession.create(new Uint8Array(), {}, stories260K, 0)).toBeUndefined();
  });
});

/**
 * Small runs done on the event loop compute exactly what the session threads do: the same logits,
 * bit for bit, and the same tokens, for prefill chunks, decode steps of a short and a long sequence
 * (the long one's steps still cross) and batches of both.
 */
describe("runs done on the event loop", () => {
  const models: EngineModel[] = [];

  beforeAll(async () => {
    for (const inlineRunMaxFlops of [0, undefined]) {
      models.push(await loadModel(MODEL_FILES, { executionProvider: "cpu", intraOpThreads: 1, sessionThreads: 1, inlineRunMaxFlops }));
    }
  });
  afterAll(async () => {
    for (const model of models) await model.runner.release();
  });

  it("run one more lane at once, and give the threads' logits and tokens", async () => {
    expect(models.map((model) => model.runner.parallelism)).toEqual([1, 2]);
    const done = vi.spyOn(InlineSession.prototype, "run");
    const outcomes: { logits: Map<string, Float32Array>; tokens: number[][]; inline: number }[] = [];
    for (const model of models) {
      done.mockClear();
      const logits = new Map<string, Float32Array>();
      const engine = new Engine({ ...model, runner: recording(model.runner, logits) }, { ...DEFAULT_ENGINE_OPTIONS, allowPastContext: true, maxSequenceTokens: 4096 });
      const decode = async (sequenceId: string, tokens: number) => {
        const out: number[] = [];
        for await (const token of engine.decode({ sequenceId, maxNewTokens: tokens, sampling: GREEDY, stopTokenIds: [], ignoreEos: true })) out.push(token.tokenId);
        return out;
      };
      await engine.prefill({ sequenceId: "short", tokenIds: [1, 403] });
      await engine.prefill({ sequenceId: "long", tokenIds: prompt(1500) });
      const tokens = [await decode("short", 30), await decode("long", 5), ...(await Promise.all([decode("short", 20), decode("long", 8)]))];
      const inlineRuns = done.mock.calls.length;
      // Batches cross: the short stream beside one of 40 entries shares its lane's runs.
      await engine.prefill({ sequenceId: "near", tokenIds: prompt(40) });
      tokens.push(...(await Promise.all([decode("short", 10), decode("near", 10)])));
      outcomes.push({ logits, tokens, inline: inlineRuns });
      engine.close();
    }
    done.mockRestore();
    const [threads, inline] = outcomes;
    expect(threads.inline).toBe(0);
    // The short stream's two-token prefill and its 29 + 20 steps (its first token came from the prefill); not the long one's.
    expect(inline.inline).toBe(1 + 29 + 20);
    expect(inline.tokens).toEqual(threads.tokens);
    expect([...inline.logits.keys()].sort()).toEqual([...threads.logits.keys()].sort());
    for (const [step, logits] of inline.logits) expect(logits).toEqual(threads.logits.get(step));
  });
});
