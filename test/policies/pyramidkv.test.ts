import { describe, expect, it } from "vitest";
import { pyramidBudget } from "../../src/policies/allocators/pyramid.js";
import { pyramidkvPolicy } from "../../src/policies/pyramidkv.js";
import { snapkvPolicy } from "../../src/policies/snapkv.js";
import { cacheView, evictionSpec, kept, planNow, scalarKeys } from "./support/cache-view.js";
import { minimumBudget } from "../../src/policies/protected-parts.js";

const scheduleOf = (entries: number, budget: number, window: number, beta: number, layers: number) =>
  Array.from({ length: layers }, (_, l) => pyramidBudget(entries, budget, window, beta, l, layers));

describe("pyramidBudget (PyramidKV integer schedule, window included)", () => {
  it("falls linearly from the bottom layer to the top", () => {
    // C - w = 16; min = 16 // 20 = 0; max = 32; steps = 32 // 3 = 10: caps 32, 22, 12, 2.
    expect(scheduleOf(100, 20, 4, 20, 4)).toEqual([36, 26, 16, 6]);
    // beta = 2: min = 8, max = 24, steps = 16 // 3 = 5: caps 24, 19, 14, 9.
    expect(scheduleOf(100, 20, 4, 2, 4)).toEqual([28, 23, 18, 13]);
    // Non-integer beta: min = floor(16 / 2.5) = 6, max = 26, steps = 20 // 3 = 6: caps 26, 20, 14, 8.
    expect(scheduleOf(100, 20, 4, 2.5, 4)).toEqual([30, 24, 18, 12]);
  });

  it("caps the bottom layer at T - w and raises the top to keep the average", () => {
    // T - w = 30 <= max 32: max = 30, min = 32 - 30 = 2; steps = 28 // 3 = 9: caps 30, 21, 12, 3.
    expect(scheduleOf(34, 20, 4, 20, 4)).toEqual([34, 25, 16, 7]);
  });

  it("stays uniform while T < 2(C - w), and keeps everything while T <= C", () => {
    expect(scheduleOf(31, 20, 4, 20, 4)).toEqual([20, 20, 20, 20]);
    expect(scheduleOf(20, 20, 4, 20, 4)).toEqual([20, 20, 20, 20]);
    expect(scheduleOf(15, 20, 4, 20, 4)).toEqual([15, 15, 15, 15]);
  });

  it("gives a one-layer model the uniform budget instead of dividing by zero", () => {
    expect(scheduleOf(100, 20, 4, 20, 1)).toEqual([20]);
  });
});

describe("pyramidkv", () => {
  // Eleven scored entries with distinct keys, then the window (W = 1); query 1 so logits are the keys.
  const prefix = [3, 10, 1, 7, 0, 5, 9, 2, 8, 4, 6];
  const head = scalarKeys([...prefix, 0]);
  const query = { positions: [11], layers: [[[[1]]], [[[1]]]] };
  const spec = evictionSpec("pyramidkv", { window: 1, pooling: "none" });

  it("keeps more in the bottom layer than in the top one", () => {
    // C = 5, T = 12, L = 2: C - w = 4, min 0, max 8, steps 8: layer budgets 9 and 1.
    const cache = cacheView({ heads: 1, layers: [[head], [head]], queries: query });
    const plan = planNow(pyramidkvPolicy, cache, () => 5, spec);
    expect(kept(plan)).toEqual([
      // Top 8 keys: all but 0, 1, 2 (slots 4, 2, 7), plus the window.
      [[0, 1, 3, 5, 6, 8, 9, 10, 11]],
      // The top layer selects nothing beyond its window.
      [[11]],
    ]);
  });

  it("is SnapKV on a one-layer model", () => {
    const cache = cacheView({ heads: 1, layers: [[head]], queries: { positions: [11], layers: [[[[1]]]] } });
    const pyramid = kept(planNow(pyramidkvPolicy, cache, () => 5, spec));
    expect(pyramid).toEqual([[[1, 3, 6, 8, 11]]]);
    expect(pyramid).toEqual(kept(planNow(snapkvPolicy, cache, () => 5, evictionSpec("snapkv", { window: 1, pooling: "none" }))));
  });

  it("declares the documented defaults", () => {
    expect(Object.fromEntries(pyramidkvPolicy.parameters.map((p) => [p.name, p.defaultValue]))).toEqual({
      window: 32,
      kernelSize: 7,
      pooling: "max",
      groupReduction: "mean",
      beta: 20,
    });
    expect(minimumBudget(pyramidkvPolicy, { window: 8 })).toBe(9);
    expect(pyramidkvPolicy.queryRowsNeeded({})).toBe(32);
  });
});
