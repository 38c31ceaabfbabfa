import type { KvResident } from "./kv-resident.js";
import type { ReliefPlan, ReliefStep } from "./pressure-relief.js";

/**
 * The second relief step (docs/kv-store.md, "Memory pressure"): after compression, offloads idle
 * residents to the KV store, least recently used first, until the shortfall would be freed. An
 * offloaded resident frees all it holds; `offload` takes it out of memory at once (its write to the
 * store goes on after, without holding the memory).
 */
export class OffloadIdleSequences<R extends KvResident> implements ReliefStep<R> {
  constructor(private readonly offload: (resident: R) => void) {}

  plan(candidates: readonly R[], shortfall: number): ReliefPlan {
    const chosen: R[] = [];
    let freedBytes = 0;
    for (const candidate of candidates) {
      if (freedBytes >= shortfall) break;
      chosen.push(candidate);
      freedBytes += candidate.bytes;
    }
    return { freedBytes, residents: chosen, commit: () => chosen.forEach((resident) => this.offload(resident)) };
  }
}
