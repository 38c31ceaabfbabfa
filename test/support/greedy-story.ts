import { FinishReason, KvwardenClient, type KvwardenClientOptions } from "../../src/client/index.js";

/** The prompt every installed client in test/clients/ prefills. */
export const STORY_PROMPT = "Once upon a time";
/** How many tokens each of them decodes. */
export const STORY_TOKENS = 20;
/** The streaming_llm budget each of them evicts down to, per KV head. */
export const STORY_EVICTION_TOKENS = 8;

/**
 * What each installed client's story program prints (test/clients/): Info, Prefill, a streamed
 * Decode, Fork, Truncate of the fork back to the prompt, Evict, Stats and Release, every verb once.
 */
export interface GreedyStory {
  model: string;
  promptTokens: number;
  tokenIds: number[];
  text: string;
  finishReason: string;
  forkPosition: number;
  truncatedPosition: number;
  droppedTokens: number;
  entriesAfterEviction: number;
  statsPosition: number;
  released: boolean;
}

/** The story the source tree's client gets from a server: what an installed client must get, token for token. */
export async function greedyStory(address: string, options: KvwardenClientOptions = {}): Promise<GreedyStory> {
  const client = new KvwardenClient(address, options);
  const sequenceId = "source-tree-reference";
  const fork = `${sequenceId}-fork`;
  try {
    const info = await client.info();
    const prefill = await client.prefill({ sequenceId, text: STORY_PROMPT });
    const story = await client.generate({ sequenceId, maxNewTokens: STORY_TOKENS });
    const forked = await client.fork(sequenceId, fork);
    const truncated = await client.truncate(fork, prefill.promptTokens);
    await client.release(fork);
    const evicted = await client.evict({ sequenceId, eviction: { policy: "streaming_llm", maxTokens: STORY_EVICTION_TOKENS } });
    const stats = await client.stats({ sequenceId });
    const released = await client.release(sequenceId);
    return {
      model: info.model!.name,
      promptTokens: prefill.promptTokens,
      tokenIds: story.tokenIds,
      text: story.text,
      finishReason: FinishReason[story.finishReason],
      forkPosition: forked.position,
      truncatedPosition: truncated.position,
      droppedTokens: truncated.droppedTokens,
      entriesAfterEviction: Number(evicted.eviction!.entriesAfter),
      statsPosition: stats.sequences[0].position,
      released: released.found,
    };
  } finally {
    client.close();
  }
}
