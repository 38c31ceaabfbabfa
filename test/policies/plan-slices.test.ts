import { describe, expect, it } from "vitest";
import { evictedAttentionShare } from "../../src/engine/evicted-attention-share.js";
import { POLICIES } from "../../src/policies/registry.js";
import type { Policy } from "../../src/policies/policy.js";
import { cacheView, evictionSpec, scalarKeys } from "./support/cache-view.js";

/** How many times `work` yields before it returns. */
function yieldsOf(work: Generator<void, unknown>): number {
  let yields = 0;
  while (!work.next().done) yields++;
  return yields;
}

/*
 * A plan runs in slices of the event loop (docs/limits.md): the policies that score attention,
 * which costs query heads x rows x entries x head size per layer, yield after every query head,
 * so that one layer of a long sequence on a large model is not one slice.
 */
describe("plans of attention-scoring policies", () => {
  const LAYERS = 2;
  const HEADS = 4;
  const ENTRIES = 24;
  const ROWS = 8;
  const head = () => scalarKeys(Array.from({ length: ENTRIES }, (_, i) => Math.sin(i)));
  const cache = cacheView({
    heads: HEADS,
    layers: Array.from({ length: LAYERS }, () => [head(), head()]),
    queries: {
      positions: Array.from({ length: ROWS }, (_, r) => ENTRIES - ROWS + r),
      layers: Array.from({ length: LAYERS }, () => Array.from({ length: HEADS }, (_, q) => Array.from({ length: ROWS }, (_, r) => [Math.cos(q + r)]))),
    },
  });
  const specs: Record<string, Parameters<typeof evictionSpec>[1]> = {
    snapkv: { window: 4, kernelSize: 3 },
    pyramidkv: { window: 4, kernelSize: 3 },
    adakv: { window: 4, kernelSize: 3 },
    nacl: { proxyTokens: 4, sinkTokens: 1 },
    tova: {},
    simlayerkv: { window: 4, sinkTokens: 1 },
  };

  it.each(Object.keys(specs))("%s yields after every query head of every layer", (name) => {
    const policy = POLICIES.get(name) as Policy;
    expect(yieldsOf(policy.plan(cache, () => 8, evictionSpec(name, specs[name])))).toBeGreaterThanOrEqual(LAYERS * HEADS);
  });

  it("so does the evicted-attention share measured with a plan", () => {
    const keep = Array.from({ length: LAYERS }, () => [Int32Array.of(0, 1), Int32Array.of(0, 1)]);
    expect(yieldsOf(evictedAttentionShare(cache, keep))).toBe(LAYERS * HEADS);
  });
});
