import { BLOCK_TOKENS, slabFloats, type KvShape } from "./layer-cache.js";

/**
 * The cache's fixed shape in the terms of the Gateway API Inference Extension's model server
 * protocol (`block_size`, `num_gpu_blocks`; docs/gateway.md). kvwarden has no page table: a KV
 * head's room grows in blocks of BLOCK_TOKENS entries, so a block is that many tokens of every
 * layer and KV head, and the budget's block count is how many such full-width blocks it holds
 * (heads that an eviction left shorter fit more tokens).
 */
export interface CacheConfig {
  /** Tokens per block. */
  blockSize: number;
  /** Full-width blocks that the KV budget holds. */
  numBlocks: number;
  kvBudgetBytes: number;
  kvDtype: string;
}

export function cacheConfigOf(shape: Required<KvShape>, layers: number, kvBudgetBytes: number): CacheConfig {
  const blockBytes = layers * slabFloats(shape, BLOCK_TOKENS) * Float32Array.BYTES_PER_ELEMENT;
  return { blockSize: BLOCK_TOKENS, numBlocks: Math.floor(kvBudgetBytes / blockBytes), kvBudgetBytes, kvDtype: shape.kvDtype };
}
