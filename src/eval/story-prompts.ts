import { FinishReason } from "../gen/kvwarden/v1/kvwarden.js";
import type { KvwardenClient } from "../client/index.js";
import { mapConcurrent } from "./concurrency.js";

/** A story the model sampled from BOS, split where eviction happens. */
export interface StoryPrompt {
  seed: number;
  /** BOS and the story's first tokens: what gets prefilled and evicted. */
  context: number[];
  /** The rest of the story: teacher-forced over the (evicted) cache and scored. */
  continuation: number[];
}

/** Story lengths for a model: ~400-480 tokens for a 512-token context, scaled down for shorter ones. */
export interface StoryShape {
  /** Most tokens sampled after BOS. */
  maxTokens: number;
  /** Stories that stop earlier are passed over. */
  minTokens: number;
  /** Tokens, BOS included, that form the context; the rest is the continuation. */
  contextTokens: number;
}

export function storyShape(contextLength: number): StoryShape {
  const maxTokens = Math.min(480, contextLength - 1);
  return { maxTokens, minTokens: Math.floor((maxTokens * 5) / 6), contextTokens: Math.floor((maxTokens * 2) / 3) };
}

/**
 * The first `count` stories, by seed from `firstSeed` up, that the model samples
 * from BOS at temperature 1 and that run to at least `minTokens` before a stop
 * token. Deterministic: the same seeds give the same stories, and a smaller
 * count gives a prefix of a larger one.
 */
export async function sampleStories(
  client: KvwardenClient,
  options: { count: number; firstSeed: number; bosTokenId: number; shape: StoryShape; concurrency: number },
  onStory: () => void,
): Promise<StoryPrompt[]> {
  const stories: StoryPrompt[] = [];
  // Roughly a third of stories260K's samples are long enough; give up well past that rate.
  const lastSeed = options.firstSeed + options.count * 20;
  for (let seed = options.firstSeed; stories.length < options.count; seed += options.concurrency) {
    if (seed >= lastSeed) throw new Error(`only ${stories.length} of ${options.count} sampled stories reached ${options.shape.minTokens} tokens`);
    const batch = Array.from({ length: options.concurrency }, (_, i) => seed + i);
    for (const story of await mapConcurrent(batch, options.concurrency, (s) => sampleStory(client, s, options))) {
      if (story && stories.length < options.count) {
        stories.push(story);
        onStory();
      }
    }
  }
  return stories;
}

async function sampleStory(client: KvwardenClient, seed: number, options: { bosTokenId: number; shape: StoryShape }): Promise<StoryPrompt | undefined> {
  const { shape } = options;
  const sequenceId = `eval-story-${seed}`;
  await client.prefill({ sequenceId, tokenIds: [options.bosTokenId] });
  try {
    const story = await client.generate({ sequenceId, maxNewTokens: shape.maxTokens, sampling: { temperature: 1, seed: BigInt(seed) } });
    // A story that stops ends with its stop token, which is not part of the story.
    const tokens = story.finishReason === FinishReason.FINISH_REASON_STOP ? story.tokenIds.slice(0, -1) : story.tokenIds;
    if (tokens.length < shape.minTokens) return undefined;
    const all = [options.bosTokenId, ...tokens];
    return { seed, context: all.slice(0, shape.contextTokens), continuation: all.slice(shape.contextTokens) };
  } finally {
    await client.release(sequenceId);
  }
}
