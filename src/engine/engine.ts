import { AdmissionQueue } from "../kv/admission-queue.js";
import { cacheConfigOf, type CacheConfig } from "../kv/cache-config.js";
import { CompressIdleSequences } from "../kv/compress-idle.js";
import { KvMemoryManager } from "../kv/memory-manager.js";
import { OffloadIdleSequences } from "../kv/offload-idle.js";
import { captureSnapshot, restoredBytes, type KvSnapshot } from "../kv/store/sequence-snapshot.js";
import { SlabPool } from "../kv/slab-pool.js";
import type { EvictionSpec } from "../policies/policy.js";
import { EngineTelemetry } from "../telemetry/engine-telemetry.js";
import { ANONYMOUS, type CallContext } from "./caller.js";
import { DecodeStreams, type DecodeInput, type GeneratedToken } from "./decode-stream.js";
import { contextLimit, type EngineModel } from "../model/engine-model.js";
import { warmUp, type WarmedShape } from "./warm-up.js";
import { EngineError } from "./engine-error.js";
import type { EngineOptions } from "./engine-options.js";
import type { EvictionOutcome } from "./eviction-types.js";
import { Prefill, type PrefillInput, type PrefillOutcome } from "./prefill.js";
import { requestFingerprint } from "./request-digest.js";
import { RequestLog } from "./request-log.js";
import { Sequence } from "./sequence.js";
import { SequenceAdmission } from "./sequence-admission.js";
import { SequenceCompressions } from "./sequence-compression.js";
import { SequenceEviction } from "./sequence-eviction.js";
import { SequenceTable } from "./sequence-table.js";
import { restoreSequence } from "./restore-sequence.js";
import { SequenceTiers, type OffloadOutcome, type Residency } from "./sequence-tiers.js";
import { snapshotOf, storedOnlySnapshot, type StatsQuery, type StatsSnapshot } from "./stats-snapshot.js";
import { truncate, type TruncateOutcome } from "./truncate.js";

export type { CallContext, Caller } from "./caller.js";
export { ANONYMOUS } from "./caller.js";
export type { DecodeInput, FinishReason, GeneratedToken } from "./decode-stream.js";
export type { EngineModel } from "../model/engine-model.js";
export { DEFAULT_MAX_BATCH_SIZE, DEFAULT_MAX_PROMPT_BYTES, DEFAULT_MAX_SEQUENCE_TOKENS, type EngineKvStore, type EngineOptions } from "./engine-options.js";
export type { OffloadOutcome, Residency } from "./sequence-tiers.js";
export type { EvictionOutcome } from "./eviction-types.js";
export { MAX_DISTRIBUTION_BYTES, type PrefillInput, type PrefillOutcome } from "./prefill.js";
export type { SequenceSnapshot, StatsQuery, StatsSnapshot } from "./stats-snapshot.js";
export type { TruncateOutcome } from "./truncate.js";
export type { TenantQuota } from "../kv/tenant-quota.js";

export interface ForkOutcome {
  newSequenceId: string;
  position: number;
  kvBytes: number;
}

/**
 * The engine's facade (docs/architecture.md): every public call on sequences, over the sequence
 * table, the memory manager, prefill and the decode streams. A call that fails leaves its
 * sequence exactly as it was; calls on different sequences run concurrently, and a second
 * concurrent call on one sequence is refused (ABORTED). Every call takes one CallContext: the
 * caller (sequence ids are per tenant), the signal that cancels it, and the request id whose
 * retries are answered from the request log.
 */
export class Engine {
  readonly pool: SlabPool;
  private readonly table: SequenceTable;
  private readonly memory: KvMemoryManager<Sequence>;
  private readonly admission: SequenceAdmission;
  private readonly eviction: SequenceEviction;
  private readonly telemetry: EngineTelemetry;
  private readonly prefiller: Prefill;
  private readonly streams: DecodeStreams;
  private readonly requests: RequestLog;
  /** The KV store tier; absent without --kv-store. */
  private readonly tiers?: SequenceTiers;

