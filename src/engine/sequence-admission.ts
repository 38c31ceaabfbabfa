import { AdmissionAbandoned, AdmissionQueueFull, type AdmissionQueue } from "../kv/admission-queue.js";
import type { AllocationRequest, KvMemoryManager, Reservation } from "../kv/memory-manager.js";
import { KvBudgetExceeded } from "../kv/slab-pool.js";
import { EngineError } from "./engine-error.js";
import type { Sequence } from "./sequence.js";

/**
 * Writes `sequences` to the KV store, then runs `admit` at once, while those written are exactly as
 * stored (SequenceTiers.writeBack).
 */
export type WriteBack = <T>(sequences: Sequence[], admit: () => T) => Promise<T>;

/**
 * The engine's side of the memory manager (docs/architecture.md): a sequence's growth checked
 * against the per-sequence cap, then admitted, and every refusal turned into RESOURCE_EXHAUSTED
 * with the reason. Calls that start work (Prefill, Fork) may instead wait in the admission
 * queue for memory to free (docs/gateway.md); a step of a running Decode never waits there. When
 * relief needs idle sequences written back to the store first (device-resident caches), an
 * admission waits for that write-back. Relief is worked out ahead, in slices, for every admission,
 * queued calls included (one relief for the queue at a time, the queue tried again as it ends).
 */
export class SequenceAdmission {
  /**
   * Relief for the call at the head of the queue: "running" while it is worked out or written back,
   * then "prepared" or "written" for the queue's next attempt, which may run it at once.
   */
  private queueRelief: "running" | "prepared" | "written" | null = null;

  constructor(
    readonly memory: KvMemoryManager<Sequence>,
    /** Most entries any KV head of one sequence may hold. */
    private readonly maxSequenceTokens: number,
    readonly queue: AdmissionQueue,
    /** Only where sequences can need a write-back (a device-resident cache and a store): asking relief what to write back plans it once more. */
    private readonly writeBack: WriteBack | null,
  ) {
    memory.pool.onFreed(() => queue.retrySoon());
  }

  /** Whether `sequence` may take one more entry per head. */
  canGrow(sequence: Sequence): boolean {
    return sequence.maxHeadLength + 1 <= this.maxSequenceTokens;
  }

  /**
   * Takes room for `count` more entries per head (a decode step), all of it in one synchronous
   * admission: a concurrent admission must see these bytes as held. Relief the budget would need is
   * worked out first, in slices, as for Prefill and Fork; the step never waits in the queue.
   */
  async grow(sequence: Sequence, count: number): Promise<Reservation> {
    this.checkCap(sequence, count);
    const requestNow = (): AllocationRequest<Sequence> => ({ resident: sequence, bytes: sequence.bytesWithRoomFor(count), take: () => sequence.reserveRoom(count) });
    const request = requestNow();
    if (this.memory.needsRelief(request)) await this.memory.prepareRelief(request);
    return this.allocate(requestNow);
  }

  /**
   * As grow, but a call the budget cannot take now waits in the admission queue until it can, or gives up
   * (`signal`); the sequence's query ring is resized to `queryRows` rows in the same admission.
   */
  async growWhenRoom(sequence: Sequence, count: number, signal: AbortSignal | undefined, queryRows = sequence.recentQueries.rows): Promise<Reservation> {
    this.checkCap(sequence, count);
    return this.admitWhenRoom(
      () => ({ resident: sequence, bytes: sequence.bytesWithRoomFor(count, queryRows), take: () => sequence.reserveRoom(count, queryRows) }),
      signal,
    );
  }

  /** Makes `copy` (new and empty) a copy of `source` once its bytes are admitted, waiting in the admission queue if need be. */
  copyWhenRoom(copy: Sequence, source: Sequence, signal: AbortSignal | undefined): Promise<Reservation> {
    // copyFrom gives back what it took when it fails part-way.
    return this.admitWhenRoom(() => ({ resident: copy, bytes: source.bytes, take: () => (copy.copyFrom(source), () => copy.release()) }), signal);
  }

