import { runInSlices } from "../numerics/sliced-work.js";
import type { KvResident } from "./kv-resident.js";
import type { ReliefPlan, ReliefStep } from "./pressure-relief.js";
import type { SlabPool } from "./slab-pool.js";
import type { TenantQuota } from "./tenant-quota.js";

/** Room asked of the memory manager for one resident. */
export interface AllocationRequest<R extends KvResident> {
  resident: R;
  /** The bytes the resident will hold, in all, once the room is taken. */
  bytes: number;
  /** Takes the room (synchronously, so no other admission runs between check and take); returns how to give it back. */
  take(): () => void;
}

/** Room granted and taken; `release` gives it back when the work it was taken for fails. */
export interface Reservation {
  /** Bytes the resident grew by. */
  readonly bytes: number;
  release(): void;
}

export interface MemoryManagerOptions<R extends KvResident> {
  /** Limits per tenant beside the pool's budget; absent = none. */
  quota?: TenantQuota;
  /** Whether relief may take room from other tenants' residents (default true), or only the requester's own. */
  crossTenantRelief?: boolean;
  /** Run in order under pressure; an empty list refuses at once. */
  relief: readonly ReliefStep<R>[];
}

/**
 * Decides who may hold KV memory (docs/architecture.md): admission against the tenant's quota
 * and the pool's budget, pressure relief when the budget is short, and the reservation itself.
 * As vLLM v1's scheduler asks `allocate_slots` and preempts on None, a caller asks `allocate`
 * and refuses the request on null (`whyRefused` says why, in the state that refused it).
 */
export class KvMemoryManager<R extends KvResident> {
  constructor(
    readonly pool: SlabPool,
    /** Every resident holding memory now (the sequence table). */
    private readonly residents: () => Iterable<R>,
    private readonly options: MemoryManagerOptions<R>,
  ) {}

  get quota(): TenantQuota | undefined {
    return this.options.quota;
  }

  /**
   * Admits the request and takes its room, or gives null and changes nothing (as when relief would
   * first have to write residents back: `writeBackFor`). The tenant's quota is checked first: a
   * request it refuses must not have compressed anyone's cache.
   */
  allocate(request: AllocationRequest<R>): Reservation | null {
    if (this.quotaShortfall(request) > 0) return null;
    const shortfall = this.budgetShortfall(request);
    if (shortfall > 0) {
      const plans = this.planRelief(request.resident, shortfall);
      if (!plans || plans.some((plan) => plan.writeBack?.length)) return null;
      for (const plan of plans) plan.commit();
    }
    if (this.budgetShortfall(request) > 0) return null;
    const before = request.resident.bytes;
    const giveBack = request.take();
    let held = true;
    return {
      bytes: request.resident.bytes - before,
      release: () => {
        if (held) giveBack();
        held = false;
      },
    };
  }

  /**
   * The residents relief would have to write back to the store before it could admit `request`
   * (docs/kv-store.md, "Memory pressure"); empty when it needs none, or when even that would not free
   * enough: `allocate` admits or refuses such a request as it is. Plans only, changes nothing.
   */
  writeBackFor(request: AllocationRequest<R>): R[] {
    const shortfall = this.budgetShortfall(request);
    if (this.quotaShortfall(request) > 0 || shortfall <= 0) return [];
    return (this.planRelief(request.resident, shortfall) ?? []).flatMap((plan) => plan.writeBack ?? []);
  }

  /** Why `allocate` refused `request`: the tenant's quota or the global budget, with the bytes involved. */
  whyRefused(request: AllocationRequest<R>): string {
    const { resident, bytes } = request;
    const quota = this.options.quota?.kvBytes;
    if (quota !== undefined && this.quotaShortfall(request) > 0) {
      const held = this.tenantBytes(resident.tenant);
      return `tenant KV quota exhausted: ${bytes - resident.bytes} bytes requested, ${Math.max(0, quota - held)} bytes free of the tenant's ${quota}`;
    }
    return `KV budget exhausted: ${bytes} bytes requested, ${this.pool.available + resident.bytes} bytes free (budget ${this.pool.budgetBytes} bytes)`;
  }

