import { eachLayerInSteps, paramOf, type ParameterDoc, type Policy, type PolicyParams } from "./policy.js";
import { observationWindow } from "./protected-parts.js";
import { lastQueryRows } from "./scorers/query-rows.js";
import { windowAttentionScores, type WindowScoring } from "./scorers/window-attention.js";
import { selectTopKBeforeWindow } from "./selectors/top-k.js";

/** The parameters of SnapKV's window-attention score, shared by pyramidkv and adakv. */
export const windowScoringParameters: readonly ParameterDoc[] = [
  { name: "window", description: "observation window W: the last W tokens score the others and are always kept", defaultValue: 32 },
  { name: "kernelSize", description: "odd pooling kernel over neighbouring scores", defaultValue: 7 },
  { name: "pooling", description: "max, avg or none", defaultValue: "max" },
  { name: "groupReduction", description: "how a KV head combines its query heads' scores: mean, max or sum", defaultValue: "mean" },
];

/** What SnapKV and the policies over its score read and always keep: the last W queries, the keys, the window itself. */
export const windowScoringNeeds = {
  queryRowsNeeded(this: Policy, params: Partial<PolicyParams>): number {
    return paramOf(this, params, "window");
  },
  readsKeys: true,
  protectedParts: [observationWindow],
} satisfies Pick<Policy, "queryRowsNeeded" | "readsKeys" | "protectedParts">;

export function windowScoringOf(policy: Policy, params: Partial<PolicyParams>): WindowScoring & { window: number } {
  return {
    window: paramOf(policy, params, "window"),
    kernelSize: paramOf(policy, params, "kernelSize"),
    pooling: paramOf(policy, params, "pooling"),
    groupReduction: paramOf(policy, params, "groupReduction"),
  };
}

/** SnapKV: per head, the window plus the top C - W earlier entries by pooled window attention. */
export const snapkvPolicy: Policy = {
  name: "snapkv",
  defaultDecodeSlack: 64,
  description: "Keeps the observation window and the entries it attends to most, pooled over neighbours (SnapKV).",
  parameters: windowScoringParameters,
  ...windowScoringNeeds,
  *plan(cache, budget, spec) {
    const scoring = windowScoringOf(this, spec.params);
    const rows = lastQueryRows(cache.recentQueries, scoring.window, "eviction.window");
    return {
      keep: yield* eachLayerInSteps(cache.layers, function* (layer, l) {
        return (yield* windowAttentionScores(cache, l, rows, scoring)).map((scores, h) => selectTopKBeforeWindow(scores, layer.lengths[h], budget(layer.lengths[h])));
      }),
    };
  },
};