  constructor(
    readonly model: EngineModel,
    readonly options: EngineOptions,
  ) {
    const pool = (this.pool = new SlabPool(options.kvBudgetBytes));
    const { config, runner } = model;
    const shape = { layers: config.layers, heads: config.heads, kvHeads: config.kvHeads, headSize: config.headSize };
    const device = runner.deviceCache;
    this.table = new SequenceTable({
      ttlMs: options.sequenceTtlMs,
      create: (id, tenant) => new Sequence(id, tenant, pool, shape, options.recentQueryRows, runner.kvDtype, device && (() => device.createLayer(pool))),
      newSequenceRefusal: (tenant) => this.memory.newSequenceRefusal(tenant),
    });
    const telemetry = (this.telemetry = options.telemetry ?? new EngineTelemetry());
    const store = options.kvStore;
    const compressions = new SequenceCompressions(telemetry);
    let tiers: SequenceTiers | undefined;
    this.memory = new KvMemoryManager(pool, () => this.table.all(), {
      quota: options.tenantQuota,
      crossTenantRelief: options.crossTenantCompression,
      // Compress first (the sequence stays here), then offload (it leaves memory), then refuse. A
      // device-resident cache (WebGPU) is written back to the store before it may leave (docs/kv-store.md).
      relief: [
        new CompressIdleSequences<Sequence>((s) => compressions.of(s), (s) => compressions.prepare(s)),
        ...(store ? [new OffloadIdleSequences<Sequence>((s) => tiers!.offloadNow(s), (s) => tiers!.canLeaveNow(s))] : []),
      ],
    });
    this.admission = new SequenceAdmission(this.memory, options.maxSequenceTokens, new AdmissionQueue(options.maxQueue ?? 0), store && device ? (sequences, admit) => tiers!.writeBack(sequences, admit) : null);
    tiers = this.tiers =
      store &&
      new SequenceTiers(this.table, {
        ...store,
        offloadIdleAfterMs: store.offloadIdleAfterMs,
        ttlMs: options.sequenceTtlMs,
        recentQueryRows: options.recentQueryRows,
        telemetry,
        admission: this.admission,
      });
    this.eviction = new SequenceEviction(options.recentQueryRows, telemetry);
    this.prefiller = new Prefill(model, options, this.table, this.admission, this.eviction, telemetry);
    this.streams = new DecodeStreams(model, options, this.table, this.admission, this.eviction, telemetry);
    this.requests = new RequestLog(options.requestLog);
  }

  /**
   * Runs the first step shapes (a prefill chunk onto an empty cache and onto one chunk, a decode step)
   * before serving, on a scratch sequence outside the table and the budget (src/engine/warm-up.ts).
   */
  warmUp(): Promise<WarmedShape[]> {
    const { config, runner } = this.model;
    const shape = { layers: config.layers, heads: config.heads, kvHeads: config.kvHeads, headSize: config.headSize };
    const pool = new SlabPool(Number.MAX_SAFE_INTEGER);
    const device = runner.deviceCache;
    const scratch = () => new Sequence("warm-up", "", pool, shape, 0, runner.kvDtype, device && (() => device.createLayer(pool)));
    return warmUp(this.model, this.options.prefillChunkTokens, contextLimit(this.model, this.options.allowPastContext), scratch);
  }

  prefill(input: PrefillInput, { caller = ANONYMOUS, signal, requestId }: CallContext = {}): Promise<PrefillOutcome> {
    const { sequenceId, ...content } = input;
    return this.requests
      .run(caller.tenant, requestId, requestFingerprint("Prefill", sequenceId, content), async () => {
        await this.tiers?.bringIn(caller, sequenceId, true);
        return this.prefiller.run(input, signal, caller);
      })
      .finally(() => this.admission.queue.retrySoon());
  }

  /**
   * Generates tokens; a request id is not kept for Decode (a stream is not replayed). A sequence a
   * call leaves idle may be compressed for calls waiting for memory (when it has a decode budget),
   * though no memory was freed: the queue tries again when the stream ends.
   */
  async *decode(input: DecodeInput, { caller = ANONYMOUS, signal }: CallContext = {}): AsyncGenerator<GeneratedToken> {
    try {
      await this.tiers?.bringIn(caller, input.sequenceId, false);
      yield* this.streams.run(input, signal, caller);
    } finally {
      this.admission.queue.retrySoon();
    }
  }

  /** Runs a policy on the sequence; planning lets other calls through between slices, and a cancelled call changes nothing. */
  evict(sequenceId: string, spec: EvictionSpec, { caller = ANONYMOUS, signal, requestId }: CallContext = {}): Promise<EvictionOutcome> {
    return this.requests.run(caller.tenant, requestId, requestFingerprint("Evict", sequenceId, spec), async () => {
      await this.tiers?.bringIn(caller, sequenceId, false);
      const sequence = this.table.lookup(caller, sequenceId);
      const resolved = this.eviction.resolve(spec, sequence.maxHeadLength);
      return this.table.withSequence(sequence, false, () => this.eviction.apply(sequence, spec, resolved, signal));
    });
  }

