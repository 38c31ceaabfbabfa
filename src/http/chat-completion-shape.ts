import type { TokenScore } from "./generation.js";
import type { ResponseShape } from "./response-shape.js";

/** POST /v1/chat/completions replies: an assistant message per choice, streamed as deltas. */
export const CHAT_COMPLETION_SHAPE: ResponseShape = {
  method: "CreateChatCompletion",
  idPrefix: "chatcmpl",
  object: "chat.completion",
  chunkObject: "chat.completion.chunk",
  choice: (index, text, logprobs, finishReason) => ({
    index,
    message: { role: "assistant", content: text, refusal: null },
    logprobs: logprobs ? chatLogprobs(logprobs) : null,
    finish_reason: finishReason,
  }),
  chunkChoices(piece, first, withLogprobs) {
    const choices: unknown[] = [];
    if (first) choices.push({ index: piece.index, delta: { role: "assistant", content: "" }, logprobs: null, finish_reason: null });
    if (piece.text !== "" || piece.logprobs.length > 0) {
      choices.push({ index: piece.index, delta: { content: piece.text }, logprobs: withLogprobs ? chatLogprobs(piece.logprobs) : null, finish_reason: null });
    }
    if (piece.finishReason) choices.push({ index: piece.index, delta: {}, logprobs: null, finish_reason: piece.finishReason });
    return choices;
  },
};

function chatLogprobs(scores: readonly TokenScore[]): unknown {
  return {
    content: scores.map((score) => ({
      token: score.token,
      logprob: score.logprob,
      bytes: score.bytes,
      top_logprobs: score.top.map((alternative) => ({ token: alternative.token, logprob: alternative.logprob, bytes: alternative.bytes })),
    })),
    refusal: null,
  };
}
