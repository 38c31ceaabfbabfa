import { expect } from "vitest";
import { STORY_EVICTION_TOKENS, STORY_TOKENS, type GreedyStory } from "../../support/greedy-story.js";

/** stories260K: 5 layers of 4 KV heads. */
const KV_HEADS_IN_ALL_LAYERS = 5 * 4;

/** What the story must hold whichever client told it, beyond equalling the source tree's. */
export function expectStoryOfEveryVerb(story: GreedyStory): void {
  expect(story.model).toBe("stories260K");
  expect(story.tokenIds).toHaveLength(STORY_TOKENS);
  expect(story.finishReason).toBe("FINISH_REASON_LENGTH");
  expect(story.truncatedPosition).toBe(story.promptTokens);
  expect(story.droppedTokens).toBe(story.forkPosition - story.promptTokens);
  expect(story.statsPosition).toBe(story.forkPosition);
  expect(story.entriesAfterEviction).toBe(STORY_EVICTION_TOKENS * KV_HEADS_IN_ALL_LAYERS);
  expect(story.released).toBe(true);
}
