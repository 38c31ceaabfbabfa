import type { AllocationRequest, KvMemoryManager, Reservation } from "../kv/memory-manager.js";
import { KvBudgetExceeded } from "../kv/slab-pool.js";
import { EngineError } from "./engine-error.js";
import type { Sequence } from "./sequence.js";

/**
 * The engine's side of the memory manager (docs/architecture.md): a sequence's growth checked
 * against the per-sequence cap, then admitted, and every refusal turned into RESOURCE_EXHAUSTED
 * with the reason.
 */
export class SequenceAdmission {
  constructor(
    readonly memory: KvMemoryManager<Sequence>,
    /** Most entries any KV head of one sequence may hold. */
    private readonly maxSequenceTokens: number,
  ) {}

  /** Whether `sequence` may take one more entry per head. */
  canGrow(sequence: Sequence): boolean {
    return sequence.maxHeadLength + 1 <= this.maxSequenceTokens;
  }

  /** Takes room for `count` more entries per head, all of it before any await: a concurrent admission must see these bytes as held. */
  grow(sequence: Sequence, count: number): Reservation {
    if (sequence.maxHeadLength + count > this.maxSequenceTokens) {
      throw new EngineError(
        "RESOURCE_EXHAUSTED",
        `sequence '${sequence.id}' would hold ${sequence.maxHeadLength + count} entries per head, over the per-sequence cap of ${this.maxSequenceTokens}; evict or release it`,
      );
    }
    return this.allocate({ resident: sequence, bytes: sequence.bytesWithRoomFor(count), take: () => sequence.reserveRoom(count) });
  }

  /** Makes `copy` (new and empty) a copy of `source`, if its bytes are admitted. */
  copy(copy: Sequence, source: Sequence): Reservation {
    // copyFrom gives back what it took when it fails part-way.
    return this.allocate({ resident: copy, bytes: source.bytes, take: () => (copy.copyFrom(source), () => copy.release()) });
  }

  /** Fills `target` (new and empty) with `fill`, a restore of about `bytes`, if they are admitted (relieving pressure first). */
  restore(target: Sequence, bytes: number, fill: () => void): Reservation {
    // restoreSnapshot gives back what it took when it fails part-way.
    return this.allocate({ resident: target, bytes, take: () => (fill(), () => target.release()) });
  }

  /** Refuses a request that would feed or generate more tokens than the tenant quota allows per request. */
  checkRequestTokens(count: number, what: string): void {
    const refusal = this.memory.requestTokensRefusal(count, what);
    if (refusal) throw new EngineError("RESOURCE_EXHAUSTED", refusal);
  }

  /** A slab the budget could not give, mid-way through a step, as the status the caller gets. */
  budgetError(error: unknown): unknown {
    return error instanceof KvBudgetExceeded ? new EngineError("RESOURCE_EXHAUSTED", `${error.message} (budget ${this.memory.pool.budgetBytes} bytes)`) : error;
  }

  private allocate(request: AllocationRequest<Sequence>): Reservation {
    let reservation: Reservation | null;
    try {
      reservation = this.memory.allocate(request);
    } catch (error) {
      throw this.budgetError(error); // taking the room can still find the budget short (device memory)
    }
    if (!reservation) throw new EngineError("RESOURCE_EXHAUSTED", this.memory.whyRefused(request));
    return reservation;
  }
}
