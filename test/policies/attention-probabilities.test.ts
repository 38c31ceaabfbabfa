import { describe, expect, it } from "vitest";
import { summedAttention } from "../../src/policies/scorers/attention-probabilities.js";
import { cacheView, naiveAttention } from "./support/cache-view.js";

describe("summedAttention", () => {
  it("sums causal softmax rows, masking entries after each row's position", () => {
    // d = 1, query 1: logits are the keys 0, ln 2, ln 3, so weights 1 : 2 : 3.
    const cache = cacheView({
      heads: 1,
      layers: [[{ keys: [[0], [Math.log(2)], [Math.log(3)]] }]],
      queries: { positions: [1, 2], layers: [[[[1], [1]]]] },
    });
    // Row at position 1 sees slots 0, 1: 1/3, 2/3. Row at position 2 sees all: 1/6, 2/6, 3/6.
    const sums = Array.from(summedAttention(cache, 0, 0, [0, 1]));
    [1 / 3 + 1 / 6, 2 / 3 + 2 / 6, 3 / 6].forEach((expected, slot) => expect(sums[slot]).toBeCloseTo(expected, 6));
    expect(Array.from(summedAttention(cache, 0, 0, [0]))[2]).toBe(0);
  });

  it("scales logits by 1/sqrt(d) and reads each query head's own KV head (GQA)", () => {
    // d = 4: query (2, 0, 0, 0) gives logits 2 * k0 / 2 = k0.
    const keysHead0 = [
      [0, 9, 9, 9],
      [1, -9, 0, 0],
    ];
    const keysHead1 = [
      [3, 0, 0, 0],
      [0, 0, 0, 5],
    ];
    const queries = [[[2, 0, 0, 0]], [[0, 0, 0, 1]], [[2, 0, 0, 0]], [[0, 0, 0, 1]]];
    const cache = cacheView({
      heads: 4,
      layers: [[{ keys: keysHead0 }, { keys: keysHead1 }]],
      queries: { positions: [1], layers: [queries] },
    });
    for (let q = 0; q < 4; q++) {
      const keys = q < 2 ? keysHead0 : keysHead1;
      const expected = naiveAttention(queries[q][0], keys, [0, 1], 1);
      const got = Array.from(summedAttention(cache, 0, q, [0]));
      expected.forEach((p, slot) => expect(got[slot]).toBeCloseTo(p, 6));
    }
    // Query head 2 on KV head 1: logits 3 and 0.
    expect(summedAttention(cache, 0, 2, [0])[0]).toBeCloseTo(Math.exp(3) / (Math.exp(3) + 1), 6);
  });

  it("follows original positions, not slots, after an eviction", () => {
    // Entries at positions 0, 5, 9; a row at position 6 sees only the first two.
    const cache = cacheView({
      heads: 1,
      layers: [[{ keys: [[0], [0], [0]], positions: [0, 5, 9] }]],
      queries: { positions: [6], layers: [[[[1]]]] },
    });
    expect(Array.from(summedAttention(cache, 0, 0, [0]))).toEqual([0.5, 0.5, 0]);
  });
});
