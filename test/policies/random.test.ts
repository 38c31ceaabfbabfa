import { describe, expect, it } from "vitest";
import { SeededRandom } from "../../src/numerics/seeded-random.js";
import { randomPolicy } from "../../src/policies/random.js";
import { cacheView, evictionSpec, kept, planNow, scalarKeys } from "./support/cache-view.js";
import { minimumBudget } from "../../src/policies/protected-parts.js";

const head = scalarKeys(new Array(20).fill(0));
const cache = cacheView({ heads: 2, layers: [[head, head], [head, head]] });
const plan = (seed: bigint, params = {}) => kept(planNow(randomPolicy, cache, () => 10, evictionSpec("random", params, seed)));

describe("random", () => {
  it("keeps the first S entries and a uniform draw of the rest, layer by layer and head by head", () => {
    // Independently: one uniform number per slot, heads in order; the largest 6 of slots 4..19 join sinks 0..3.
    const random = new SeededRandom(9n);
    const expected = [0, 1].map(() =>
      [0, 1].map(() => {
        const draws = Array.from({ length: 20 }, () => random.next());
        const drawn = Array.from({ length: 16 }, (_, i) => i + 4)
          .sort((a, b) => draws[b] - draws[a])
          .slice(0, 6);
        return [0, 1, 2, 3, ...drawn].sort((a, b) => a - b);
      }),
    );
    expect(plan(9n)).toEqual(expected);
  });

  it("repeats for a seed and changes with it", () => {
    expect(plan(3n)).toEqual(plan(3n));
    expect(plan(3n)).not.toEqual(plan(4n));
  });

  it("protects sink_tokens entries", () => {
    for (const heads of plan(11n, { sinkTokens: 8 })) for (const slots of heads) expect(slots.slice(0, 8)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
  });

  it("keeps everything when T <= C", () => {
    expect(kept(planNow(randomPolicy, cache, () => 20, evictionSpec("random", {}, 1n)))[1][1]).toHaveLength(20);
  });

  it("declares the documented defaults", () => {
    expect(randomPolicy.parameters.map((p) => [p.name, p.defaultValue])).toEqual([["sinkTokens", 4]]);
    expect(minimumBudget(randomPolicy, {})).toBe(5);
    expect(minimumBudget(randomPolicy, { sinkTokens: 0 })).toBe(1);
  });
});