  /**
   * Copies `sequenceId` under `newSequenceId` (same tenant): cache, recent queries, where generation
   * stands and its decode budget. Nothing is shared, so the copy's bytes count against the budgets.
   */
  fork(sequenceId: string, newSequenceId: string, { caller = ANONYMOUS, signal, requestId }: CallContext = {}): Promise<ForkOutcome> {
    return this.requests.run(caller.tenant, requestId, requestFingerprint("Fork", sequenceId, { newSequenceId }), async () => {
      await this.tiers?.bringIn(caller, sequenceId, false);
      await this.tiers?.bringIn(caller, newSequenceId, true);
      const source = this.table.lookup(caller, sequenceId);
      if (this.table.get(caller, newSequenceId)) {
        throw new EngineError("ALREADY_EXISTS", `sequence '${newSequenceId}' already exists; release it or choose another new_sequence_id`);
      }
      // Held while copying, so that making room never compresses the sequence being copied.
      source.claim();
      try {
        const copy = this.table.create(caller, newSequenceId);
        // Claimed while it waits for room, so no other call finds the empty copy; removed again if the copy fails.
        await this.table.withSequence(copy, true, () => this.admission.copyWhenRoom(copy, source, signal));
        return { newSequenceId, position: copy.position, kvBytes: copy.bytes };
      } finally {
        source.unclaim();
      }
    });
  }

  release(sequenceId: string, { caller = ANONYMOUS, requestId }: CallContext = {}): Promise<{ found: boolean; freedBytes: number }> {
    return this.requests.run(caller.tenant, requestId, requestFingerprint("Release", sequenceId, {}), async () => {
      const sequence = this.table.get(caller, sequenceId);
      if (sequence?.busy) throw new EngineError("ABORTED", `sequence '${sequenceId}' is busy with another call; release it when that call ends`);
      // The stored copy first: if the store cannot delete it, the resident one stays as it was.
      const stored = (await this.tiers?.forget(caller, sequenceId)) ?? false;
      if (!sequence) return { found: stored, freedBytes: 0 };
      return { found: true, freedBytes: this.table.remove(sequence) };
    });
  }

  /**
   * Writes the sequence's snapshot to the KV store and frees its memory (docs/kv-store.md). A
   * sequence already stored only is left as it is. Without a store: FAILED_PRECONDITION.
   */
  offload(sequenceId: string, { caller = ANONYMOUS, requestId }: CallContext = {}): Promise<OffloadOutcome> {
    return this.requests.run(caller.tenant, requestId, requestFingerprint("Offload", sequenceId, {}), async () => {
      const tiers = this.tiers;
      if (!tiers) throw new EngineError("FAILED_PRECONDITION", "this server has no KV store: start it with --kv-store to offload sequences");
      await this.settled(sequenceId, { caller });
      const sequence = this.table.get(caller, sequenceId);
      const storedBytes = tiers.storedBytes(caller.tenant, sequenceId);
      if (!sequence && storedBytes > 0) return { storedBytes, chunks: 0, freedBytes: 0 };
      return tiers.offload(this.table.lookup(caller, sequenceId), "explicit");
    });
  }

  /**
   * A copy of the sequence's whole state (docs/kv-store.md, "What a snapshot holds"), taken between
   * calls; the sequence is not changed. A device-resident cache's keys and values are read back first.
   */
  async snapshot(sequenceId: string, { caller = ANONYMOUS }: CallContext = {}): Promise<KvSnapshot> {
    const sequence = this.table.lookup(caller, sequenceId);
    if (sequence.busy) throw new EngineError("ABORTED", `sequence '${sequenceId}' is busy with another call; take its snapshot when that call ends`);
    return this.table.withSequence(sequence, false, async () => {
      await sequence.loadEntries();
      return captureSnapshot(sequence);
    });
  }

  /** Makes `snapshot` the new sequence `sequenceId`: it continues exactly as the one it was taken of. */
  async restore(sequenceId: string, snapshot: KvSnapshot, { caller = ANONYMOUS }: CallContext = {}): Promise<void> {
    if (this.table.get(caller, sequenceId)) throw new EngineError("ALREADY_EXISTS", `sequence '${sequenceId}' already exists; release it or choose another id`);
    const sequence = this.table.create(caller, sequenceId);
    await this.table.withSequence(sequence, true, () =>
      this.admission.restore(sequence, restoredBytes(snapshot), () => restoreSequence(sequence, snapshot, this.options.recentQueryRows, this.telemetry)),
    );
  }

