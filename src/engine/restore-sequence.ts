import { restoreSnapshot, type KvSnapshot } from "../kv/store/sequence-snapshot.js";
import { resolveEviction } from "../policies/registry.js";
import { DecodeBudget } from "./decode-budget.js";
import type { EvictionObserver } from "./eviction-types.js";
import type { Sequence } from "./sequence.js";

/**
 * Makes `sequence` (new and empty) the one `snapshot` was taken of, its standing decode budget
 * rebuilt from the stored spec (docs/kv-store.md). Releases what it took if it fails part-way.
 */
export function restoreSequence(sequence: Sequence, snapshot: KvSnapshot, recentQueryRows: number, observer: EvictionObserver): void {
  restoreSnapshot(snapshot, sequence, ({ spec }) =>
    DecodeBudget.create(spec, { ...resolveEviction(spec, sequence.maxHeadLength, recentQueryRows), observer }, sequence.maxHeadLength),
  );
}
