/**
 * Which dimensions RoPE rotates together: llama2.c rotates interleaved pairs
 * (2i, 2i + 1); Hugging Face checkpoints rotate the halves (i, i + d/2).
 * Either way pair i turns by position * inverseFrequency[i].
 */
export type RopeLayout = "interleaved" | "half";

/** Rescaled RoPE frequencies for longer contexts (see graph/rope.ts). */
export type RopeScaling =
  | { type: "linear"; factor: number }
  | { type: "llama3"; factor: number; lowFreqFactor: number; highFreqFactor: number; originalContextLength: number };

/** Shape of a Llama-family model, as every other part of kvwarden sees it. */
export interface ModelConfig {
  name: string;
  /** "llama2c", or the Hugging Face class, e.g. "LlamaForCausalLM". */
  architecture: string;
  dim: number;
  hiddenDim: number;
  layers: number;
  heads: number;
  kvHeads: number;
  headSize: number;
  vocabSize: number;
  contextLength: number;
  ropeTheta: number;
  ropeLayout: RopeLayout;
  ropeScaling: RopeScaling | null;
  normEps: number;
}
