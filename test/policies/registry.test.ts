import { describe, expect, it } from "vitest";
import { InvalidEvictionError, type EvictionSpec, type PolicyParams } from "../../src/policies/policy.js";
import { POLICIES, resolveEviction } from "../../src/policies/registry.js";
import { cacheView, evictionSpec, planNow } from "./support/cache-view.js";

const withBudget = (policy: string, budget: EvictionSpec["budget"], params: Partial<PolicyParams> = {}): EvictionSpec => ({
  ...evictionSpec(policy, params),
  budget,
});

/** The protected minimum per policy with default parameters. */
const MINIMUMS: Record<string, number> = {
  streaming_llm: 5,
  snapkv: 33,
  pyramidkv: 33,
  adakv: 33,
  nacl: 37,
  knorm: 1,
  simlayerkv: 5,
  h2o: 1,
  tova: 1,
  random: 5,
};

describe("POLICIES", () => {
  it("offers every documented policy", () => {
    expect([...POLICIES.keys()].sort()).toEqual(["none", ...Object.keys(MINIMUMS)].sort());
  });

  it.each(Object.entries(MINIMUMS))("%s rejects a budget below %i with the minimum named", (name, minimum) => {
    if (minimum > 1) {
      const below = () => resolveEviction(withBudget(name, { maxTokens: minimum - 1 }), 1000, 64);
      expect(below).toThrow(InvalidEvictionError);
      expect(below).toThrow(`minimum of ${minimum}`);
    }
    expect(() => resolveEviction(withBudget(name, { maxTokens: minimum }), 1000, 64)).not.toThrow();
  });

  it("judges a keep_fraction that floors to one entry against the minimum", () => {
    expect(() => resolveEviction(withBudget("snapkv", { keepFraction: 0.0001 }), 1000, 64)).toThrow(
      expect.objectContaining({ field: "eviction.keep_fraction" }),
    );
    expect(resolveEviction(withBudget("knorm", { keepFraction: 0.0001 }), 1000, 64).budget(1000)).toBe(1);
    // A head that already fits is not judged: nothing would be evicted.
    expect(() => resolveEviction(withBudget("snapkv", { maxTokens: 10 }), 10, 64)).not.toThrow();
  });

  it("rejects parameters the policy does not take, naming them", () => {
    expect(() => resolveEviction(withBudget("snapkv", { maxTokens: 64 }, { alpha: 0.5 }), 100, 64)).toThrow(
      expect.objectContaining({ field: "eviction.alpha" }),
    );
    expect(() => resolveEviction(withBudget("nacl", { maxTokens: 64 }, { window: 8 }), 100, 64)).toThrow(
      expect.objectContaining({ field: "eviction.window" }),
    );
  });

  it("rejects a policy that needs more query rows than the server keeps", () => {
    expect(() => resolveEviction(withBudget("snapkv", { maxTokens: 64 }), 100, 16)).toThrow(InvalidEvictionError);
    expect(() => resolveEviction(withBudget("nacl", { maxTokens: 64 }, { proxySpan: { start: 0, end: 40 } }), 100, 32)).toThrow(InvalidEvictionError);
    expect(() => resolveEviction(withBudget("tova", { maxTokens: 8 }), 100, 0)).toThrow(InvalidEvictionError);
    expect(() => resolveEviction(withBudget("knorm", { maxTokens: 8 }), 100, 0)).not.toThrow();
  });
});

describe("every policy's plan", () => {
  // Two layers, two KV heads, four query heads, d = 4, T = 48; keys, queries and mass from a fixed LCG.
  let state = 12345;
  const next = () => {
    state = (state * 1103515245 + 12345) % 2147483648;
    return state / 2147483648 - 0.5;
  };
  const T = 48;
  const head = () => ({ keys: Array.from({ length: T }, () => Array.from({ length: 4 }, next)), mass: Array.from({ length: T }, () => next() + 0.5) });
  const rows = Array.from({ length: 16 }, (_, i) => T - 16 + i);
  const cache = cacheView({
    heads: 4,
    layers: [
      [head(), head()],
      [head(), head()],
    ],
    queries: { positions: rows, layers: [0, 1].map(() => [0, 1, 2, 3].map(() => rows.map(() => Array.from({ length: 4 }, next)))) },
  });
  const C = 20;
  const params: Record<string, Partial<PolicyParams>> = {
    snapkv: { window: 8 },
    pyramidkv: { window: 8 },
    adakv: { window: 8 },
    nacl: { proxyTokens: 8 },
    simlayerkv: { window: 8, delta: 0 },
    knorm: { skipLayers: [] },
  };

  it.each([...POLICIES.keys()])("%s keeps ascending, in-range, non-empty slots within the budget", (name) => {
    const spec = { ...withBudget(name, { maxTokens: C }, params[name] ?? {}), seed: 77n };
    const { policy, budget } = resolveEviction(spec, T, 16);
    const plan = planNow(policy, cache, budget, spec);
    expect(plan.keep).toHaveLength(2);
    for (const heads of plan.keep) {
      expect(heads).toHaveLength(2);
      for (const slots of heads) {
        expect(slots.length).toBeGreaterThan(0);
        expect(slots.every((slot, i) => slot >= 0 && slot < T && (i === 0 || slot > slots[i - 1]))).toBe(true);
        // Uniform policies keep exactly C; pyramidkv varies by layer, adakv by head, none keeps all.
        if (!["none", "pyramidkv", "adakv"].includes(name)) expect(slots.length).toBe(C);
      }
    }
    if (name === "adakv") {
      // Per layer the heads share about 2C (rounding may move a few entries).
      for (const heads of plan.keep) expect(Math.abs(heads[0].length + heads[1].length - 2 * C)).toBeLessThanOrEqual(2);
    }
  });

  // The engine lets other calls through between the slices of a plan (src/engine/apply-eviction.ts); none has no work to slice.
  it.each([...POLICIES.keys()].filter((name) => name !== "none"))("%s yields after each layer it scores", (name) => {
    const spec = { ...withBudget(name, { maxTokens: C }, params[name] ?? {}), seed: 77n };
    const { policy, budget } = resolveEviction(spec, T, 16);
    const work = policy.plan(cache, budget, spec);
    let yields = 0;
    for (let step = work.next(); !step.done; step = work.next()) yields++;
    expect(yields).toBeGreaterThanOrEqual(cache.layers.length);
  });
});
