import type { ChatMessage, Tokenizer } from "../model/tokenizers/tokenizer.js";
import { EngineError } from "./engine-error.js";

/** What a Prefill may send as its prompt: exactly one of them. */
export interface PromptContent {
  tokenIds?: readonly number[];
  text?: string;
  /** A chat, rendered with the model's chat template (fed as rendered, BOS included if the template writes it). */
  messages?: readonly ChatMessage[];
}

/** Refuses token ids outside the vocabulary, naming the field and index. */
export function checkTokenIds(tokens: readonly number[], vocabSize: number, field: string): void {
  const bad = tokens.findIndex((t) => !Number.isInteger(t) || t < 0 || t >= vocabSize);
  if (bad >= 0) {
    throw new EngineError("INVALID_ARGUMENT", `${field}[${bad}] = ${tokens[bad]} is outside the vocabulary of ${vocabSize} tokens`);
  }
}

/** The prompt's tokens (BOS not added: that depends on whether the sequence is new), within `limit` bytes (--max-prompt-bytes). */
export async function promptTokens(input: PromptContent, tokenizer: Tokenizer, vocabSize: number, limit: number, signal: AbortSignal | undefined): Promise<number[]> {
  const hasTokens = (input.tokenIds?.length ?? 0) > 0;
  const hasText = (input.text?.length ?? 0) > 0;
  const hasMessages = (input.messages?.length ?? 0) > 0;
  if (Number(hasTokens) + Number(hasText) + Number(hasMessages) !== 1) {
    throw new EngineError(
      "INVALID_ARGUMENT",
      hasTokens || hasText || hasMessages ? "give either token_ids or text (or messages), not several" : "the prompt is empty: give token_ids, text or messages",
    );
  }
  if (hasTokens) {
    if (input.tokenIds!.length > limit) {
      throw new EngineError("INVALID_ARGUMENT", `token_ids has ${input.tokenIds!.length} ids; the limit is ${limit} (--max-prompt-bytes, one id per byte)`);
    }
    checkTokenIds(input.tokenIds!, vocabSize, "token_ids");
    return [...input.tokenIds!];
  }
  let text = input.text!;
  if (hasMessages) {
    if (!tokenizer.renderChat) throw new EngineError("INVALID_ARGUMENT", "messages need a chat template, and this model's tokenizer has none");
    const sent = input.messages!.reduce((sum, m) => sum + Buffer.byteLength(m.role) + Buffer.byteLength(m.content), 0);
    checkPromptBytes(sent, limit, "messages");
    try {
      text = tokenizer.renderChat(input.messages!);
    } catch (error) {
      throw new EngineError("INVALID_ARGUMENT", `the chat template refused the messages: ${(error as Error).message}`);
    }
  }
  checkPromptBytes(Buffer.byteLength(text), limit, hasMessages ? "the messages rendered with the chat template" : "text");
  try {
    return await tokenizer.encodeInSlices(text, signal);
  } catch (error) {
    if (signal?.aborted) throw new EngineError("CANCELLED", "the call was cancelled");
    throw error;
  }
}

function checkPromptBytes(bytes: number, limit: number, what: string): void {
  if (bytes > limit) throw new EngineError("INVALID_ARGUMENT", `${what} is ${bytes} bytes of UTF-8; the limit is ${limit} (--max-prompt-bytes)`);
}
