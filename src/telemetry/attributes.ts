/**
 * Span attribute names: the GenAI semantic conventions where they fit, and
 * kvwarden's own `kvwarden.*` names for what the conventions do not cover.
 */
export const GEN_AI = {
  operationName: "gen_ai.operation.name",
  providerName: "gen_ai.provider.name",
  requestModel: "gen_ai.request.model",
  requestMaxTokens: "gen_ai.request.max_tokens",
  requestTemperature: "gen_ai.request.temperature",
  requestTopK: "gen_ai.request.top_k",
  requestTopP: "gen_ai.request.top_p",
  requestSeed: "gen_ai.request.seed",
  requestStream: "gen_ai.request.stream",
  responseFinishReasons: "gen_ai.response.finish_reasons",
  responseTimeToFirstChunk: "gen_ai.response.time_to_first_chunk",
  usageInputTokens: "gen_ai.usage.input_tokens",
  usageOutputTokens: "gen_ai.usage.output_tokens",
} as const;

/** The GenAI operation kvwarden performs: completing a token sequence. */
export const GEN_AI_OPERATION = "text_completion";

export const KVWARDEN = {
  sequenceId: "kvwarden.sequence.id",
  position: "kvwarden.position",
  kvBytes: "kvwarden.kv.bytes",
  chunkTokens: "kvwarden.chunk.tokens",
  chunkFirstPosition: "kvwarden.chunk.first_position",
  policy: "kvwarden.eviction.policy",
  applied: "kvwarden.eviction.applied",
  budgetTokens: "kvwarden.eviction.budget_tokens",
  entriesBefore: "kvwarden.eviction.entries_before",
  entriesAfter: "kvwarden.eviction.entries_after",
  bytesBefore: "kvwarden.eviction.bytes_before",
  bytesAfter: "kvwarden.eviction.bytes_after",
  entryBytesBefore: "kvwarden.eviction.entry_bytes_before",
  entryBytesAfter: "kvwarden.eviction.entry_bytes_after",
  lazyLayers: "kvwarden.eviction.lazy_layers",
  evictedAttentionShare: "kvwarden.eviction.evicted_attention_share",
  detail: "kvwarden.eviction.detail",
  /** The tenant whose call is running. */
  tenant: "kvwarden.tenant",
  /** The tenant whose sequence memory pressure compressed. */
  compressedTenant: "kvwarden.eviction.compressed_tenant",
  /** Why a sequence moved to or from the KV store: idle, pressure, shutdown, explicit (docs/kv-store.md). */
  storeReason: "kvwarden.store.reason",
  storeBytes: "kvwarden.store.bytes",
  storeChunks: "kvwarden.store.chunks",
  storeSeconds: "kvwarden.store.duration_s",
} as const;
