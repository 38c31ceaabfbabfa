import { describe, expect, it } from "vitest";
import { h2oPolicy } from "../../src/policies/h2o.js";
import { resolveEviction } from "../../src/policies/registry.js";
import { cacheView, evictionSpec, kept, planNow } from "./support/cache-view.js";
import { minimumBudget } from "../../src/policies/protected-parts.js";

const withMass = (...masses: number[][]) => cacheView({ heads: masses.length, layers: [masses.map((mass) => ({ keys: mass.map(() => [0]), mass }))] });
const mass = [5, 1, 9, 3, 7, 2, 8, 0];

describe("h2o", () => {
  it("keeps the last floor(C/2) entries and the heaviest of the rest by default", () => {
    // C = 4: recent slots 6, 7; heavy from 0..5: masses 9 and 7 at slots 2 and 4.
    expect(kept(planNow(h2oPolicy, withMass(mass), () => 4, evictionSpec("h2o")))).toEqual([[[2, 4, 6, 7]]]);
    // C = 5: recent 2 (slots 6, 7), heavy 3: 9, 7, 5 at slots 2, 4, 0.
    expect(kept(planNow(h2oPolicy, withMass(mass), () => 5, evictionSpec("h2o")))).toEqual([[[0, 2, 4, 6, 7]]]);
  });

  it("takes recent_tokens from the request", () => {
    // R = 3: slots 5, 6, 7; one heavy hitter: mass 9 at slot 2.
    expect(kept(planNow(h2oPolicy, withMass(mass), () => 4, evictionSpec("h2o", { recentTokens: 3 })))).toEqual([[[2, 5, 6, 7]]]);
  });

  it("keeps only the heaviest entry with C = 1", () => {
    expect(kept(planNow(h2oPolicy, withMass(mass), () => 1, evictionSpec("h2o")))).toEqual([[[2]]]);
  });

  it("breaks equal mass toward the earlier position, per head", () => {
    expect(kept(planNow(h2oPolicy, withMass([1, 1, 1, 1, 1, 1], [0, 3, 0, 3, 0, 0]), () => 4, evictionSpec("h2o")))).toEqual([
      [
        [0, 1, 4, 5],
        [1, 3, 4, 5],
      ],
    ]);
  });

  it("keeps everything when T <= C", () => {
    expect(kept(planNow(h2oPolicy, withMass(mass), () => 8, evictionSpec("h2o")))).toEqual([[[0, 1, 2, 3, 4, 5, 6, 7]]]);
  });

  it("needs one heavy slot beyond an explicit recent window", () => {
    expect(minimumBudget(h2oPolicy, {})).toBe(1);
    expect(minimumBudget(h2oPolicy, { recentTokens: 4 })).toBe(5);
    const spec = { ...evictionSpec("h2o", { recentTokens: 4 }), budget: { maxTokens: 4 } };
    expect(() => resolveEviction(spec, 100, 0)).toThrow(expect.objectContaining({ field: "eviction.max_tokens" }));
    expect(h2oPolicy.parameters.map((p) => [p.name, p.defaultValue])).toEqual([["recentTokens", "floor(C/2)"]]);
  });
});