  /** Restores the sequence if it is stored (Stats names it); every other call on a sequence does this itself. */
  async bringIn(sequenceId: string, { caller = ANONYMOUS }: CallContext = {}): Promise<void> {
    await this.tiers?.bringIn(caller, sequenceId, false);
  }

  /** SIGTERM: offloads every resident sequence not busy, until `deadline` (Date.now() time); nothing without a store. */
  async offloadAll(deadline: number): Promise<{ offloaded: number; failed: number }> {
    return (await this.tiers?.offloadAll(deadline)) ?? { offloaded: 0, failed: 0 };
  }

  /**
   * Rolls a sequence back to its first `length` tokens (see truncate.ts),
   * once a Decode the client cancelled on it has wound down.
   */
  truncate(sequenceId: string, length: number, { caller = ANONYMOUS, requestId }: CallContext = {}): Promise<TruncateOutcome> {
    return this.requests.run(caller.tenant, requestId, requestFingerprint("Truncate", sequenceId, { length }), async () => {
      await this.tiers?.bringIn(caller, sequenceId, false);
      await this.settled(sequenceId, { caller });
      const sequence = this.table.lookup(caller, sequenceId);
      return this.table.withSequence(sequence, false, async () => truncate(sequence, length));
    });
  }

  /** Resolves once the Decode calls the client cancelled on the caller's sequences (or the one named) have wound down. */
  settled(sequenceId: string | undefined, { caller = ANONYMOUS }: CallContext = {}): Promise<void> {
    const chosen = sequenceId ? [this.table.get(caller, sequenceId)] : this.table.ofTenant(caller.tenant);
    return this.streams.settled(chosen.filter((s) => s !== undefined));
  }

  stats(query: StatsQuery = {}, { caller = ANONYMOUS }: CallContext = {}): StatsSnapshot {
    const { sequenceId } = query;
    const own = this.table.ofTenant(caller.tenant);
    const chosen = sequenceId ? [this.table.lookup(caller, sequenceId)] : own;
    const now = Date.now();
    const quota = this.memory.quota;
    return {
      kvBytesUsed: this.pool.used,
      kvBytesBudget: this.pool.budgetBytes,
      kvBytesPooled: this.pool.pooled,
      batchArenaBytes: this.streams.arenaBytes,
      kvBytesDevice: this.pool.deviceBytes,
      kvLocation: this.model.runner.deviceCache?.location ?? "host",
      sequenceCount: own.length,
      tenantKvBytes: this.memory.tenantBytes(caller.tenant),
      tenantSequenceCount: own.length,
      tenantKvBytesQuota: quota?.kvBytes ?? 0,
      tenantSequenceQuota: quota?.sequences ?? 0,
      sequences: [
        ...chosen.map((s) => ({ ...snapshotOf(s, now, query), ...this.storage(s) })),
        ...(sequenceId ? [] : (this.tiers?.storedOnly(caller.tenant, now) ?? []).map((entry) => storedOnlySnapshot(entry.sequenceId, entry.bytes))),
      ],
    };
  }

  /** The cache's fixed shape, as gateways read it (docs/gateway.md). */
  get cacheConfig(): CacheConfig {
    const { config, runner } = this.model;
    return cacheConfigOf({ kvHeads: config.kvHeads, headSize: config.headSize, kvDtype: runner.kvDtype }, config.layers, this.pool.budgetBytes);
  }

  /** Calls waiting in the admission queue for KV memory (--max-queue). */
  get requestsWaiting(): number {
    return this.admission.queue.length;
  }

  private storage(sequence: Sequence): { residency: Residency; storedBytes: number } {
    if (!this.tiers) return { residency: "resident", storedBytes: 0 };
    return { residency: this.tiers.residency(sequence), storedBytes: this.tiers.storedBytes(sequence.tenant, sequence.id) };
  }

  /** Sequences held by all tenants together. */
  get sequenceCount(): number {
    return this.table.size;
  }

  /** Sequences of every tenant that this replica knows to be in the KV store only. */
  get storedSequenceCount(): number {
    return this.tiers?.storedOnlyCount() ?? 0;
  }

  /** Drops sequences idle for longer than the TTL. */
  expireIdle(now = Date.now()): void {
    this.table.expireIdle(now);
  }

  close(): void {
    this.tiers?.close();
    this.streams.close();
    this.table.close();
    this.model.tokenizer.close?.();
  }
}
