import type { KvResident } from "./kv-resident.js";

/**
 * One step of relieving memory pressure (docs/architecture.md): the memory manager runs its
 * steps in order (compress idle sequences; a later tier adds offloading before refusing) until
 * together they would free the shortfall. A step only plans: nothing changes until the manager
 * commits, which it does only when all the plans together free enough and none waits for a
 * write-back, so a request that is refused anyway costs no sequence anything.
 */
export interface ReliefStep<R extends KvResident> {
  /**
   * Plans freeing up to `shortfall` bytes from `candidates` (idle residents the requester may take
   * room from, least recently used first).
   */
  plan(candidates: readonly R[], shortfall: number, requester: R): ReliefPlan<R>;
  /**
   * Optional: works out ahead, in slices (a generator yielding between them), what `plan` would, so
   * that `plan`, run at once inside an admission, finds it done while the candidates are unchanged.
   */
  prepare?(candidates: readonly R[], shortfall: number, requester: R): Generator<void, void>;
}

/** What a relief step worked out: the bytes it would free, and how to free them. */
export interface ReliefPlan<R extends KvResident = KvResident> {
  readonly freedBytes: number;
  /** The residents the plan changes: later steps do not plan on them too, so no byte is counted twice. */
  readonly residents?: readonly R[];
  /**
   * Residents counted in `freedBytes` that must be written to the store before they can leave
   * memory (a device-resident cache, read back asynchronously): the plan cannot commit until then.
   */
  readonly writeBack?: readonly R[];
  commit(): void;
}
