import type { ChatMessage } from "../model/tokenizers/tokenizer.js";

/** A request's prompt as the engine's prefill takes it: exactly one of text, chat messages or token ids. */
export type PromptInput = { text: string } | { messages: ChatMessage[] } | { tokenIds: number[] };
