import type { RandomModel } from "../test/model/hf-fixtures.js";

/**
 * Llama 2's shape scaled to ~200M parameters at 12 layers (200.8M): untied head, grouped-query
 * attention with 16 query and 4 KV heads of 64. Benchmarks in quick mode take fewer layers.
 */
export function llama200M(layers = 12): RandomModel {
  return {
    architecture: "LlamaForCausalLM",
    hidden: 1024,
    heads: 16,
    kvHeads: 4,
    layers,
    vocab: 32000,
    intermediate: 2816,
    tied: false,
    ropeTheta: 10000,
    ropeScaling: null,
  };
}
