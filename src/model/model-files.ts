/** A llama2.c checkpoint and its tokenizer, as files. */
export interface ModelFiles {
  modelPath: string;
  tokenizerPath: string;
}
