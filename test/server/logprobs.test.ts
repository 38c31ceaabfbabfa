import { status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { TokenLogprob } from "../../src/gen/kvwarden/v1/kvwarden.js";
import type { ModelWeights } from "../../src/model/checkpoints/model-weights.js";
import { createReferenceCache, evictReference, referenceForward } from "../reference/llama-forward.js";
import { loadTestModel, loadTestWeights, REFERENCE_FIRST_TOKENS } from "../support/test-model.js";
import { decodeAll, startTestServer, statusOf, type TestServer } from "../support/test-server.js";

const PROMPT = [1, ...REFERENCE_FIRST_TOKENS];

/** log-softmax of a reference logits row, in float64. */
function logSoftmax(logits: ArrayLike<number>): number[] {
  const values = Array.from(logits);
  const max = Math.max(...values);
  const log = max + Math.log(values.reduce((sum, v) => sum + Math.exp(v - max), 0));
  return values.map((v) => v - log);
}

/** Reference log-probability of each token after the first, with a full cache. */
function referenceLogprobs(weights: ModelWeights, tokens: number[]): number[] {
  const { logits } = referenceForward(weights, createReferenceCache(weights.config), tokens, 0);
  return tokens.slice(1).map((token, i) => logSoftmax(logits[i])[token]);
}

const maxError = (scored: TokenLogprob[], expected: number[]) => Math.max(...scored.map((s, i) => Math.abs(s.logprob! - expected[i])));

describe("Prefill log-probabilities", () => {
  let t: TestServer;
  let weights: ModelWeights;
  beforeAll(async () => {
    t = await startTestServer(await loadTestModel(), { prefillChunkTokens: 8 });
    weights = loadTestWeights();
  });
  afterAll(() => t.close());

  it("scores every fed token against the reference forward pass; the first token of a sequence has none", async () => {
    const response = await t.client.prefill({ sequenceId: "score", tokenIds: PROMPT, returnLogprobs: true, topLogprobs: 3 });
    expect(response.logprobs).toHaveLength(PROMPT.length);
    expect(response.logprobs[0]).toEqual({ tokenId: 1, top: [], distribution: [] });
    expect(response.logprobs.map((s) => s.tokenId)).toEqual(PROMPT);
    const error = maxError(response.logprobs.slice(1), referenceLogprobs(weights, PROMPT));
    console.log(`prompt log-probabilities vs reference: max abs error ${error.toExponential(2)}`);
    expect(error).toBeLessThan(1e-4);
    // The prompt is the model's own greedy story, so each token is its top choice.
    for (const scored of response.logprobs.slice(1)) {
      expect(scored.top).toHaveLength(3);
      expect(scored.top[0]).toEqual({ tokenId: scored.tokenId, logprob: scored.logprob });
      expect(scored.top[1].logprob).toBeLessThanOrEqual(scored.top[0].logprob);
    }
  });

  it("gives the same scores when the prompt comes in several calls, and after a Decode", async () => {
    const first = await t.client.prefill({ sequenceId: "split", tokenIds: PROMPT.slice(0, 9), returnLogprobs: true });
    const second = await t.client.prefill({ sequenceId: "split", tokenIds: PROMPT.slice(9), returnLogprobs: true });
    const whole = await t.client.prefill({ sequenceId: "whole", tokenIds: PROMPT, returnLogprobs: true });
    const logprobs = (scores: TokenLogprob[]) => scores.slice(1).map((s) => s.logprob!);
    // Chunk boundaries differ, so the sums differ in the last bits only.
    expect(first.logprobs[0].logprob).toBeUndefined();
    expect(maxError([...first.logprobs, ...second.logprobs].slice(1), logprobs(whole.logprobs))).toBeLessThan(1e-5);

    // A decoded token is fed by the next call; that call scores only its own tokens.
    await t.client.prefill({ sequenceId: "after-decode", tokenIds: PROMPT.slice(0, 10) });
    const decoded = await decodeAll(t.client, { sequenceId: "after-decode", maxNewTokens: 1 });
    expect(decoded[0].tokenId).toBe(PROMPT[10]);
    const rest = await t.client.prefill({ sequenceId: "after-decode", tokenIds: PROMPT.slice(11), returnLogprobs: true });
    expect(maxError(rest.logprobs, logprobs(whole.logprobs).slice(10))).toBeLessThan(1e-5);
  });

  it("teacher-forces a continuation over an evicted cache exactly as the reference with the same entries removed", async () => {
    const context = PROMPT.slice(0, 15);
    const continuation = PROMPT.slice(15);
    await t.client.prefill({
      sequenceId: "evicted",
      tokenIds: context,
      eviction: { policy: "streaming_llm", maxTokens: 8, sinkTokens: 2 },
    });
    const scored = await t.client.prefill({ sequenceId: "evicted", tokenIds: continuation, returnLogprobs: true });

    const cache = createReferenceCache(weights.config);
    const { logits } = referenceForward(weights, cache, context, 0);
    const keep = [0, 1, ...Array.from({ length: 6 }, (_, i) => 9 + i)];
    evictReference(cache, cache.map((layer) => layer.map(() => keep)));
    const forced = referenceForward(weights, cache, continuation, context.length);
    const expected = continuation.map((token, i) => logSoftmax(i === 0 ? logits[context.length - 1] : forced.logits[i - 1])[token]);
    expect(maxError(scored.logprobs, expected)).toBeLessThan(1e-4);
    // And eviction did cost something: the full cache scores the continuation differently.
    expect(maxError(scored.logprobs, referenceLogprobs(weights, PROMPT).slice(14))).toBeGreaterThan(1e-3);
  });

  it("returns every position's whole next-token distribution when asked, equal to the reference's", async () => {
    const response = await t.client.prefill({ sequenceId: "dist", tokenIds: PROMPT, returnLogprobs: true, topLogprobs: 2, returnDistribution: true });
    const { logits } = referenceForward(weights, createReferenceCache(weights.config), PROMPT, 0);
    expect(response.logprobs[0].distribution).toEqual([]);
    let worst = 0;
    for (const [i, scored] of response.logprobs.slice(1).entries()) {
      const expected = logSoftmax(logits[i]);
      expect(scored.distribution).toHaveLength(weights.config.vocabSize);
      scored.distribution.forEach((logprob, id) => (worst = Math.max(worst, Math.abs(logprob - expected[id]))));
      // The same numbers as the token's own score and its top list, and a distribution: it sums to 1.
      expect(scored.distribution[scored.tokenId]).toBeCloseTo(scored.logprob!, 6);
      for (const alternative of scored.top) expect(scored.distribution[alternative.tokenId]).toBeCloseTo(alternative.logprob, 6);
      expect(scored.distribution.reduce((sum, logprob) => sum + Math.exp(logprob), 0)).toBeCloseTo(1, 5);
    }
    console.log(`whole distributions vs reference: max abs error ${worst.toExponential(2)}`);
    expect(worst).toBeLessThan(1e-4);
    // Without the option, none are sent.
    const plain = await t.client.prefill({ sequenceId: "dist-plain", tokenIds: PROMPT, returnLogprobs: true });
    expect(plain.logprobs.every((scored) => scored.distribution.length === 0)).toBe(true);
  });

  it("refuses more than 20 alternatives per position, options without return_logprobs, and distributions past the 16 MiB cap", async () => {
    const result = await statusOf(t.client.prefill({ sequenceId: "x", tokenIds: [1], returnLogprobs: true, topLogprobs: 21 }));
    expect(result).toMatchObject({ code: status.INVALID_ARGUMENT, details: expect.stringContaining("top_logprobs") });
    for (const option of [{ topLogprobs: 3 }, { returnDistribution: true }]) {
      const refused = await statusOf(t.client.prefill({ sequenceId: "x", tokenIds: [1], ...option }));
      expect(refused).toMatchObject({ code: status.INVALID_ARGUMENT, details: expect.stringContaining("needs return_logprobs") });
    }
    // 8,193 tokens x 512 vocabulary entries x 4 bytes: one token past the cap, refused before anything is fed
    // (and well within the count of log-probabilities the API took before it was capped in bytes).
    const tokenIds = Array.from({ length: 2 ** 24 / (4 * weights.config.vocabSize) + 1 }, (_, i) => 1 + (i % 500));
    const tooMany = await statusOf(t.client.prefill({ sequenceId: "x", tokenIds, returnLogprobs: true, returnDistribution: true }));
    expect(tooMany).toMatchObject({
      code: status.INVALID_ARGUMENT,
      details: "return_distribution for 8193 tokens is 16779264 bytes of log-probabilities (4 each, vocabulary 512); the cap is 16777216 bytes (16 MiB) per call: score at most 8192 tokens per Prefill",
    });
    expect((await t.client.stats()).sequences.map((s) => s.sequenceId)).not.toContain("x");
  });
});
