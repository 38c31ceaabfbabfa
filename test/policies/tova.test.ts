import { describe, expect, it } from "vitest";
import { tovaPolicy } from "../../src/policies/tova.js";
import { cacheView, evictionSpec, kept, planNow, scalarKeys } from "./support/cache-view.js";
import { minimumBudget } from "../../src/policies/protected-parts.js";

describe("tova", () => {
  // Two KV heads, four query heads (G = 2), d = 1, query 1, last row at position 4.
  // KV head 0: keys 0,0,0,0,ln 3 -> 1/7 x4, 3/7. KV head 1: keys 0,0,ln 6,0,0 -> .1, .1, .6, .1, .1.
  // Averaged over the four query heads: slot 2 (2/7 + 1.2) / 4 = .371, slot 4 (6/7 + .2) / 4 = .264, others .121.
  const cache = cacheView({
    heads: 4,
    layers: [[scalarKeys([0, 0, 0, 0, Math.log(3)]), scalarKeys([0, 0, Math.log(6), 0, 0])]],
    queries: { positions: [4], layers: [[[[1]], [[1]], [[1]], [[1]]]] },
  });

  it("keeps one position set per layer, chosen by last-row attention averaged over all query heads", () => {
    // Per KV head the choice would be [0, 4] and [0, 2]; the shared set is {2, 4}.
    expect(kept(planNow(tovaPolicy, cache, () => 2, evictionSpec("tova")))).toEqual([
      [
        [2, 4],
        [2, 4],
      ],
    ]);
    // Ties among the rest go to the earlier position.
    expect(kept(planNow(tovaPolicy, cache, () => 3, evictionSpec("tova")))).toEqual([
      [
        [0, 2, 4],
        [0, 2, 4],
      ],
    ]);
  });

  it("keeps everything when T <= C", () => {
    expect(kept(planNow(tovaPolicy, cache, () => 5, evictionSpec("tova")))).toEqual([
      [
        [0, 1, 2, 3, 4],
        [0, 1, 2, 3, 4],
      ],
    ]);
  });

  it("maps the kept positions onto heads compacted differently, never emptying one", () => {
    // Head 0 holds positions 0, 2, 4 (1/3 each), head 1 holds 1, 3 (1/2 each); one query head each.
    // By position: 1/6, 1/4, 1/6, 1/4, 1/6, so C = 2 keeps positions 1 and 3, which head 0 lacks:
    // head 0 keeps its own best entry (ties: its first).
    const ragged = cacheView({
      heads: 2,
      layers: [
        [
          { keys: [[0], [0], [0]], positions: [0, 2, 4] },
          { keys: [[0], [0]], positions: [1, 3] },
        ],
      ],
      queries: { positions: [4], layers: [[[[1]], [[1]]]] },
    });
    expect(kept(planNow(tovaPolicy, ragged, () => 2, evictionSpec("tova")))).toEqual([[[0], [0, 1]]]);
  });

  it("reads only the last query row", () => {
    expect(tovaPolicy.queryRowsNeeded({})).toBe(1);
    expect(minimumBudget(tovaPolicy, {})).toBe(1);
    const noRows = cacheView({ heads: 1, layers: [[scalarKeys([0, 1])]] });
    expect(() => planNow(tovaPolicy, noRows, () => 1, evictionSpec("tova"))).toThrow(expect.objectContaining({ field: "eviction" }));
  });
});
