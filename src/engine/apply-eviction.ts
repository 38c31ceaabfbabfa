import { SeededRandom } from "../numerics/seeded-random.js";
import { runInSlices } from "../numerics/sliced-work.js";
import type { EvictionSpec, KeepPlan } from "../policies/policy.js";
import { evictedAttentionShare } from "./evicted-attention-share.js";
import type { EvictionOutcome, PlannedEviction, ResolvedEviction } from "./eviction-types.js";
import type { Sequence } from "./sequence.js";

/**
 * Works out an eviction without changing the sequence (policies are pure), layer by layer: run it with
 * runInSlices, while the caller holds the sequence (nothing else changes it between slices), or runToEnd.
 */
export function* planEviction(sequence: Sequence, spec: EvictionSpec, { policy, budget, observer }: ResolvedEviction, queryRows?: number): Generator<void, PlannedEviction> {
  const base = { policy, observer, budgetTokens: budget(sequence.maxHeadLength), bytesAfter: sequence.bytes, startTime: performance.now(), queryRows };
  if (policy.name === "none") return { ...base, detail: "policy 'none' keeps every entry" };
  if (!overBudget(sequence, budget)) return { ...base, detail: "every head already fits the budget; nothing evicted" };
  if (policy.readsKeys && !sequence.keysOnHost) throw new Error(`policy '${policy.name}' scores keys: read them back (Sequence.loadKeys) before planning`);
  // Random draws are reproducible with the request's seed, and fresh without one.
  const view = sequence.view();
  const plan = yield* policy.plan(view, budget, { ...spec, seed: spec.seed ?? SeededRandom.randomSeed() });
  checkPlan(plan.keep, sequence);
  // Each head shrinks to the room its kept entries need.
  const bytesAfter = sequence.layers.reduce((sum, layer, l) => sum - layer.bytes + layer.bytesHolding(plan.keep[l].map((k) => k.length)), sequence.bytes);
  // Unmeasured when the keys are still on the device: a policy that did not score them did not have them read back.
  const evictedShare = observer.measuring() && sequence.keysOnHost ? yield* evictedAttentionShare(view, plan.keep) : undefined;
  return { ...base, plan, detail: "", bytesAfter, evictedShare };
}

/** Compacts the sequence's cache to a planned eviction, returning memory to the pool. */
export function commitEviction(sequence: Sequence, planned: PlannedEviction): EvictionOutcome {
  const before = { entriesBefore: sequence.entries, bytesBefore: sequence.bytes, entryBytesBefore: sequence.entryBytes, budgetTokens: planned.budgetTokens };
  const { plan, evictedShare } = planned;
  if (plan) {
    sequence.layers.forEach((layer, l) => layer.retain(plan.keep[l]));
    sequence.recordEviction(plan.lazyLayers ?? []);
  }
  // The policy named now decides the recent queries the sequence keeps from here on (docs/policies.md).
  if (planned.queryRows !== undefined) sequence.keepQueryRows(planned.queryRows);
  const outcome: EvictionOutcome = {
    policy: planned.policy.name,
    applied: plan !== undefined,
    ...before,
    entriesAfter: sequence.entries,
    bytesAfter: sequence.bytes,
    entryBytesAfter: sequence.entryBytes,
    kept: sequence.layers.map((layer) => Array.from(layer.lengths)),
    lazyLayers: plan?.lazyLayers ?? [],
    detail: planned.detail,
    ...(evictedShare === undefined ? {} : { evictedAttentionShare: evictedShare }),
  };
  planned.observer.evicted(sequence.id, outcome, planned.startTime);
  return outcome;
}

/** Whether some head holds more than the budget allows it. */
export function overBudget(sequence: Sequence, budget: (entries: number) => number): boolean {
  return sequence.layers.some((layer) => layer.lengths.some((n) => n > budget(n)));
}

/**
 * Runs a policy on a sequence the caller holds, letting the event loop turn between slices of the
 * plan, and compacts its cache to the plan; with `queryRows`, the sequence keeps that many recent
 * queries after. Once `signal` aborts it stops with the sequence unchanged: only the plan is sliced,
 * the compaction is one synchronous step.
 */
export async function applyEviction(sequence: Sequence, spec: EvictionSpec, resolved: ResolvedEviction, queryRows?: number, signal?: AbortSignal): Promise<EvictionOutcome> {
  return commitEviction(sequence, await runInSlices(planEviction(sequence, spec, resolved, queryRows), signal));
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
