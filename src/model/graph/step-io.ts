/**
 * Names of the step graph's inputs and outputs: the contract between the graph
 * and the runner that feeds it.
 *
 * B sequences run side by side (B = 1 for a prefill chunk; a batch of decode steps has S = 1).
 *
 * Inputs: `input_ids`, `position_ids` [B, S] (original positions, never derived
 * from cache length); `causal_mask` [S, S] (additive, among the new tokens);
 * `query_rows` [1] (how many trailing rows of post-RoPE queries to return);
 * `logit_rows` [1] (how many trailing rows get logits: 1 to generate, all to score a prompt);
 * per layer `past_key_l` / `past_value_l` [B, Hkv, 1, C_l, d] (the store's slab,
 * fed without copying, in the store's KV dtype) and `past_mask_l` [B, Hkv, 1, 1, C_l]
 * (additive; hides padding, so sequences, heads and layers may hold different lengths).
 *
 * Outputs: `logits` [B, logit_rows, V]; `new_keys` / `new_values`
 * [L * B, Hkv, S, d] (post-RoPE rows for the store to append, in its KV dtype, layer-major); `queries`
 * [L * B, Hq, R, d] (post-RoPE queries of the last R rows, for attention scorers, in the KV dtype);
 * per layer `attention_colsum_l` [B, Hkv, C_l + S] (attention probabilities
 * summed over the chunk's rows and each KV head's query group, for H2O).
 */
export const STEP_IO = {
  inputIds: "input_ids",
  positionIds: "position_ids",
  causalMask: "causal_mask",
  queryRows: "query_rows",
  logitRows: "logit_rows",
  pastKey: (layer: number) => `past_key_${layer}`,
  pastValue: (layer: number) => `past_value_${layer}`,
  pastMask: (layer: number) => `past_mask_${layer}`,
  logits: "logits",
  /** The residual stream between a step's stages (StepGraphOptions.stage, llama-step-graph.ts). */
  hiddenIn: "hidden_in",
  hiddenOut: "hidden_out",
  newKeys: "new_keys",
  newValues: "new_values",
  queries: "queries",
  attentionColsum: (layer: number) => `attention_colsum_${layer}`,
  /** Device-resident graphs only (see StepGraphOptions.deviceCache, llama-step-graph.ts). */
  appendRows: (layer: number) => `append_rows_${layer}`,
  presentKey: (layer: number) => `present_key_${layer}`,
  presentValue: (layer: number) => `present_value_${layer}`,
} as const;
