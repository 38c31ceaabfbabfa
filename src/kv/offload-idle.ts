import type { KvResident } from "./kv-resident.js";
import type { ReliefPlan, ReliefStep } from "./pressure-relief.js";

/**
 * The second relief step (docs/kv-store.md, "Memory pressure"): after compression, offloads idle
 * residents to the KV store, least recently used first, until the shortfall would be freed. An
 * offloaded resident frees all it holds; `offload` takes it out of memory at once. One that cannot
 * leave memory at once (`canLeaveNow`: a device-resident cache not yet written to the store) is
 * planned as a write-back, after those that can.
 */
export class OffloadIdleSequences<R extends KvResident> implements ReliefStep<R> {
  constructor(
    private readonly offload: (resident: R) => void,
    private readonly canLeaveNow: (resident: R) => boolean = () => true,
  ) {}

  plan(candidates: readonly R[], shortfall: number): ReliefPlan<R> {
    // Those that can leave now go first: they include the ones written back for this very admission.
    const ordered = [...candidates.filter((r) => this.canLeaveNow(r)), ...candidates.filter((r) => !this.canLeaveNow(r))];
    const chosen: R[] = [];
    let freedBytes = 0;
    for (const candidate of ordered) {
      if (freedBytes >= shortfall) break;
      chosen.push(candidate);
      freedBytes += candidate.bytes;
    }
    const writeBack = chosen.filter((r) => !this.canLeaveNow(r));
    return { freedBytes, residents: chosen, writeBack, commit: () => chosen.forEach((resident) => this.offload(resident)) };
  }
}
