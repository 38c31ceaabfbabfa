import type { KvResident } from "./kv-resident.js";
import type { ReliefPlan, ReliefStep } from "./pressure-relief.js";

/** A compression of one resident, worked out but not applied. */
export interface Compression {
  /** The bytes the resident holds once compressed. */
  readonly bytesAfter: number;
  /** Applies it; `requesterTenant` is the tenant whose request the room is taken for. */
  commit(requesterTenant: string): void;
}

/**
 * The first relief step (docs/architecture.md): compresses idle residents that asked to be kept
 * within a decode budget, least recently used first, until the shortfall would be freed. A
 * resident that did not ask for eviction is never compressed: `compressionOf` gives null for it
 * (and for one whose budget cannot run now).
 */
export class CompressIdleSequences<R extends KvResident> implements ReliefStep<R> {
  /** `prepareOf`, when given, works a resident's compression out in slices, for `compressionOf` to find while it is unchanged. */
  constructor(
    private readonly compressionOf: (resident: R) => Compression | null,
    private readonly prepareOf?: (resident: R) => Generator<void, Pick<Compression, "bytesAfter"> | null>,
  ) {}

  /** Works out, in slices, the compressions `plan` would choose for `shortfall` now. */
  *prepare(candidates: readonly R[], shortfall: number): Generator<void, void> {
    if (!this.prepareOf) return;
    let freedBytes = 0;
    for (const candidate of candidates) {
      if (freedBytes >= shortfall) break;
      const compression = yield* this.prepareOf(candidate);
      if (compression !== null) freedBytes += candidate.bytes - compression.bytesAfter;
    }
  }

  plan(candidates: readonly R[], shortfall: number, requester: R): ReliefPlan<R> {
    const chosen: Compression[] = [];
    const residents: R[] = [];
    let freedBytes = 0;
    for (const candidate of candidates) {
      if (freedBytes >= shortfall) break;
      const compression = this.compressionOf(candidate);
      if (compression === null) continue;
      chosen.push(compression);
      residents.push(candidate);
      freedBytes += candidate.bytes - compression.bytesAfter;
    }
    return { freedBytes, residents, commit: () => chosen.forEach((compression) => compression.commit(requester.tenant)) };
  }
}
