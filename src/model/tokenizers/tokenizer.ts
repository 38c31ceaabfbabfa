/** One turn of a chat, as chat templates read it. */
export interface ChatMessage {
  role: string;
  content: string;
}

/** What the engine needs from any tokenizer. */
export interface Tokenizer {
  readonly vocabSize: number;
  readonly bosId: number;
  readonly eosId: number;
  /** A text prompt that starts a sequence begins with BOS (false for e.g. Qwen2). */
  readonly addsBos: boolean;
  /** Token ids for `text`, without BOS. */
  encode(text: string): number[];
  /** The same ids as `encode`, computed without holding the event loop for long; stops once `signal` aborts. */
  encodeInSlices(text: string, signal?: AbortSignal): Promise<number[]>;
  /** Stops any thread the tokenizer started (a later call may start it again). */
  close?(): void;
  /** UTF-8 bytes of `token` when it follows `previous` (-1: none); a character may span several tokens. */
  tokenBytes(token: number, previous: number): Uint8Array;
  /** `messages` rendered with the model's chat template, ready to generate the reply (special tokens
   * such as BOS written as text, as the template writes them: `encode` keeps them whole); absent
   * without a template. */
  renderChat?(messages: readonly ChatMessage[]): string;
}

/** Decodes a whole list of token ids to text. */
export function decodeTokens(tokenizer: Tokenizer, ids: readonly number[], previous = -1): string {
  const decoder = new TextDecoder("utf-8");
  let text = "";
  for (const id of ids) {
    text += decoder.decode(tokenizer.tokenBytes(id, previous), { stream: true });
    previous = id;
  }
  return text + decoder.decode();
}
