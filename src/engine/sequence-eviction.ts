import { InvalidEvictionError, type EvictionSpec } from "../policies/policy.js";
import { POLICIES, resolveEviction } from "../policies/registry.js";
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

  /**
   * Runs `spec` on the sequence the caller holds; from then on the sequence keeps only the query rows
   * that policy reads (none for streaming_llm, knorm, h2o: its ring is given back). Once `signal`
   * aborts, it stops with the sequence as it was.
   */
  async apply(sequence: Sequence, spec: EvictionSpec, resolved: ResolvedEviction = this.resolve(spec, sequence.maxHeadLength), signal?: AbortSignal): Promise<EvictionOutcome> {
    const rows = this.queryRowsFor(sequence, spec, resolved);
    if (resolved.policy.readsKeys && overBudget(sequence, resolved.budget)) await sequence.loadKeys();
    return applyEviction(sequence, spec, resolved, rows, signal);
  }

  /**
   * The query rows `spec`'s policy reads, refused (INVALID_ARGUMENT) when the sequence keeps fewer: an earlier
   * policy named for it read fewer, and the queries of tokens already fed cannot be computed again.
   */
  queryRowsFor(sequence: Sequence, spec: EvictionSpec, resolved: ResolvedEviction): number {
    const rows = Math.min(resolved.policy.queryRowsNeeded(spec.params, sequence.fedTokens), this.recentQueryRows);
    const kept = sequence.recentQueries.rows;
    if (rows > kept) {
      throw new InvalidEvictionError(
        "eviction.policy",
        `policy '${spec.policy}' reads the queries of the last ${rows} tokens, but sequence '${sequence.id}' keeps ${kept}: the policy named for it before reads no more; name '${spec.policy}' in the Prefill that feeds the tokens it should score`,
      );
    }
    return rows;
  }

  /** Runs the sequence's standing decode budget when it is due; undefined when nothing ran. */
  async enforceBudget(sequence: Sequence): Promise<EvictionOutcome | undefined> {
    const budget = sequence.decodeBudget;
    if (!budget?.isDue(sequence)) return undefined;
    if (budget.readsKeys) await sequence.loadKeys();
    return (await budget.enforce(sequence)) ?? undefined;
  }

  /** After a Decode that named `spec` produced tokens: the sequence keeps only the query rows its policy reads. */
  keepQueryRowsOf(sequence: Sequence, spec: EvictionSpec): void {
    const policy = POLICIES.get(spec.policy);
    if (policy) sequence.keepQueryRows(Math.min(policy.queryRowsNeeded(spec.params, sequence.fedTokens), this.recentQueryRows));
  }

  /** The standing budget `spec` sets on `sequence`; null for policy "none", which removes it. */
  decodeBudgetFor(spec: EvictionSpec, sequence: Sequence): DecodeBudget | null {
    if (spec.policy === "none") return null;
    const resolved = this.resolve(spec, sequence.maxHeadLength);
    this.queryRowsFor(sequence, spec, resolved);
    return DecodeBudget.create(spec, resolved, sequence.maxHeadLength);
  }
}