  /**
   * Whether a request `allocate` refused could be admitted once others free memory: the pool's
   * budget refused it (not the tenant's quota, which only the tenant's own releases change), and
   * it would fit the budget if nothing else were held.
   */
  couldFitLater(request: AllocationRequest<R>): boolean {
    return this.quotaShortfall(request) <= 0 && request.bytes <= this.pool.budgetBytes;
  }

  /** Why `tenant` may not open another sequence now; undefined when it may. */
  newSequenceRefusal(tenant: string): string | undefined {
    const limit = this.options.quota?.sequences;
    if (limit === undefined || this.residentsOf(tenant).length < limit) return undefined;
    return `the tenant holds ${limit} sequences, its quota; release one first`;
  }

  /** Why one request may not feed or generate `count` tokens; undefined when it may. */
  requestTokensRefusal(count: number, what: string): string | undefined {
    const limit = this.options.quota?.requestTokens;
    if (limit === undefined || count <= limit) return undefined;
    return `${what} of ${count} tokens is over the quota of ${limit} tokens per request`;
  }

  residentsOf(tenant: string): R[] {
    return [...this.residents()].filter((r) => r.tenant === tenant);
  }

  tenantBytes(tenant: string): number {
    return this.residentsOf(tenant).reduce((sum, r) => sum + r.bytes, 0);
  }

  private quotaShortfall({ resident, bytes }: AllocationRequest<R>): number {
    const quota = this.options.quota?.kvBytes;
    return quota === undefined ? 0 : this.tenantBytes(resident.tenant) - resident.bytes + bytes - quota;
  }

  private budgetShortfall({ resident, bytes }: AllocationRequest<R>): number {
    return this.pool.used - resident.bytes + bytes - this.pool.budgetBytes;
  }

  /**
   * Before `allocate` of a request the budget is short for: works out the relief it would run, in slices
   * with the event loop turning between them (a compression's plan takes tens of milliseconds), so that
   * the relief inside the admission, which runs at once, finds its plans made. Changes nothing.
   */
  async prepareRelief(request: AllocationRequest<R>, signal?: AbortSignal): Promise<void> {
    if (!this.needsRelief(request)) return;
    const shortfall = this.budgetShortfall(request);
    const candidates = this.candidatesFor(request.resident);
    for (const step of this.options.relief) {
      if (step.prepare) await runInSlices(step.prepare(candidates, shortfall, request.resident), signal);
    }
  }

  /** Whether admitting `request` now would run relief: the budget is short, the tenant's quota is not. */
  needsRelief(request: AllocationRequest<R>): boolean {
    return this.budgetShortfall(request) > 0 && this.quotaShortfall(request) <= 0;
  }

  /** Idle residents the requester may take room from, least recently used first. */
  private candidatesFor(requester: R): R[] {
    const crossTenant = this.options.crossTenantRelief ?? true;
    return [...this.residents()].filter((r) => r !== requester && !r.busy && (crossTenant || r.tenant === requester.tenant)).sort((a, b) => a.lastUsed - b.lastUsed);
  }

  /** Plans every step until together they free `shortfall`; null when they cannot. */
  private planRelief(requester: R, shortfall: number): ReliefPlan<R>[] | null {
    let candidates = this.candidatesFor(requester);
    const plans: ReliefPlan<R>[] = [];
    let remaining = shortfall;
    for (const step of this.options.relief) {
      if (remaining <= 0) break;
      const plan = step.plan(candidates, remaining, requester);
      plans.push(plan);
      remaining -= plan.freedBytes;
      const planned = new Set(plan.residents ?? []);
      candidates = candidates.filter((r) => !planned.has(r));
    }
    return remaining > 0 ? null : plans;
  }
}
