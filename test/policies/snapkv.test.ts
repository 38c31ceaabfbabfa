import { describe, expect, it } from "vitest";
import { InvalidEvictionError } from "../../src/policies/policy.js";
import { resolveEviction } from "../../src/policies/registry.js";
import { snapkvPolicy } from "../../src/policies/snapkv.js";
import { cacheView, evictionSpec, kept, naiveAttention, planNow, scalarKeys } from "./support/cache-view.js";
import { minimumBudget } from "../../src/policies/protected-parts.js";

/**
 * One layer, one head, d = 1, ten entries; the window is the last two rows
 * (positions 8, 9), both with query 1, so each logit is the key itself and an
 * entry's mean window attention rises with its key.
 */
function tenEntries(prefixKeys: number[]) {
  return cacheView({
    heads: 1,
    layers: [[scalarKeys([...prefixKeys, 0, 0])]],
    queries: { positions: [8, 9], layers: [[[[1], [1]]]] },
  });
}

const budget = (c: number) => () => c;

describe("snapkv", () => {
  it("keeps the window plus the top C - W earlier entries (no pooling)", () => {
    const cache = tenEntries([0, 3, 1, 5, 2, 0, 4, 0]);
    const plan = planNow(snapkvPolicy, cache, budget(5), evictionSpec("snapkv", { window: 2, pooling: "none" }));
    // Keys 5, 4, 3 sit in slots 3, 6, 1.
    expect(kept(plan)).toEqual([[[1, 3, 6, 8, 9]]]);
  });

  it("max-pools scores over the entries before the window, ties to the earlier position", () => {
    const cache = tenEntries([0, 3, 1, 5, 2, 0, 4, 0]);
    // Pooled (k = 3) keys: 3 3 5 5 5 4 4 4; the three 5s are slots 2, 3, 4.
    const plan = planNow(snapkvPolicy, cache, budget(5), evictionSpec("snapkv", { window: 2, kernelSize: 3 }));
    expect(kept(plan)).toEqual([[[2, 3, 4, 8, 9]]]);
  });

  it("avg-pools with the padding counted, as an independent computation says", () => {
    // Keys stored as float32, as the cache stores them.
    const keys = [0.5, -1, 2, 0.25, -2, 1.5, 0, 1, 0.75, -0.5].map((k) => [Math.fround(k)]);
    const cache = cacheView({ heads: 1, layers: [[{ keys }]], queries: { positions: [8, 9], layers: [[[[1], [1]]]] } });
    const positions = keys.map((_, j) => j);
    const [row8, row9] = [8, 9].map((row) => naiveAttention([1], keys, positions, row));
    const before = row8.slice(0, 8).map((p, j) => (p + row9[j]) / 2);
    const pooled = before.map((_, i) => [i - 2, i - 1, i, i + 1, i + 2].reduce((sum, j) => sum + (before[j] ?? 0), 0) / 5);
    const top3 = positions
      .slice(0, 8)
      .sort((a, b) => pooled[b] - pooled[a] || a - b)
      .slice(0, 3);
    // Dividing the edges by the valid count instead would favour the edges and keep 0, 4, 7.
    expect(top3.sort((a, b) => a - b)).toEqual([2, 3, 4]);
    const plan = planNow(snapkvPolicy, cache, budget(5), evictionSpec("snapkv", { window: 2, kernelSize: 5, pooling: "avg" }));
    expect(kept(plan)).toEqual([[[2, 3, 4, 8, 9]]]);
  });

  it("breaks ties toward earlier positions", () => {
    const plan = planNow(snapkvPolicy, tenEntries(new Array(8).fill(0)), budget(5), evictionSpec("snapkv", { window: 2 }));
    expect(kept(plan)).toEqual([[[0, 1, 2, 8, 9]]]);
  });

  it("keeps everything when T <= C", () => {
    const plan = planNow(snapkvPolicy, tenEntries([0, 3, 1, 5, 2, 0, 4, 0]), budget(10), evictionSpec("snapkv", { window: 2 }));
    expect(kept(plan)).toEqual([[[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]]]);
  });

  it("keeps the window even when the window scores lowest", () => {
    // The window's keys are -50: it would never win on attention.
    const cache = cacheView({
      heads: 1,
      layers: [[scalarKeys([1, 2, 3, 4, -50, -50])]],
      queries: { positions: [4, 5], layers: [[[[1], [1]]]] },
    });
    expect(kept(planNow(snapkvPolicy, cache, budget(3), evictionSpec("snapkv", { window: 2, pooling: "none" })))).toEqual([[[3, 4, 5]]]);
  });

  describe("GQA group reduction", () => {
    // Two query heads share one KV head. d = 4, scale 1/2: query (2,0,0,0) reads key[0], (0,2,0,0) reads key[1].
    // Logits over [s0, s1, s2, window]: head 0: 4, 2, 0, 0; head 1: -4, 2, 0, 0.
    // Head 0: e^4, e^2, 1, 1 over 63.99 -> .8532, .1155, .0156; head 1: e^-4, e^2, 1, 1 over 9.407 -> .0019, .7855, .1063.
    // Mean: s0 .4276 < s1 .4505; max: s0 .8532 > s1 .7855.
    const cache = cacheView({
      heads: 2,
      layers: [
        [
          {
            keys: [
              [4, -4, 0, 0],
              [2, 2, 0, 0],
              [0, 0, 0, 0],
              [0, 0, 0, 0],
            ],
          },
        ],
      ],
      queries: { positions: [3], layers: [[[[2, 0, 0, 0]], [[0, 2, 0, 0]]]] },
    });
    const keep = (groupReduction: "mean" | "max" | "sum") =>
      kept(planNow(snapkvPolicy, cache, budget(2), evictionSpec("snapkv", { window: 1, pooling: "none", groupReduction })));

    it("mean (default) and sum keep the entry both heads like", () => {
      expect(keep("mean")).toEqual([[[1, 3]]]);
      expect(keep("sum")).toEqual([[[1, 3]]]);
      expect(kept(planNow(snapkvPolicy, cache, budget(2), evictionSpec("snapkv", { window: 1, pooling: "none" })))).toEqual([[[1, 3]]]);
    });

    it("max keeps the entry one head loves", () => {
      expect(keep("max")).toEqual([[[0, 3]]]);
    });
  });

  it("gives every head its own choice, same count", () => {
    const cache = cacheView({
      heads: 2,
      layers: [[scalarKeys([9, 0, 0, 0, 0]), scalarKeys([0, 0, 0, 9, 0])]],
      queries: { positions: [4], layers: [[[[1]], [[1]]]] },
    });
    expect(kept(planNow(snapkvPolicy, cache, budget(2), evictionSpec("snapkv", { window: 1, pooling: "none" })))).toEqual([
      [
        [0, 4],
        [3, 4],
      ],
    ]);
  });

  it("names the window when fewer query rows are held than it needs", () => {
    const cache = tenEntries([0, 3, 1, 5, 2, 0, 4, 0]);
    expect(() => planNow(snapkvPolicy, cache, budget(5), evictionSpec("snapkv", { window: 3 }))).toThrow(
      expect.objectContaining({ field: "eviction.window" }),
    );
  });

  it("declares the documented defaults and asks for W query rows", () => {
    expect(Object.fromEntries(snapkvPolicy.parameters.map((p) => [p.name, p.defaultValue]))).toEqual({
      window: 32,
      kernelSize: 7,
      pooling: "max",
      groupReduction: "mean",
    });
    expect(snapkvPolicy.queryRowsNeeded({})).toBe(32);
    expect(snapkvPolicy.queryRowsNeeded({ window: 8 })).toBe(8);
    expect(minimumBudget(snapkvPolicy, {})).toBe(33);
  });

  it("rejects a budget that leaves no room beyond the window", () => {
    const spec = { ...evictionSpec("snapkv", { window: 8 }), budget: { maxTokens: 8 } };
    expect(() => resolveEviction(spec, 100, 64)).toThrow(InvalidEvictionError);
    expect(() => resolveEviction({ ...spec, budget: { maxTokens: 9 } }, 100, 64)).not.toThrow();
  });
});
