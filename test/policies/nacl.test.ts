import { describe, expect, it } from "vitest";
import { SeededRandom } from "../../src/numerics/seeded-random.js";
import { naclPolicy, naclSplit } from "../../src/policies/nacl.js";
import type { GroupReduction } from "../../src/policies/policy.js";
import { cacheView, evictionSpec, kept, naiveAttention, planNow, scalarKeys } from "./support/cache-view.js";
import { minimumBudget } from "../../src/policies/protected-parts.js";

const range = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => from + i);

/** One layer, one KV head, `heads` query heads all asking with query 1 (logits = keys) from the given rows. */
function naclCache(keys: number[], rowPositions: number[], heads = 1) {
  return cacheView({
    heads,
    layers: [[scalarKeys(keys)]],
    queries: { positions: rowPositions, layers: [Array.from({ length: heads }, () => rowPositions.map(() => [1]))] },
  });
}

describe("naclSplit", () => {
  it("gives the random draws floor(7/19) of what is left and the top-k the rest", () => {
    const split = (n: number) => Object.values(naclSplit(n));
    expect(split(0)).toEqual([0, 0]);
    expect(split(1)).toEqual([1, 0]);
    expect(split(2)).toEqual([2, 0]);
    expect(split(3)).toEqual([2, 1]);
    expect(split(5)).toEqual([4, 1]);
    expect(split(19)).toEqual([12, 7]);
    expect(split(38)).toEqual([24, 14]);
    expect(split(-2)).toEqual([0, 0]);
  });

  it("gives the random draws floor(share x what is left) for another random_share", () => {
    expect(naclSplit(19, 0)).toEqual({ topCount: 19, randomCount: 0 });
    expect(naclSplit(19, 1)).toEqual({ topCount: 0, randomCount: 19 });
    expect(naclSplit(7, 0.5)).toEqual({ topCount: 4, randomCount: 3 });
  });
});

