import { describe, expect, it } from "vitest";
import { reduceOverGroups } from "../../src/policies/scorers/group-reduction.js";

// Four query heads over two KV heads (G = 2): query heads 0, 1 -> KV head 0; 2, 3 -> KV head 1.
const perQueryHead = [
  [0.5, 0.1, 0.4],
  [0.1, 0.7, 0.2],
  [1, 2, 3],
  [5, 0, 1],
].map((scores) => Float64Array.from(scores));

const reduce = (reduction: "mean" | "max" | "sum") => reduceOverGroups(perQueryHead, 2, reduction).map((scores) => Array.from(scores));

describe("reduceOverGroups", () => {
  it("averages each group (mean, the default)", () => {
    const [head0, head1] = reduce("mean");
    expect(head0[0]).toBeCloseTo(0.3, 12);
    expect(head0[1]).toBeCloseTo(0.4, 12);
    expect(head0[2]).toBeCloseTo(0.3, 12);
    expect(head1).toEqual([3, 1, 2]);
  });

  it("takes the group maximum", () => {
    expect(reduce("max")).toEqual([
      [0.5, 0.7, 0.4],
      [5, 2, 3],
    ]);
  });

  it("sums the group", () => {
    const [head0, head1] = reduce("sum");
    expect(head0[0]).toBeCloseTo(0.6, 12);
    expect(head0[1]).toBeCloseTo(0.8, 12);
    expect(head0[2]).toBeCloseTo(0.6, 12);
    expect(head1).toEqual([6, 2, 4]);
  });

  it("leaves scores alone without GQA (G = 1)", () => {
    expect(reduceOverGroups(perQueryHead.slice(0, 2), 2, "mean").map((s) => Array.from(s))).toEqual([
      [0.5, 0.1, 0.4],
      [0.1, 0.7, 0.2],
    ]);
  });
});
