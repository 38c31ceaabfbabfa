import { InvalidEvictionError, type EvictionSpec } from "../policies/policy.js";
import { applyEviction, planEviction } from "./apply-eviction.js";
import type { EvictionOutcome, PlannedEviction, ResolvedEviction } from "./eviction-types.js";
import type { Sequence, StandingBudget } from "./sequence.js";
import { minimumBudget } from "../policies/protected-parts.js";

/**
 * A standing budget that keeps a sequence within C entries per head while it
 * grows: when a head passes C + slack the policy runs again on the current
 * window and compacts back to C (kvpress's DecodingPress idea). A
 * keep_fraction is turned into a fixed C once, against the longest head when
 * the budget is set, so the budget does not shrink as the sequence grows.
 */
export class DecodeBudget implements StandingBudget {
  private constructor(
    readonly spec: EvictionSpec,
    private readonly resolved: ResolvedEviction,
    readonly tokens: number,
    readonly slack: number,
  ) {}

  static create(spec: EvictionSpec, resolved: ResolvedEviction, longestHead: number): DecodeBudget {
    const { policy } = resolved;
    const tokens = resolved.budget(Math.max(1, longestHead));
    const minimum = minimumBudget(policy, spec.params);
    if (tokens < minimum) {
      throw new InvalidEvictionError(
        "maxTokens" in spec.budget ? "eviction.max_tokens" : "eviction.keep_fraction",
        `decode budget of ${tokens} entries per head is below the minimum of ${minimum} for policy '${policy.name}'`,
      );
    }
    const fixed: EvictionSpec = { ...spec, budget: { maxTokens: tokens } };
    return new DecodeBudget(fixed, { ...resolved, budget: () => tokens }, tokens, spec.decodeSlack ?? policy.defaultDecodeSlack);
  }

  get policyName(): string {
    return this.resolved.policy.name;
  }

  /** Whether the policy scores keys, which a device-resident cache must read back before it runs. */
  get readsKeys(): boolean {
    return this.resolved.policy.readsKeys;
  }

  /** Whether some head has grown past C + slack. */
  isDue(sequence: Sequence): boolean {
    const limit = this.tokens + this.slack;
    return sequence.layers.some((layer) => layer.lengths.some((n) => n > limit));
  }

  /** Evicts when it is due (on a sequence the caller holds: the plan is sliced); null when nothing was due. */
  async enforce(sequence: Sequence): Promise<EvictionOutcome | null> {
    return this.isDue(sequence) ? applyEviction(sequence, this.spec, this.resolved) : null;
  }

  /**
   * Works out compacting to C now, whatever the slack (to relieve memory pressure), layer by layer;
   * commit it with commitEviction. The sequence is idle, not held: whoever runs it in slices must check
   * that it has not changed meanwhile (sequence-compression.ts).
   */
  planCompression(sequence: Sequence): Generator<void, PlannedEviction> {
    return planEviction(sequence, this.spec, this.resolved);
  }
}
