/** A Prefill's token_ids are packed uint32 varints: at most 5 bytes each. Text and chat get 16 bytes per token, above any tokenizer's average. */
const BYTES_PER_TOKEN = 16;
/** The other fields: ids, the eviction spec, chat roles. */
const HEADROOM_BYTES = 64 * 1024;

/**
 * The largest request message the server reads: what the largest request, a
 * Prefill of as many tokens as one sequence may hold, can take. A larger one
 * could never be fed, so grpc-js refuses it with RESOURCE_EXHAUSTED from its
 * length prefix, before buffering it. 65536 tokens (the serve default) give
 * 1 MiB + 64 KiB.
 */
export function maxRequestBytes(maxSequenceTokens: number): number {
  return maxSequenceTokens * BYTES_PER_TOKEN + HEADROOM_BYTES;
}
