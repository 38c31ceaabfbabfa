import { describe, expect, it } from "vitest";
import { InvalidEvictionError } from "../../src/policies/policy.js";
import { minimumBudget } from "../../src/policies/protected-parts.js";
import { POLICIES, resolveEviction } from "../../src/policies/registry.js";
import { evictionSpec } from "./support/cache-view.js";

const policy = (name: string) => POLICIES.get(name)!;

describe("minimumBudget, composed from the parts a policy always keeps", () => {
  it("sums each declared part, as the request sizes it, and adds the one entry the policy chooses", () => {
    expect(minimumBudget(policy("none"), {})).toBe(1);
    expect(minimumBudget(policy("streaming_llm"), { sinkTokens: 6 })).toBe(7);
    expect(minimumBudget(policy("pyramidkv"), { window: 8 })).toBe(9);
    // NACL keeps its sinks and its proxies' own entries: a named span, else the last proxy_tokens.
    expect(minimumBudget(policy("nacl"), {})).toBe(4 + 32 + 1);
    expect(minimumBudget(policy("nacl"), { sinkTokens: 2, proxySpan: { start: 10, end: 15 } })).toBe(2 + 5 + 1);
    // H2O's default recent share grows with the budget, so only a named one counts.
    expect(minimumBudget(policy("h2o"), {})).toBe(1);
    expect(minimumBudget(policy("h2o"), { recentTokens: 7 })).toBe(8);
  });

  it("is the floor resolveEviction enforces, naming it", () => {
    const spec = { ...evictionSpec("nacl", { sinkTokens: 2, proxyTokens: 3 }), budget: { maxTokens: 5 } };
    expect(() => resolveEviction(spec, 100, 64)).toThrow(new InvalidEvictionError("eviction.max_tokens", "budget of 5 entries per head is below the minimum of 6 for policy 'nacl'"));
    expect(resolveEviction({ ...spec, budget: { maxTokens: 6 } }, 100, 64).policy.name).toBe("nacl");
  });
});

describe("declared parameter choices", () => {
  it("refuse a value outside them before anything runs, naming the field and the choices", () => {
    const spec = { ...evictionSpec("adakv", { basePolicy: "h2o" }), budget: { maxTokens: 64 } };
    expect(() => resolveEviction(spec, 100, 64)).toThrow(new InvalidEvictionError("eviction.base_policy", "policy 'adakv' takes base_policy snapkv or pyramidkv, not 'h2o'"));
  });
});
