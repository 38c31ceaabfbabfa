import { describe, expect, it } from "vitest";
import { evictedAttentionShare } from "../../src/engine/evicted-attention-share.js";
import { runToEnd } from "../../src/numerics/sliced-work.js";
import { cacheView, naiveAttention, scalarKeys } from "../policies/support/cache-view.js";

const keep = (...slots: number[][][]) => slots.map((heads) => heads.map((s) => Int32Array.from(s)));

describe("evictedAttentionShare", () => {
  const keys = [0.5, 2, -1, 1];

  it("is the softmax mass of the dropped entries, averaged over query rows", () => {
    // Rows at positions 2 and 3: the first cannot see the entry at position 3.
    const view = cacheView({ heads: 1, layers: [[scalarKeys(keys)]], queries: { positions: [2, 3], layers: [[[[1.5], [-0.5]]]] } });
    const columns = keys.map((k) => [k]);
    const early = naiveAttention([1.5], columns, [0, 1, 2, 3], 2);
    const late = naiveAttention([-0.5], columns, [0, 1, 2, 3], 3);
    // Drop slots 1 and 3.
    const expected = (early[1] + early[3] + late[1] + late[3]) / 2;
    expect(runToEnd(evictedAttentionShare(view, keep([[0, 2]])))).toBeCloseTo(expected, 6);
    expect(early[3]).toBe(0);
  });

  it("is 0 when everything is kept and near 1 when the kept entries got no attention", () => {
    const view = cacheView({ heads: 1, layers: [[scalarKeys([-30, 30])]], queries: { positions: [1], layers: [[[[1]]]] } });
    expect(runToEnd(evictedAttentionShare(view, keep([[0, 1]])))).toBe(0);
    expect(runToEnd(evictedAttentionShare(view, keep([[0]])))).toBeGreaterThan(0.999);
  });

  it("counts every query head of a group and every layer alike", () => {
    // Two query heads share one KV head; layer 1 keeps everything, so the share halves.
    const queries = { positions: [1], layers: [[[[2]], [[-2]]], [[[2]], [[-2]]]] };
    const view = cacheView({ heads: 2, layers: [[scalarKeys([1, -1])], [scalarKeys([1, -1])]], queries });
    const up = naiveAttention([2], [[1], [-1]], [0, 1], 1);
    const down = naiveAttention([-2], [[1], [-1]], [0, 1], 1);
    expect(runToEnd(evictedAttentionShare(view, keep([[0]], [[0, 1]])))).toBeCloseTo((up[1] + down[1]) / 4, 6);
  });

  it("reads only the last rows of the observation window", () => {
    const view = cacheView({ heads: 1, layers: [[scalarKeys(keys)]], queries: { positions: [2, 3], layers: [[[[1.5], [-0.5]]]] } });
    const late = naiveAttention([-0.5], keys.map((k) => [k]), [0, 1, 2, 3], 3);
    expect(runToEnd(evictedAttentionShare(view, keep([[0, 2]]), 1))).toBeCloseTo(late[1] + late[3], 6);
  });

  it("is undefined without query rows", () => {
    const view = cacheView({ heads: 1, layers: [[scalarKeys(keys)]] });
    expect(runToEnd(evictedAttentionShare(view, keep([[0]])))).toBeUndefined();
  });
});
