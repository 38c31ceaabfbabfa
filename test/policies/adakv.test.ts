import { describe, expect, it } from "vitest";
import { adakvPolicy } from "../../src/policies/adakv.js";
import { adaptiveCounts, type AdaptiveHead } from "../../src/policies/allocators/adaptive.js";
import { resolveEviction } from "../../src/policies/registry.js";
import { snapkvPolicy } from "../../src/policies/snapkv.js";
import { cacheView, evictionSpec, kept, planNow, scalarKeys } from "./support/cache-view.js";
import { minimumBudget } from "../../src/policies/protected-parts.js";

const head = (scores: number[], budget: number, positions = scores.map((_, i) => i)): AdaptiveHead => ({
  scores: Float64Array.from(scores),
  positions: Int32Array.from(positions),
  budget,
});

describe("adaptiveCounts (AdaKV's official allocation)", () => {
  it("gives each head its wins shrunk by (1 - alpha) plus the floor alpha * B", () => {
    // The best 6 scores: 9 8 7 6 5 from head 0, 4 from head 1 -> wins 5 and 1; floor(0.2 * 3) = 0.
    // b = round(5 * 0.8) = 4 and round(1 * 0.8) = 1.
    const heads = [head([9, 8, 7, 6, 5], 3), head([4, 3, 2, 1, 0], 3)];
    expect(adaptiveCounts(heads, 0.2)).toEqual([4, 1]);
    // alpha = 0.5: floor(1.5) = 1; round(2.5 + 1) = 4 (3.5 to even), round(0.5 + 1) = 2 (1.5 to even).
    expect(adaptiveCounts(heads, 0.5)).toEqual([4, 2]);
    // alpha = 1: the uniform budget.
    expect(adaptiveCounts(heads, 1)).toEqual([3, 3]);
  });

  it("rounds halves to even, like torch.round", () => {
    // Wins 3 and 3; 3 * 0.5 + floor(1.5) = 2.5 -> 2 (Math.round would give 3).
    expect(adaptiveCounts([head([9, 8, 7, 1, 0], 3), head([6, 5, 4, 3, 2], 3)], 0.5)).toEqual([2, 2]);
  });

  it("breaks ties by the lower position, then the lower head", () => {
    // One slot to win among equal scores.
    expect(adaptiveCounts([head([1, 1], 1, [1, 2]), head([1, 1], 0, [1, 2])], 0)).toEqual([1, 0]);
    expect(adaptiveCounts([head([1, 1], 1, [2, 3]), head([1, 1], 0, [1, 2])], 0)).toEqual([0, 1]);
  });

  it("never gives a head more than it holds", () => {
    // All six entries win: wins 1 and 5; head 0: round(0.5 + 1) = 2, capped at its single entry.
    expect(adaptiveCounts([head([5], 3), head([1, 1, 1, 1, 1], 3)], 0.5)).toEqual([1, 4]);
  });
});

describe("adakv", () => {
  // Two KV heads (no GQA), d = 1, W = 1, query 1: logits are the keys. Row at position 5 sees all six entries.
  // Head 0 concentrates: e^5 against five 1s -> .9674 then .0065s. Head 1 spreads: four e^2 and two 1s -> .2342 x4, .0317.
  const layer = [scalarKeys([5, 0, 0, 0, 0, 0]), scalarKeys([2, 2, 2, 2, 0, 0])];
  const queries = (layers: number) => ({ positions: [5], layers: Array.from({ length: layers }, () => [[[1]], [[1]]]) });
  const params = { window: 1, pooling: "none" as const };

  it("moves budget to the head that spreads its attention (Ada-SnapKV), ragged counts", () => {
    const cache = cacheView({ heads: 2, layers: [layer], queries: queries(1) });
    // C = 3: B = 2 per head, 4 wins: head 0 wins 1, head 1 wins 3 (ties to lower positions).
    // b0 = round(0.8) = 1, b1 = round(2.4) = 2.
    expect(kept(planNow(adakvPolicy, cache, () => 3, evictionSpec("adakv", params)))).toEqual([
      [
        [0, 5],
        [0, 1, 5],
      ],
    ]);
    // Uniform SnapKV keeps two of each.
    expect(kept(planNow(snapkvPolicy, cache, () => 3, evictionSpec("snapkv", params)))).toEqual([
      [
        [0, 1, 5],
        [0, 1, 5],
      ],
    ]);
  });

  it("is uniform SnapKV with alpha = 1", () => {
    const cache = cacheView({ heads: 2, layers: [layer], queries: queries(1) });
    expect(kept(planNow(adakvPolicy, cache, () => 3, evictionSpec("adakv", { ...params, alpha: 1 })))).toEqual(
      kept(planNow(snapkvPolicy, cache, () => 3, evictionSpec("snapkv", params))),
    );
  });

  it("shares PyramidKV's per-layer budgets among heads (Ada-Pyramid)", () => {
    const cache = cacheView({ heads: 2, layers: [layer, layer], queries: queries(2) });
    // C = 3, T = 6, L = 2: C - w = 2, min 0, max 4, steps 4: layer budgets 5 and 1, so B = 4 and 0.
    // Layer 0: 8 wins = .9674, four .2342, .0317, two .0065 (head 0 slots 1, 2): wins 3 and 5.
    // b0 = round(2.4) = 2, b1 = round(4.0) = 4.
    expect(kept(planNow(adakvPolicy, cache, () => 3, evictionSpec("adakv", { ...params, basePolicy: "pyramidkv" })))).toEqual([
      [
        [0, 1, 5],
        [0, 1, 2, 3, 5],
      ],
      [[5], [5]],
    ]);
  });

  it("keeps a head within its budget whole", () => {
    const cache = cacheView({
      heads: 2,
      layers: [[scalarKeys([5, 0, 0, 0, 0, 0]), { keys: [[0], [0], [0]], positions: [0, 4, 5] }]],
      queries: queries(1),
    });
    // Head 1 holds 3 <= C: it keeps everything; head 0 competes alone: 2 wins, round(1.6) = 2.
    expect(kept(planNow(adakvPolicy, cache, () => 3, evictionSpec("adakv", params)))).toEqual([
      [
        [0, 1, 5],
        [0, 1, 2],
      ],
    ]);
  });

  it("rejects an unknown base policy before any work", () => {
    expect(() => resolveEviction({ ...evictionSpec("adakv", { basePolicy: "h2o" }), budget: { maxTokens: 64 } }, 100, 64)).toThrow(
      expect.objectContaining({ field: "eviction.base_policy" }),
    );
  });

  it("declares the documented defaults", () => {
    expect(Object.fromEntries(adakvPolicy.parameters.map((p) => [p.name, p.defaultValue]))).toEqual({
      window: 32,
      kernelSize: 7,
      pooling: "max",
      groupReduction: "mean",
      alpha: 0.2,
      basePolicy: "snapkv",
      beta: 20,
    });
    expect(minimumBudget(adakvPolicy, {})).toBe(33);
  });
});
