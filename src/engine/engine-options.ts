import type { EngineTelemetry } from "../telemetry/engine-telemetry.js";
import type { SnapshotStore } from "../kv/store/snapshot-store.js";
import type { TenantQuota } from "../kv/tenant-quota.js";
import type { RequestLogOptions } from "./request-log.js";

export interface EngineOptions {
  /** Bytes of KV memory all sequences together may hold. */
  kvBudgetBytes: number;
  /** Most entries any KV head of one sequence may hold. */
  maxSequenceTokens: number;
  /** Prefill runs the model on at most this many tokens at a time. */
  prefillChunkTokens: number;
  /** Allow positions past the model's trained context. */
  allowPastContext: boolean;
  /** Idle sequences are dropped after this long. */
  sequenceTtlMs: number;
  /** Post-RoPE queries of this many recent tokens are kept per sequence for attention scorers. */
  recentQueryRows: number;
  /** Most sequences whose decode steps run together in one graph run (default 32; 1 = no batching). */
  maxBatchSize?: number;
  /** Limits each tenant has beside the global budget; absent = none. */
  tenantQuota?: TenantQuota;
  /** Most UTF-8 bytes of prompt text (or chat messages) one Prefill may send, and most token ids
   * (a token stands for at least one byte); default DEFAULT_MAX_PROMPT_BYTES. */
  maxPromptBytes?: number;
  /** How long and how many request ids each tenant's retries are recognised for (defaults: 600 s, 10,000). */
  requestLog?: Partial<RequestLogOptions>;
  /** Most calls that may wait for KV memory (docs/gateway.md); default 0: a call that does not fit is refused at once. */
  maxQueue?: number;
  /** Whether memory pressure may compress other tenants' idle sequences (default true), or only the requesting tenant's own. */
  crossTenantCompression?: boolean;
  /** Spans and metrics of the engine's steps, evictions and store transfers; default spans only (no metrics). */
  telemetry?: EngineTelemetry;
  /** The KV store tier (--kv-store, docs/kv-store.md); absent: sequences live in memory only. */
  kvStore?: EngineKvStore;
}

export interface EngineKvStore {
  /** Snapshots and leases in the store, under this replica's name. */
  snapshots: SnapshotStore;
  /** How long this replica's hold on a resident sequence lasts unless renewed. */
  leaseMs: number;
  /** Idle sequences are offloaded after this long (--offload-idle-after); absent: never for idleness. */
  offloadIdleAfterMs?: number;
}

export const DEFAULT_MAX_BATCH_SIZE = 32;

/** 1 MiB: tokenized in well under a second, and more than a 128k-token context holds. */
export const DEFAULT_MAX_PROMPT_BYTES = 2 ** 20;
/** Entries one KV head of a sequence may hold unless told otherwise (serve's --max-sequence-tokens). */
export const DEFAULT_MAX_SEQUENCE_TOKENS = 65_536;

/**
 * The engine as `kvwarden serve` runs it without flags (docs/configuration.md): the CLI's defaults
 * are these, and bench, eval and tests spread them and override only what they change.
 */
export const DEFAULT_ENGINE_OPTIONS: Readonly<EngineOptions> = {
  kvBudgetBytes: 512 * 2 ** 20,
  maxSequenceTokens: DEFAULT_MAX_SEQUENCE_TOKENS,
  prefillChunkTokens: 128,
  allowPastContext: false,
  sequenceTtlMs: 600_000,
  recentQueryRows: 64,
};
