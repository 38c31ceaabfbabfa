import type { CacheConfig } from "../kv/cache-config.js";
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";
import type { EngineListener, EvictionRecord, StepKind } from "./engine-telemetry.js";
import type { StoreOperation, StoreTransfer } from "./store-telemetry.js";
import { StoreMetrics } from "./store-metrics.js";

/** The cache figures read at scrape time. */
export interface CacheState {
  kvBytesUsed: number;
  kvBytesBudget: number;
  kvBytesPooled: number;
  sequenceCount: number;
  batchArenaBytes: number;
  /** Sequences in the KV store only (--kv-store). */
  storedSequenceCount?: number;
  /** Calls waiting in the admission queue for KV memory; absent = none. */
  requestsWaiting?: number;
  /** The cache's fixed shape, as the Inference Extension's model server protocol reads it (docs/gateway.md); absent = no info series. */
  cacheConfig?: CacheConfig;
}

const PREFIX = "kvwarden:";
const STEP_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];
const SHARE_BUCKETS = [0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1];

/**
 * Prometheus metrics, named like vLLM's (`kvwarden:kv_cache_usage_perc`,
 * `kvwarden:num_requests_running`, ...) so the Gateway API Inference
 * Extension's endpoint picker reads them through its metric flags
 * (docs/gateway.md). Sequence ids never become labels (cardinality).
 */
export class KvwardenMetrics implements EngineListener {
  readonly registry = new Registry();
  /** Calls that start work (Prefill, Decode, Fork, completions) in progress, waiting or not. */
  private workCalls = 0;
  private readonly requests: Counter<"method" | "code">;
  private readonly exhausted: Counter<"method">;
  private readonly promptTokens: Counter;
  private readonly generationTokens: Counter;
  private readonly evictions: Counter<"policy">;
  private readonly evictedEntries: Counter<"policy">;
  private readonly evictedBytes: Counter<"policy">;
  private readonly evictedEntryBytes: Counter<"policy">;
  private readonly evictedShare: Histogram<"policy">;
  private readonly crossTenantCompressions: Counter<"tenant">;
  private readonly steps: Record<StepKind, Histogram>;
  private readonly batchSizes: Histogram;
  private readonly store: StoreMetrics;

