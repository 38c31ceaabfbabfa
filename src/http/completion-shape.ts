import type { TokenScore } from "./generation.js";
import type { ResponseShape } from "./response-shape.js";

/** POST /v1/completions replies: `text` per choice, the legacy logprobs form (tokens, token_logprobs, top_logprobs maps, text_offset). */
export const COMPLETION_SHAPE: ResponseShape = {
  method: "CreateCompletion",
  idPrefix: "cmpl",
  object: "text_completion",
  chunkObject: "text_completion",
  choice: (index, text, logprobs, finishReason) => ({ index, text, logprobs: logprobs ? legacyLogprobs(logprobs, 0) : null, finish_reason: finishReason }),
  chunkChoices: (piece, _first, withLogprobs) =>
    // An empty piece (text held back while a stop string may be starting) is not worth a chunk.
    piece.text === "" && piece.logprobs.length === 0 && !piece.finishReason
      ? []
      : [{ index: piece.index, text: piece.text, logprobs: withLogprobs ? legacyLogprobs(piece.logprobs, piece.textOffset) : null, finish_reason: piece.finishReason ?? null }],
};

/** `text_offset` counts from the start of the choice's text, across chunks. */
function legacyLogprobs(scores: readonly TokenScore[], startOffset: number): unknown {
  let offset = startOffset;
  const textOffset = scores.map((score) => {
    const at = offset;
    offset += score.token.length;
    return at;
  });
  return {
    tokens: scores.map((score) => score.token),
    token_logprobs: scores.map((score) => score.logprob),
    top_logprobs: scores.map((score) => Object.fromEntries(score.top.map((alternative) => [alternative.token, alternative.logprob]))),
    text_offset: textOffset,
  };
}
