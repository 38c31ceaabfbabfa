import { describe, expect, it } from "vitest";
import { lazinessScore } from "../../src/policies/allocators/lazy-layer.js";
import { simlayerkvPolicy } from "../../src/policies/simlayerkv.js";
import { cacheView, evictionSpec, kept, planNow, scalarKeys } from "./support/cache-view.js";
import { minimumBudget } from "../../src/policies/protected-parts.js";
import { runToEnd } from "../../src/numerics/sliced-work.js";

const rows = { positions: [8, 9] };
const ten = (keys: number[]) => scalarKeys(keys);
const params = { window: 2, sinkTokens: 1 };

describe("simlayerkv", () => {
  it("scores a layer by the attention on the first S and last C - S entries", () => {
    // Uniform attention (keys 0). S = 1, C = 4: the set is slots 0, 7, 8, 9.
    // Row 8 sees 9 entries, 3 of them in the set; row 9 sees 10, 4 in the set: (3/9 + 4/10) / 2.
    const cache = cacheView({ heads: 1, layers: [[ten(new Array(10).fill(0))]], queries: { ...rows, layers: [[[[1], [1]]]] } });
    expect(runToEnd(lazinessScore(cache, 0, [0, 1], 1, () => 4))).toBeCloseTo((3 / 9 + 4 / 10) / 2, 12);
    expect(planNow(simlayerkvPolicy, cache, () => 4, evictionSpec("simlayerkv", { ...params, delta: 0.36 })).lazyLayers).toEqual([0]);
    expect(planNow(simlayerkvPolicy, cache, () => 4, evictionSpec("simlayerkv", { ...params, delta: 0.37 })).lazyLayers).toEqual([]);
  });

  it("averages over all query heads", () => {
    // Query heads +1 and -1 on one KV head whose sink key is 10: head 0 looks at the sink (mass ~1);
    // head 1 avoids it and spreads over the rest: row 8 puts 2/8 on slots 7, 8; row 9 puts 3/9 on 7, 8, 9.
    const sinkKeys = [10, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    const cache = cacheView({ heads: 2, layers: [[ten(sinkKeys)]], queries: { ...rows, layers: [[[[1], [1]], [[-1], [-1]]]] } });
    expect(runToEnd(lazinessScore(cache, 0, [0, 1], 1, () => 4))).toBeCloseTo((1 + (2 / 8 + 3 / 9) / 2) / 2, 3);
  });

  it("trims lazy layers to sinks + recent and leaves the others whole", () => {
    const cache = cacheView({
      heads: 1,
      layers: [[ten([10, 0, 0, 0, 0, 0, 0, 0, 0, 0])], [ten([0, 0, 0, 0, 10, 0, 0, 0, 0, 0])]],
      queries: { ...rows, layers: [[[[1], [1]]], [[[1], [1]]]] },
    });
    const plan = planNow(simlayerkvPolicy, cache, () => 4, evictionSpec("simlayerkv", params));
    expect(plan.lazyLayers).toEqual([0]);
    expect(kept(plan)).toEqual([[[0, 7, 8, 9]], [[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]]]);
  });

  it("declares the documented defaults", () => {
    expect(Object.fromEntries(simlayerkvPolicy.parameters.map((p) => [p.name, p.defaultValue]))).toEqual({ delta: 0.9, sinkTokens: 4, window: 32 });
    expect(simlayerkvPolicy.queryRowsNeeded({})).toBe(32);
    expect(minimumBudget(simlayerkvPolicy, {})).toBe(5);
  });

  it("names the window when too few query rows are held", () => {
    const cache = cacheView({ heads: 1, layers: [[ten(new Array(10).fill(0))]], queries: { ...rows, layers: [[[[1], [1]]]] } });
    expect(() => planNow(simlayerkvPolicy, cache, () => 4, evictionSpec("simlayerkv"))).toThrow(expect.objectContaining({ field: "eviction.window" }));
  });
});