  /** `state` reads the cache; undefined while the model loads. */
  constructor(state: () => CacheState | undefined) {
    const registers = [this.registry];
    const cacheGauge = (name: string, help: string, read: (s: CacheState) => number) =>
      new Gauge({
        name: PREFIX + name,
        help,
        registers,
        collect() {
          const current = state();
          if (current) this.set(read(current));
        },
      });
    cacheGauge("kv_cache_usage_perc", "KV cache bytes in use over the budget (1 = full)", (s) => (s.kvBytesBudget > 0 ? s.kvBytesUsed / s.kvBytesBudget : 0));
    cacheGauge("kv_cache_used_bytes", "KV cache bytes held by sequences", (s) => s.kvBytesUsed);
    cacheGauge("kv_cache_budget_bytes", "KV cache budget (--kv-budget)", (s) => s.kvBytesBudget);
    cacheGauge("kv_cache_pooled_bytes", "Freed slab bytes kept for reuse (not counted as used)", (s) => s.kvBytesPooled);
    cacheGauge("num_sequences", "Sequences held", (s) => s.sequenceCount);
    cacheGauge("kv_stored_sequences", "Sequences in the KV store only, as this replica knows them (--kv-store)", (s) => s.storedSequenceCount ?? 0);
    cacheGauge("batch_arena_bytes", "The decode batch's working copy of its caches (outside the KV budget)", (s) => s.batchArenaBytes);
    const workCalls = () => this.workCalls;
    cacheGauge("num_requests_waiting", "Calls waiting in the admission queue for KV memory (--max-queue)", (s) => s.requestsWaiting ?? 0);
    new Gauge({
      name: PREFIX + "num_requests_running",
      help: "Calls that start work (Prefill, Decode, Fork, HTTP completions) in progress, not counting those waiting for KV memory",
      registers,
      collect() {
        this.set(workCalls() - (state()?.requestsWaiting ?? 0));
      },
    });
    const cacheInfo = new Gauge({
      name: PREFIX + "cache_config_info",
      help: "The KV cache's configuration in labels (value 1): block_size = tokens per block, num_gpu_blocks = full-width blocks --kv-budget holds",
      labelNames: ["block_size", "num_gpu_blocks", "kv_budget_bytes", "kv_dtype"],
      registers,
      collect() {
        const config = state()?.cacheConfig;
        cacheInfo.reset();
        if (config) {
          const { blockSize, numBlocks, kvBudgetBytes, kvDtype } = config;
          this.set({ block_size: blockSize, num_gpu_blocks: numBlocks, kv_budget_bytes: kvBudgetBytes, kv_dtype: kvDtype }, 1);
        }
      },
    });
    this.requests = new Counter({ name: PREFIX + "requests_total", help: "KvCache calls finished, by method and gRPC status", labelNames: ["method", "code"], registers });
    this.exhausted = new Counter({
      name: PREFIX + "resource_exhausted_total",
      help: "Calls refused with RESOURCE_EXHAUSTED (KV budget or per-sequence cap)",
      labelNames: ["method"],
      registers,
    });
    this.promptTokens = new Counter({ name: PREFIX + "prompt_tokens_total", help: "Tokens fed by Prefill", registers });
    this.generationTokens = new Counter({ name: PREFIX + "generation_tokens_total", help: "Tokens generated by Decode", registers });
    this.evictions = new Counter({ name: PREFIX + "evictions_total", help: "Evictions that removed entries, by policy", labelNames: ["policy"], registers });
    this.evictedEntries = new Counter({ name: PREFIX + "evicted_entries_total", help: "KV entries evicted, by policy", labelNames: ["policy"], registers });
    this.evictedBytes = new Counter({ name: PREFIX + "evicted_bytes_total", help: "KV memory returned by evictions (slab room and recent-query rings), by policy", labelNames: ["policy"], registers });
    this.evictedEntryBytes = new Counter({
      name: PREFIX + "evicted_entry_bytes_total",
      help: "Bytes of the KV entries evictions removed (key, value, position, attention mass; without the room around them), by policy",
      labelNames: ["policy"],
      registers,
    });
    this.evictedShare = new Histogram({
      name: PREFIX + "evicted_attention_share",
      help: "Share of the recent queries' attention held by the entries each eviction dropped",
      labelNames: ["policy"],
      buckets: SHARE_BUCKETS,
      registers,
    });
    this.crossTenantCompressions = new Counter({
      name: PREFIX + "cross_tenant_compressions_total",
      help: "Idle sequences compressed to relieve memory pressure from another tenant's call, by the tenant that owns them",
      labelNames: ["tenant"],
      registers,
    });
    this.steps = {
      prefill: new Histogram({ name: PREFIX + "prefill_chunk_seconds", help: "Time of one prefill chunk's model step", buckets: STEP_BUCKETS, registers }),
      decode: new Histogram({ name: PREFIX + "decode_step_seconds", help: "Time of one decode step's model run", buckets: STEP_BUCKETS, registers }),
    };
    this.batchSizes = new Histogram({
      name: PREFIX + "decode_batch_size",
      help: "Sequences per decode step's graph run (continuous batching)",
      buckets: [1, 2, 4, 8, 16, 32, 64],
      registers,
    });
    collectDefaultMetrics({ register: this.registry });
    this.store = new StoreMetrics(this.registry);
  }

  /** `work`: the call starts work (counted as running unless it waits for memory). */
  callStarted(work: boolean): void {
    if (work) this.workCalls++;
  }

  callEnded(method: string, code: string, work: boolean): void {
    if (work) this.workCalls--;
    this.requests.inc({ method, code });
    if (code === "RESOURCE_EXHAUSTED") this.exhausted.inc({ method });
  }

  tokens(input: number, output: number): void {
    if (input > 0) this.promptTokens.inc(input);
    if (output > 0) this.generationTokens.inc(output);
  }

  step(kind: StepKind, seconds: number, sequences: number): void {
    this.steps[kind].observe(seconds);
    if (kind === "decode") this.batchSizes.observe(sequences);
  }

  eviction(outcome: EvictionRecord): void {
    if (!outcome.applied) return;
    const labels = { policy: outcome.policy };
    this.evictions.inc(labels);
    this.evictedEntries.inc(labels, outcome.entriesBefore - outcome.entriesAfter);
    this.evictedBytes.inc(labels, outcome.bytesBefore - outcome.bytesAfter);
    this.evictedEntryBytes.inc(labels, outcome.entryBytesBefore - outcome.entryBytesAfter);
    if (outcome.evictedAttentionShare !== undefined) this.evictedShare.observe(labels, outcome.evictedAttentionShare);
  }

  crossTenantCompression(owner: string): void {
    this.crossTenantCompressions.inc({ tenant: owner });
  }

  transfer(transfer: StoreTransfer): void {
    this.store.transfer(transfer);
  }

  storeError(operation: StoreOperation, code: string): void {
    this.store.storeError(operation, code);
  }
}
