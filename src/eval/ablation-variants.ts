import { GroupReduction, Pooling, type InfoResponse } from "../gen/kvwarden/v1/kvwarden.js";
import { snakeCase } from "../policies/registry.js";
import type { PolicyVariant } from "./policy-variants.js";

/**
 * The ablation set of issue 14, for the recall suite: NACL with each of its
 * parts changed alone (no random draws, SnapKV's pooling, both, the best
 * query head of each group instead of the group sum, and three proxy spans
 * other than the question with its answer prefix), knorm with a sink kept and
 * with other skipped layers (every layer compressed, so the memory matches the
 * budget), and SnapKV and StreamingLLM as the points of comparison. `window`
 * is the SnapKV window and NACL's proxy count.
 */
export function ablationVariants(info: InfoResponse, window: number): PolicyVariant[] {
  requireParameters(info, "nacl", ["random_share", "pooling", "kernel_size", "group_reduction", "proxy_span"]);
  requireParameters(info, "knorm", ["sink_tokens", "skip_layers", "keep_highest_norm"]);
  const nacl = { proxyTokens: window };
  const pooled = { pooling: Pooling.POOLING_MAX, kernelSize: 7 };
  return [
    { label: "snapkv", policy: "snapkv", params: { window } },
    { label: "streaming_llm", policy: "streaming_llm", params: {} },
    { label: "nacl", policy: "nacl", params: nacl },
    { label: "nacl-no-random", policy: "nacl", params: { ...nacl, randomShare: 0 } },
    { label: "nacl-pooled", policy: "nacl", params: { ...nacl, ...pooled } },
    { label: "nacl-pooled-no-random", policy: "nacl", params: { ...nacl, ...pooled, randomShare: 0 } },
    { label: "nacl-max-head", policy: "nacl", params: { ...nacl, groupReduction: GroupReduction.GROUP_REDUCTION_MAX } },
    { label: "nacl-proxy-question", policy: "nacl", params: nacl, proxy: "question-sentence", queryAwareOnly: true },
    { label: "nacl-proxy-last-token", policy: "nacl", params: nacl, proxy: "last-token", queryAwareOnly: true },
    { label: "nacl-proxy-suffix", policy: "nacl", params: nacl, proxy: "suffix", queryAwareOnly: true },
    { label: "knorm", policy: "knorm", params: {} },
    { label: "knorm-sink", policy: "knorm", params: { sinkTokens: 1 } },
    { label: "knorm-skip-0", policy: "knorm", params: { skipLayers: [0] } },
    { label: "knorm-all-layers", policy: "knorm", params: { skipNoLayers: true } },
    { label: "knorm-all-layers-sink", policy: "knorm", params: { skipNoLayers: true, sinkTokens: 1 } },
    { label: "knorm-highest", policy: "knorm", params: { keepHighestNorm: true } },
    { label: "knorm-highest-all-layers", policy: "knorm", params: { keepHighestNorm: true, skipNoLayers: true } },
  ];
}

function requireParameters(info: InfoResponse, policy: string, names: readonly string[]): void {
  const offered = info.policies.find((p) => p.name === policy);
  const missing = names.filter((name) => !offered?.parameters.some((p) => p.name === name));
  if (missing.length > 0) throw new Error(`the ablations need ${policy} with ${missing.map(snakeCase).join(", ")}; this sidecar's ${policy} lacks them`);
}
