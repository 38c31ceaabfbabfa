import { FinishReason, KvwardenClient, type KvwardenClientOptions } from "../../src/client/index.js";

/** The prompt every installed client in test/clients/ prefills. */
export const STORY_PROMPT = "Once upon a time";
/** How many tokens each of them decodes. */
export const STORY_TOKENS = 20;

export interface GreedyStory {
  promptTokens: number;
  tokenIds: number[];
  text: string;
  finishReason: string;
}

/**
 * The greedy continuation the source tree's client gets from a server: what an installed client
 * (npm, Python, Go) must receive token for token.
 */
export async function greedyStory(address: string, options: KvwardenClientOptions = {}): Promise<GreedyStory> {
  const client = new KvwardenClient(address, options);
  const sequenceId = "source-tree-reference";
  try {
    const prefill = await client.prefill({ sequenceId, text: STORY_PROMPT });
    const story = await client.generate({ sequenceId, maxNewTokens: STORY_TOKENS });
    await client.release(sequenceId);
    return { promptTokens: prefill.promptTokens, tokenIds: story.tokenIds, text: story.text, finishReason: FinishReason[story.finishReason] };
  } finally {
    client.close();
  }
}