  /** Fills `target` (new and empty, held by the caller) with `fill`, a restore of about `bytes`, if they are admitted (relieving pressure first). */
  restore(target: Sequence, bytes: number, fill: () => void): Promise<Reservation> {
    // restoreSnapshot gives back what it took when it fails part-way.
    return this.allocate(() => ({ resident: target, bytes, take: () => (fill(), () => target.release()) }));
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

  private checkCap(sequence: Sequence, count: number): void {
    if (sequence.maxHeadLength + count > this.maxSequenceTokens) {
      throw new EngineError(
        "RESOURCE_EXHAUSTED",
        `sequence '${sequence.id}' would hold ${sequence.maxHeadLength + count} entries per head, over the per-sequence cap of ${this.maxSequenceTokens}; evict or release it`,
      );
    }
  }

  private async allocate(requestNow: () => AllocationRequest<Sequence>): Promise<Reservation> {
    const reservation = await this.allocateWritingBack(requestNow);
    if (!reservation) throw new EngineError("RESOURCE_EXHAUSTED", this.memory.whyRefused(requestNow()));
    return reservation;
  }

  /**
   * Admits now, or, when relief could make room once some idle sequences are written back to the
   * store (docs/kv-store.md, "Memory pressure"), writes them and asks again (the request rebuilt:
   * the requester's bytes may have changed meanwhile); null when refused.
   */
  private async allocateWritingBack(requestNow: () => AllocationRequest<Sequence>): Promise<Reservation | null> {
    const request = requestNow();
    const now = this.tryAllocate(request);
    const writeBack = this.writeBack;
    if (now || !writeBack) return now;
    const sequences = this.memory.writeBackFor(request);
    return sequences.length === 0 ? null : writeBack(sequences, () => this.tryAllocate(requestNow()));
  }

  private tryAllocate(request: AllocationRequest<Sequence>): Reservation | null {
    try {
      return this.memory.allocate(request);
    } catch (error) {
      throw this.budgetError(error); // taking the room can still find the budget short (device memory)
    }
  }

  /**
   * A queued call's try. The queue is tried whenever memory frees or a call ends, at once; so relief
   * the head of the queue needs is worked out first, in slices (and, where it needs idle sequences
   * written back, those are written), one such relief at a time, each followed by a try of the queue
   * whose first attempt may run that relief (`queueRelief`). Gives null while it is not admitted.
   */
  private tryQueued(requestNow: () => AllocationRequest<Sequence>): Reservation | null {
    const ready = this.queueRelief;
    if (ready === "running") return null; // the queue is tried again when that relief ends
    this.queueRelief = null; // prepared or written for this one attempt
    const request = requestNow();
    if (ready === null && this.memory.needsRelief(request)) {
      this.relieveQueue("prepared", (retry) => this.memory.prepareRelief(request).then(retry));
      return null;
    }
    const now = this.tryAllocate(request);
    const writeBack = this.writeBack;
    if (now || !writeBack || ready === "written") return now; // a write that failed is not tried again until the next try of the queue
    const sequences = this.memory.writeBackFor(request);
    if (sequences.length > 0) this.relieveQueue("written", (retry) => writeBack(sequences, retry));
    return null;
  }

  /** Runs `relief` for the call at the head of the queue; it calls `retry` when done, which tries the queue with relief `ready`. */
  private relieveQueue(ready: "prepared" | "written", relief: (retry: () => void) => Promise<unknown>): void {
    this.queueRelief = "running";
    let retried = false;
    const retry = () => {
      retried = true;
      this.queueRelief = ready;
      this.queue.retry();
      if (this.queueRelief === ready) this.queueRelief = null; // nobody waited any more
    };
    relief(retry)
      .catch(() => {}) // a failed write is counted by the store's telemetry; the call stays queued
      .finally(() => {
        if (!retried) this.queueRelief = null;
      });
  }

  /**
   * Admits now when nobody waits and the room is there (after a write-back if relief needs one);
   * otherwise queues the call (the request is rebuilt at each try: the resident's bytes change
   * meanwhile). Refused at once: what the tenant's quota refuses, what the whole budget cannot hold,
   * and any call when the queue is full.
   */
  private async admitWhenRoom(requestNow: () => AllocationRequest<Sequence>, signal: AbortSignal | undefined): Promise<Reservation> {
    // Relief the budget would need is worked out first, letting other calls through; the admission itself runs at once.
    if (this.queue.length === 0) await this.memory.prepareRelief(requestNow(), signal);
    const request = requestNow();
    const now = this.queue.length === 0 ? await this.allocateWritingBack(requestNow) : null;
    if (now) return now;
    if (this.queue.limit === 0 || !this.memory.couldFitLater(request)) throw new EngineError("RESOURCE_EXHAUSTED", this.memory.whyRefused(request));
    try {
      const waiting = this.queue.wait(request.resident.tenant, () => this.tryQueued(requestNow), signal);
      this.queue.retrySoon(); // joining behind others: the room may be there already
      return await waiting;
    } catch (error) {
      if (error instanceof AdmissionQueueFull) throw new EngineError("RESOURCE_EXHAUSTED", `${this.memory.whyRefused(request)}, and ${error.message}`);
      if (error instanceof AdmissionAbandoned) {
        throw error.reason === "deadline"
          ? new EngineError("DEADLINE_EXCEEDED", "the deadline passed while the call waited for KV memory")
          : new EngineError("CANCELLED", "the call was cancelled while it waited for KV memory");
      }
      throw error;
    }
  }
}
