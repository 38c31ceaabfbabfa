import type { Policy, PolicyPlan } from "../policies/policy.js";

/**
 * What evicting works with and yields: the resolved request, the plan and the
 * outcome. Types only, apart from the code that runs evictions (apply-eviction.ts,
 * decode-budget.ts), so that a Sequence can hold its standing budget without
 * importing that code.
 */

/**
 * Who hears of each eviction (the engine's telemetry: a span and metrics). The
 * engine passes it in with the resolved eviction, so eviction code reports to
 * whatever it is given and imports no telemetry.
 */
export interface EvictionObserver {
  /** Whether the costly measurements (the evicted attention share) are wanted now. */
  measuring(): boolean;
  /** An eviction of `sequenceId`, planned at `startTime` (performance.now()), has been committed. */
  evicted(sequenceId: string, outcome: EvictionOutcome, startTime: number): void;
}

/** A policy checked against a request, with the request's budget C(T) and who hears of the evictions it runs. */
export interface ResolvedEviction {
  policy: Policy;
  budget: (entries: number) => number;
  observer: EvictionObserver;
}

export interface EvictionOutcome {
  policy: string;
  applied: boolean;
  budgetTokens: number;
  entriesBefore: number;
  entriesAfter: number;
  /** Bytes held (slab room and recent-query ring: what budgets count). */
  bytesBefore: number;
  bytesAfter: number;
  /** Bytes the entries themselves take (Sequence.entryBytes). */
  entryBytesBefore: number;
  entryBytesAfter: number;
  kept: number[][];
  lazyLayers: number[];
  detail: string;
  /** Share of the recent queries' attention the dropped entries held (see evicted-attention-share.ts);
   * measured only inside a sampled trace, since it costs about what attention scoring costs. */
  evictedAttentionShare?: number;
}

/** An eviction worked out but not yet applied: what it would keep and the bytes left after it. */
export interface PlannedEviction {
  policy: Policy;
  observer: EvictionObserver;
  budgetTokens: number;
  /** Absent when nothing is to be evicted; `detail` then says why. */
  plan?: PolicyPlan;
  /** The share of recent attention the plan drops (evicted-attention-share.ts), when measured. */
  evictedShare?: number;
  detail: string;
  bytesAfter: number;
  /** When planning began (performance.now()): the eviction's span covers scoring and compaction. */
  startTime: number;
  /** Recent-query rows the sequence keeps after (the policy named reads them); absent: unchanged. */
  queryRows?: number;
}
