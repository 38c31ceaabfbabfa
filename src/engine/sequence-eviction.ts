import type { EvictionSpec } from "../policies/policy.js";
import { resolveEviction } from "../policies/registry.js";
import { applyEviction, overBudget } from "./apply-eviction.js";
import { DecodeBudget } from "./decode-budget.js";
import type { EvictionObserver, EvictionOutcome, ResolvedEviction } from "./eviction-types.js";
import type { Sequence } from "./sequence.js";

/** Eviction as the engine runs it on a sequence: requests resolved against the policies, keys read back from the device before a policy that scores them plans. */
export class SequenceEviction {
  constructor(
    private readonly recentQueryRows: number,
    private readonly observer: EvictionObserver,
  ) {}

  /** Checks `spec` against its policy, for a sequence whose longest head will hold `entries`. */
  resolve(spec: EvictionSpec, entries: number): ResolvedEviction {
    return { ...resolveEviction(spec, entries, this.recentQueryRows), observer: this.observer };
  }

  async apply(sequence: Sequence, spec: EvictionSpec, resolved: ResolvedEviction = this.resolve(spec, sequence.maxHeadLength)): Promise<EvictionOutcome> {
    if (resolved.policy.readsKeys && overBudget(sequence, resolved.budget)) await sequence.loadKeys();
    return applyEviction(sequence, spec, resolved);
  }

  /** Runs the sequence's standing decode budget when it is due; undefined when nothing ran. */
  async enforceBudget(sequence: Sequence): Promise<EvictionOutcome | undefined> {
    const budget = sequence.decodeBudget;
    if (!budget?.isDue(sequence)) return undefined;
    if (budget.readsKeys) await sequence.loadKeys();
    return budget.enforce(sequence) ?? undefined;
  }

  /** The standing budget `spec` sets on `sequence`; null for policy "none", which removes it. */
  decodeBudgetFor(spec: EvictionSpec, sequence: Sequence): DecodeBudget | null {
    if (spec.policy === "none") return null;
    return DecodeBudget.create(spec, this.resolve(spec, sequence.maxHeadLength), sequence.maxHeadLength);
  }
}
