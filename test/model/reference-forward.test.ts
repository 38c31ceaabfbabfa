import { describe, expect, it } from "vitest";
import { argmax, createReferenceCache, evictReference, referenceForward } from "../reference/llama-forward.js";
import { loadTestWeights, REFERENCE_FIRST_TOKENS } from "../support/test-model.js";

// The reference pass is what the step graph and the server are judged by, so it is first judged itself.
describe("reference forward pass", () => {
  const weights = loadTestWeights();

  it("reproduces llama2.c's published greedy sample from BOS", () => {
    const cache = createReferenceCache(weights.config);
    const tokens: number[] = [];
    let next = 1;
    for (let position = 0; position < REFERENCE_FIRST_TOKENS.length; position++) {
      next = argmax(referenceForward(weights, cache, [next], position).logits[0]);
      tokens.push(next);
    }
    expect(tokens).toEqual(REFERENCE_FIRST_TOKENS);
  });

  it("gives the same logits whether tokens come one at a time or all at once", () => {
    const tokens = [1, ...REFERENCE_FIRST_TOKENS.slice(0, 11)];
    const whole = referenceForward(weights, createReferenceCache(weights.config), tokens, 0);
    const stepwise = createReferenceCache(weights.config);
    tokens.forEach((token, position) => {
      const row = referenceForward(weights, stepwise, [token], position).logits[0];
      row.forEach((value, i) => expect(value).toBeCloseTo(whole.logits[position][i], 10));
    });
  });

  it("evicts entries per layer and head without touching the others", () => {
    const cache = createReferenceCache(weights.config);
    referenceForward(weights, cache, [1, 403, 407, 261, 378], 0);
    const keep = cache.map((layer, l) => layer.map((_, h) => (l + h) % 2 === 0 ? [0, 4] : [1, 2, 3]));
    const kept = keep.map((layer, l) => layer.map((indices, h) => indices.map((i) => cache[l][h][i])));
    evictReference(cache, keep);
    expect(cache).toEqual(kept);
    expect(cache[0][0].map((e) => e.position)).toEqual([0, 4]);
    expect(cache[0][1].map((e) => e.position)).toEqual([1, 2, 3]);
  });
});
