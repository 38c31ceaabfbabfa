import type { ChoiceFinish, ChoicePiece, GenerationUsage, TokenScore } from "./generation.js";

/** What tells a completions reply from a chat completions reply; the flow around them is shared (serve-generation.ts). */
export interface ResponseShape {
  /** Names the call in spans, metrics and log lines, as a gRPC method would. */
  method: string;
  idPrefix: string;
  object: string;
  chunkObject: string;
  /** A finished choice of a whole (not streamed) reply. */
  choice(index: number, text: string, logprobs: TokenScore[] | undefined, finishReason: ChoiceFinish): unknown;
  /** The `choices` entries of the chunks one piece becomes (chat announces the role first, and ends a choice in a chunk of its own). */
  chunkChoices(piece: ChoicePiece, first: boolean, withLogprobs: boolean): unknown[];
}

/** OpenAI's usage object, with how many prompt tokens a KV session reused. */
export function usageOf(usage: GenerationUsage): unknown {
  return {
    prompt_tokens: usage.promptTokens,
    completion_tokens: usage.completionTokens,
    total_tokens: usage.promptTokens + usage.completionTokens,
    prompt_tokens_details: { cached_tokens: usage.cachedTokens },
  };
}
