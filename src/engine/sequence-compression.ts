import type { Compression } from "../kv/compress-idle.js";
import { runToEnd } from "../numerics/sliced-work.js";
import { InvalidEvictionError } from "../policies/policy.js";
import type { EngineTelemetry } from "../telemetry/engine-telemetry.js";
import { commitEviction } from "./apply-eviction.js";
import type { PlannedEviction } from "./eviction-types.js";
import type { Sequence, StandingBudget } from "./sequence.js";

/** A compression plan worked out ahead, with what it was worked out on. */
interface Prepared {
  budget: StandingBudget;
  state: string;
  plan: PlannedEviction;
}

/**
 * How memory pressure may compress idle sequences (docs/architecture.md): to their standing decode
 * budget, whatever the slack; not one that carries none (nothing is evicted from a sequence that did
 * not ask for eviction), nor one whose budget cannot run now. Relief runs inside one admission, at
 * once; a plan worked out ahead in slices (prepare) is used while its sequence is unchanged.
 */
export class SequenceCompressions {
  private readonly prepared = new WeakMap<Sequence, Prepared>();

  constructor(private readonly telemetry: EngineTelemetry) {}

  /** How pressure may compress `sequence` now; null when it may not. */
  of(sequence: Sequence): Compression | null {
    const budget = compressible(sequence);
    if (!budget) return null;
    const prepared = this.prepared.get(sequence);
    const plan = prepared && prepared.budget === budget && prepared.state === stateOf(sequence) ? prepared.plan : runToEnd(compressionPlan(budget, sequence));
    if (!plan) return null;
    return {
      bytesAfter: plan.bytesAfter,
      commit: (requesterTenant) => {
        this.prepared.delete(sequence);
        const outcome = commitEviction(sequence, plan);
        if (sequence.tenant !== requesterTenant) this.telemetry.crossTenantCompression(sequence.tenant, requesterTenant, outcome);
      },
    };
  }

  /**
   * Works out how pressure may compress `sequence`, layer by layer, for `of` to find while the sequence
   * is unchanged; returns the bytes it would hold after, or null when it may not be compressed.
   */
  *prepare(sequence: Sequence): Generator<void, { bytesAfter: number } | null> {
    const budget = compressible(sequence);
    if (!budget) return null;
    const state = stateOf(sequence);
    let prepared = this.prepared.get(sequence);
    if (!prepared || prepared.budget !== budget || prepared.state !== state) {
      const work = compressionPlan(budget, sequence);
      let step = work.next();
      while (!step.done) {
        yield;
        // Idle, not held: a call may change it between slices. Then the plan is dropped, and `of` plans it at once.
        if (stateOf(sequence) !== state || sequence.decodeBudget !== budget) return null;
        step = work.next();
      }
      if (!step.value) return null;
      this.prepared.set(sequence, (prepared = { budget, state, plan: step.value }));
    }
    return { bytesAfter: prepared.plan.bytesAfter };
  }
}

/** The standing budget pressure may compress `sequence` to, if any. */
function compressible(sequence: Sequence): StandingBudget | null {
  // Keys still on the device cannot be read back here (relief runs at once, under pressure): such a budget is passed over.
  const budget = sequence.decodeBudget;
  return budget && !(budget.readsKeys && !sequence.keysOnHost) ? budget : null;
}

/** Compacting `sequence` to `budget`, worked out; null when the budget cannot run now (its proxy queries have left the ring). */
function* compressionPlan(budget: StandingBudget, sequence: Sequence): Generator<void, PlannedEviction | null> {
  try {
    return yield* budget.planCompression(sequence);
  } catch (error) {
    if (error instanceof InvalidEvictionError) return null;
    throw error;
  }
}

/** What a compression plan depends on besides the budget: the entries held, the bytes (room given back changes them), the changes other than appends. */
function stateOf(sequence: Sequence): string {
  return `${sequence.bytes} ${sequence.layers.map((layer) => `${layer.revision}:${layer.entries}`).join(" ")}`;
}
