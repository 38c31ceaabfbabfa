import { KeysOnDevice } from "../kv/keys-on-device.js";
import type { EvictionSpec } from "../policies/policy.js";
import { resolveEviction } from "../policies/registry.js";
import { applyEviction } from "./apply-eviction.js";
import { DecodeBudget } from "./decode-budget.js";
import type { EvictionObserver, EvictionOutcome, ResolvedEviction } from "./eviction-types.js";
import type { Sequence } from "./sequence.js";

/** Eviction as the engine runs it on a sequence: requests resolved against the policies, keys read back from the device when a policy scores them. */
export class SequenceEviction {
  constructor(
    private readonly recentQueryRows: number,
    private readonly observer: EvictionObserver,
  ) {}

  /** Checks `spec` against its policy, for a sequence whose longest head will hold `entries`. */
  resolve(spec: EvictionSpec, entries: number): ResolvedEviction {
    return { ...resolveEviction(spec, entries, this.recentQueryRows), observer: this.observer };
  }

  apply(sequence: Sequence, spec: EvictionSpec, resolved: ResolvedEviction = this.resolve(spec, sequence.maxHeadLength)): Promise<EvictionOutcome> {
    return withKeys(sequence, () => applyEviction(sequence, spec, resolved));
  }

  /** Runs the sequence's standing decode budget when it is due; undefined when nothing ran. */
  async enforceBudget(sequence: Sequence): Promise<EvictionOutcome | undefined> {
    return (await withKeys(sequence, () => sequence.decodeBudget?.enforce(sequence))) ?? undefined;
  }

  /** The standing budget `spec` sets on `sequence`; null for policy "none", which removes it. */
  decodeBudgetFor(spec: EvictionSpec, sequence: Sequence): DecodeBudget | null {
    if (spec.policy === "none") return null;
    return DecodeBudget.create(spec, this.resolve(spec, sequence.maxHeadLength), sequence.maxHeadLength);
  }
}

/**
 * Runs an eviction; when its policy scores keys that are still on the device, reads them back and
 * runs it again (policies are pure: the first run changed nothing).
 */
async function withKeys<T>(sequence: Sequence, evict: () => T): Promise<T> {
  try {
    return evict();
  } catch (error) {
    if (!(error instanceof KeysOnDevice)) throw error;
    await sequence.loadKeys();
    return evict();
  }
}
