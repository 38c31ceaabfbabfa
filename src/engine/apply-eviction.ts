import { SeededRandom } from "../model/seeded-random.js";
import type { EvictionSpec, KeepPlan, Policy } from "../policies/policy.js";
import { engineObserved, observeEviction } from "../telemetry/engine-telemetry.js";
import { evictedAttentionShare } from "./evicted-attention-share.js";
import type { Sequence } from "./sequence.js";

/** A policy checked against a request, with the request's budget C(T). */
export interface ResolvedEviction {
  policy: Policy;
  budget: (entries: number) => number;
}

export interface EvictionOutcome {
  policy: string;
  applied: boolean;
  budgetTokens: number;
  entriesBefore: number;
  entriesAfter: number;
  bytesBefore: number;
  bytesAfter: number;
  kept: number[][];
  lazyLayers: number[];
  detail: string;
  /** Share of the recent queries' attention the dropped entries held (see evicted-attention-share.ts);
   * measured only while telemetry records it, since it costs about what attention scoring costs. */
  evictedAttentionShare?: number;
}

/** Runs a policy on a sequence and compacts its cache to the plan, returning memory to the pool. */
export function applyEviction(sequence: Sequence, spec: EvictionSpec, { policy, budget }: ResolvedEviction): EvictionOutcome {
  const startTime = performance.timeOrigin + performance.now();
  const before = { entriesBefore: sequence.entries, bytesBefore: sequence.bytes, budgetTokens: budget(sequence.maxHeadLength) };
  const over = sequence.layers.some((layer) => layer.lengths.some((n) => n > budget(n)));
  let lazyLayers: number[] = [];
  let detail = "";
  let share: number | undefined;
  if (policy.name === "none") detail = "policy 'none' keeps every entry";
  else if (!over) detail = "every head already fits the budget; nothing evicted";
  else {
    // Random draws are reproducible with the request's seed, and fresh without one.
    const view = sequence.view();
    const plan = policy.plan(view, budget, { ...spec, seed: spec.seed ?? SeededRandom.randomSeed() });
    checkPlan(plan.keep, sequence);
    if (engineObserved()) share = evictedAttentionShare(view, plan.keep);
    sequence.layers.forEach((layer, l) => layer.retain(plan.keep[l]));
    lazyLayers = plan.lazyLayers ?? [];
    sequence.lazyLayers = lazyLayers;
  }
  const outcome: EvictionOutcome = {
    policy: policy.name,
    applied: detail === "",
    ...before,
    entriesAfter: sequence.entries,
    bytesAfter: sequence.bytes,
    kept: sequence.layers.map((layer) => Array.from(layer.lengths)),
    lazyLayers,
    detail,
    ...(share === undefined ? {} : { evictedAttentionShare: share }),
  };
  observeEviction(sequence.id, outcome, startTime);
  return outcome;
}

/** A policy's plan must keep, per head, at least one existing slot, ascending. */
function checkPlan(plan: KeepPlan, sequence: Sequence): void {
  sequence.layers.forEach((layer, l) =>
    layer.lengths.forEach((length, h) => {
      const slots = plan[l]?.[h];
      const valid = slots && (length === 0 || slots.length > 0) && slots.every((s, i) => s >= 0 && s < length && (i === 0 || s > slots[i - 1]));
      if (!valid) throw new Error(`eviction plan for layer ${l} head ${h} is invalid`);
    }),
  );
}
