import { describe, expect, it } from "vitest";
import { knormPolicy } from "../../src/policies/knorm.js";
import { InvalidEvictionError } from "../../src/policies/policy.js";
import { resolveEviction } from "../../src/policies/registry.js";
import { cacheView, evictionSpec, kept, planNow } from "./support/cache-view.js";
import { minimumBudget } from "../../src/policies/protected-parts.js";

// Key norms by slot: 5, 1, 2, 0, sqrt 2, 1.
const keys = [
  [3, 4],
  [1, 0],
  [0, 2],
  [0, 0],
  [1, 1],
  [0, -1],
];
const threeLayers = cacheView({ heads: 1, layers: [[{ keys }], [{ keys }], [{ keys }]] });
const all = [0, 1, 2, 3, 4, 5];

describe("knorm", () => {
  it("keeps the lowest key norms, skipping layers 0 and 1 by default", () => {
    expect(kept(planNow(knormPolicy, threeLayers, () => 3, evictionSpec("knorm")))).toEqual([[all], [all], [[1, 3, 5]]]);
  });

  it("breaks equal norms toward the earlier position", () => {
    // Norm 0, then the two norms of 1 at slots 1 and 5: slot 1 wins.
    expect(kept(planNow(knormPolicy, threeLayers, () => 2, evictionSpec("knorm", { skipLayers: [] })))).toEqual([[[1, 3]], [[1, 3]], [[1, 3]]]);
  });

  it("counts norms within float32 rounding of a rotation as equal, so the earlier position wins", () => {
    // One key rotated (as RoPE does) to another position: norms 1 + 1e-7 and 1 in float32; a distinct norm 1 - 2e-6 beats both.
    const rotated = cacheView({ heads: 1, layers: [[{ keys: [[0.6, 0.8000001], [0, 0], [1, 0], [0, 0.999998]] }]] });
    expect(kept(planNow(knormPolicy, rotated, () => 3, evictionSpec("knorm", { skipLayers: [] })))).toEqual([[[0, 1, 3]]]);
  });

  it("keeps the highest key norms instead for the ablation (keep_highest_norm)", () => {
    // Norms 5, 1, 2, 0, 1.41, 1: the three highest are slots 0, 2 and 4.
    expect(kept(planNow(knormPolicy, threeLayers, () => 3, evictionSpec("knorm", { skipLayers: [], keepHighestNorm: true })))).toEqual([
      [[0, 2, 4]],
      [[0, 2, 4]],
      [[0, 2, 4]],
    ]);
    // Equal norms still break toward the earlier position: of the two norms of 1, slot 1 goes first.
    expect(kept(planNow(knormPolicy, threeLayers, () => 4, evictionSpec("knorm", { skipLayers: [], keepHighestNorm: true })))).toEqual([
      [[0, 1, 2, 4]],
      [[0, 1, 2, 4]],
      [[0, 1, 2, 4]],
    ]);
  });

  it("protects the first sink_tokens entries for the sink ablation, the rest by lowest norm", () => {
    // Slot 0 has the highest norm (5): evicted first without sinks, kept with one; the other two are norms 0 and 1.
    expect(kept(planNow(knormPolicy, threeLayers, () => 3, evictionSpec("knorm", { skipLayers: [], sinkTokens: 1 })))).toEqual([
      [[0, 1, 3]],
      [[0, 1, 3]],
      [[0, 1, 3]],
    ]);
    // Two sinks (norms 5 and 1) leave one lowest-norm entry: slot 3.
    expect(kept(planNow(knormPolicy, threeLayers, () => 3, evictionSpec("knorm", { skipLayers: [2], sinkTokens: 2 })))).toEqual([[[0, 1, 3]], [[0, 1, 3]], [all]]);
    expect(minimumBudget(knormPolicy, { sinkTokens: 2 })).toBe(3);
  });

  it("skips exactly the layers it is told to", () => {
    expect(kept(planNow(knormPolicy, threeLayers, () => 3, evictionSpec("knorm", { skipLayers: [2] })))).toEqual([[[1, 3, 5]], [[1, 3, 5]], [all]]);
  });

  it("refuses a skipped layer the model does not have", () => {
    expect(() => planNow(knormPolicy, threeLayers, () => 3, evictionSpec("knorm", { skipLayers: [3] }))).toThrow(InvalidEvictionError);
  });

  it("keeps one entry per head when a tiny keep_fraction floors to zero", () => {
    const spec = { ...evictionSpec("knorm", { skipLayers: [] }), budget: { keepFraction: 0.01 } };
    const { policy, budget } = resolveEviction(spec, 6, 0);
    expect(budget(6)).toBe(1);
    expect(kept(planNow(policy, threeLayers, budget, spec))).toEqual([[[3]], [[3]], [[3]]]);
  });

  it("declares the documented defaults and needs no queries", () => {
    expect(knormPolicy.parameters.map((p) => [p.name, p.defaultValue])).toEqual([
      ["skipLayers", [0, 1]],
      ["keepHighestNorm", false],
      ["sinkTokens", 0],
    ]);
    expect(knormPolicy.queryRowsNeeded({})).toBe(0);
    expect(minimumBudget(knormPolicy, {})).toBe(1);
  });
});