describe("nacl", () => {
  // T = 20: sinks are slots 0, 1 (S = 2); the last two positions are the proxies (P = 2).
  const candidates = [1, 4, 0, 2, 7, 3, 0, 5, 1, 0, 6, 2, 0, 3, 1, 0];
  const keys = [0, 0, ...candidates, 0, 0];
  const params = { sinkTokens: 2, proxyTokens: 2 };

  it("keeps sinks, proxies, the proxy top-k and a uniform seeded draw (temperature 0)", () => {
    const cache = naclCache(keys, [18, 19], 2);
    // C = 7: 3 left after 2 sinks and 2 proxies -> top 2 (keys 7, 6: slots 6, 12) and 1 random.
    for (const seed of [0n, 7n, 123456789n]) {
      const plan = planNow(naclPolicy, cache, () => 7, evictionSpec("nacl", { ...params, temperature: 0 }, seed));
      // Uniform draw, independently: one uniform number per remaining slot in slot order; the largest wins.
      const random = new SeededRandom(seed);
      const remaining = range(2, 18).filter((slot) => slot !== 6 && slot !== 12);
      const draws = remaining.map(() => random.next());
      const drawn = remaining[draws.indexOf(Math.max(...draws))];
      expect(kept(plan)).toEqual([[[0, 1, 6, 12, drawn, 18, 19].sort((a, b) => a - b)]]);
    }
  });

  it("draws the highest-scoring remaining entry when the temperature is tiny", () => {
    const cache = naclCache(keys, [18, 19], 2);
    for (let seed = 0n; seed < 20n; seed++) {
      // After 7 and 6, key 5 (slot 9) dominates softmax(score / 1e-4).
      expect(kept(planNow(naclPolicy, cache, () => 7, evictionSpec("nacl", { ...params, temperature: 1e-4 }, seed)))).toEqual([[[0, 1, 6, 9, 12, 18, 19]]]);
    }
  });

  it("draws with p = softmax(score / temperature) among the not-yet-kept", () => {
    // S = 1, P = 1; candidates slots 1..4 with keys 3, 3, 1, 0: top 2 takes slots 1, 2, one draw between slots 3 and 4.
    const smallKeys = [0, 3, 3, 1, 0, 0];
    const cache = naclCache(smallKeys, [5]);
    const p = naiveAttention([1], smallKeys.map((k) => [k]), range(0, 6), 5);
    const temperature = 0.03;
    const expected = 1 / (1 + Math.exp((p[4] - p[3]) / temperature));
    let slot3 = 0;
    const trials = 2000;
    for (let seed = 0; seed < trials; seed++) {
      const [[slots]] = kept(planNow(naclPolicy, cache, () => 5, evictionSpec("nacl", { sinkTokens: 1, proxyTokens: 1, temperature }, BigInt(seed))));
      expect(slots.slice(0, 3)).toEqual([0, 1, 2]);
      if (slots.includes(3)) slot3++;
    }
    expect(expected).toBeGreaterThan(0.7);
    expect(Math.abs(slot3 / trials - expected)).toBeLessThan(0.04);
  });

  it("scores with the group sum by default, which sharpens the draws against the group mean", () => {
    // Two identical query heads: the sum doubles every score, the mean does not, so p(slot 3) differs.
    const smallKeys = [0, 3, 3, 1, 0, 0];
    const cache = naclCache(smallKeys, [5], 2);
    const p = naiveAttention([1], smallKeys.map((k) => [k]), range(0, 6), 5);
    const temperature = 0.03;
    const expectedDraw = (seed: bigint, reduction: GroupReduction) => {
      const random = new SeededRandom(seed);
      const scale = reduction === "sum" ? 2 : 1;
      const [key3, key4] = [3, 4].map((slot) => (scale * p[slot]) / temperature - Math.log(-Math.log(random.next())));
      return key4 > key3 ? 4 : 3;
    };
    let differing = 0;
    for (let seed = 0n; seed < 200n; seed++) {
      const draws = (["sum", "mean"] as const).map((groupReduction) => {
        const [[slots]] = kept(planNow(naclPolicy, cache, () => 5, evictionSpec("nacl", { sinkTokens: 1, proxyTokens: 1, temperature, groupReduction }, seed)));
        expect(slots).toEqual([0, 1, 2, expectedDraw(seed, groupReduction), 5]);
        return slots[3];
      });
      const [viaDefault] = kept(planNow(naclPolicy, cache, () => 5, evictionSpec("nacl", { sinkTokens: 1, proxyTokens: 1, temperature }, seed)))[0];
      expect(viaDefault[3]).toBe(draws[0]);
      if (draws[0] !== draws[1]) differing++;
    }
    expect(differing).toBeGreaterThan(0);
  });

  describe("seeded draws", () => {
    // T = 60, all keys 0: every candidate scores the same, so the top 12 are the earliest and the draws are uniform.
    const cache = naclCache(new Array(60).fill(0), [56, 57, 58, 59]);
    const plan = (seed: bigint) => kept(planNow(naclPolicy, cache, () => 27, evictionSpec("nacl", { proxyTokens: 4 }, seed)))[0][0];

    it("keeps the same entries for the same seed and different ones for another", () => {
      expect(plan(1n)).toEqual(plan(1n));
      expect(plan(1n)).not.toEqual(plan(2n));
    });

    it("draws 7 of the remaining 40 by the seed's uniform numbers", () => {
      // C = 27: 4 sinks, 4 proxies, 19 left -> top 12 (slots 4..15) and 7 random from slots 16..55.
      const random = new SeededRandom(42n);
      const draws = range(16, 56).map((slot) => ({ slot, u: random.next() }));
      const drawn = draws
        .sort((a, b) => b.u - a.u)
        .slice(0, 7)
        .map((d) => d.slot);
      expect(plan(42n)).toEqual([...range(0, 16), ...drawn, 56, 57, 58, 59].sort((a, b) => a - b));
    });
  });

  it("keeps the proxy top-k alone with random_share 0, whatever the seed", () => {
    // C = 7: 2 sinks, 2 proxies, 3 left, all to the top-k: keys 7, 6, 5 at slots 6, 12, 9.
    const cache = naclCache(keys, [18, 19], 2);
    for (const seed of [0n, 5n, 99n]) {
      expect(kept(planNow(naclPolicy, cache, () => 7, evictionSpec("nacl", { ...params, randomShare: 0 }, seed)))).toEqual([[[0, 1, 6, 9, 12, 18, 19]]]);
    }
  });

  it("pools the scores over neighbours for the pooling ablation, sinks and proxies counting 0", () => {
    // One candidate stands out (key 8 at slot 10); max-pooling with kernel 3 lifts slots 9 and 11 to its score,
    // so the top 3 are the peak and both neighbours; unpooled, the next best (keys 2 at slots 4 and 15) would win.
    const peaked = new Array(20).fill(0);
    peaked[10] = 8;
    peaked[4] = 2;
    peaked[15] = 2;
    peaked[0] = 9; // a sink: its score must not lift slot 1.
    const cache = naclCache(peaked, [18, 19]);
    const spec = (extra: object) => evictionSpec("nacl", { ...params, randomShare: 0, ...extra }, 1n);
    expect(kept(planNow(naclPolicy, cache, () => 7, spec({}))))
      .toEqual([[[0, 1, 4, 10, 15, 18, 19]]]);
    expect(kept(planNow(naclPolicy, cache, () => 7, spec({ pooling: "max", kernelSize: 3 })))).toEqual([[[0, 1, 9, 10, 11, 18, 19]]]);
  });

  it("protects the proxy span's entries and scores with its rows", () => {
    // Rows held for positions 8..19; the proxy span is [10, 12). Keys 6 and 5 at slots 5 and 7 lead.
    const spanKeys = new Array(20).fill(0);
    spanKeys[5] = 6;
    spanKeys[7] = 5;
    spanKeys[15] = 9; // after the span: the proxy rows cannot see it, so it scores 0.
    const cache = naclCache(spanKeys, range(8, 20));
    const [[slots]] = kept(planNow(naclPolicy, cache, () => 7, evictionSpec("nacl", { sinkTokens: 2, proxySpan: { start: 10, end: 12 }, temperature: 1e-4 }, 3n)));
    expect(slots).toHaveLength(7);
    expect(slots).toEqual(expect.arrayContaining([0, 1, 5, 7, 10, 11]));
    expect(slots).not.toContain(15);
  });

  it("names the missing proxy rows", () => {
    const cache = naclCache(keys, range(8, 20));
    expect(() => planNow(naclPolicy, cache, () => 7, evictionSpec("nacl", { proxySpan: { start: 2, end: 4 } }))).toThrow(
      expect.objectContaining({ field: "eviction.proxy_span" }),
    );
    expect(() => planNow(naclPolicy, cache, () => 7, evictionSpec("nacl", { proxyTokens: 13 }))).toThrow(
      expect.objectContaining({ field: "eviction.proxy_tokens" }),
    );
  });

  it("documents the reference's defaults: no pooling, 7/19 random", () => {
    const defaults = Object.fromEntries(naclPolicy.parameters.map((p) => [p.name, p.defaultValue]));
    expect(defaults).toMatchObject({ randomShare: 7 / 19, pooling: "none", kernelSize: 7, groupReduction: "sum", sinkTokens: 4, proxyTokens: 32 });
  });

  it("needs room beyond sinks and proxies, and the proxies' query rows", () => {
    expect(minimumBudget(naclPolicy, {})).toBe(37);
    expect(minimumBudget(naclPolicy, { sinkTokens: 2, proxySpan: { start: 10, end: 15 } })).toBe(8);
    expect(naclPolicy.queryRowsNeeded({})).toBe(32);
    expect(naclPolicy.queryRowsNeeded({ proxySpan: { start: 10, end: 15 } })).toBe(5);
  });

  it("keeps everything when T <= C", () => {
    expect(kept(planNow(naclPolicy, naclCache(keys, [18, 19]), () => 20, evictionSpec("nacl", params, 1n)))).toEqual([[range(0, 20)]]);
  });
});
