import { adaptiveCounts } from "./allocators/adaptive.js";
import { pyramidBudget } from "./allocators/pyramid.js";
import { eachLayerInSteps, InvalidEvictionError, paramOf, type Policy, type PolicyParams } from "./policy.js";
import { lastQueryRows } from "./scorers/query-rows.js";
import { windowAttentionScores } from "./scorers/window-attention.js";
import { keepAll } from "./selectors/keep-all.js";
import { selectTopKBeforeWindow } from "./selectors/top-k.js";
import { windowScoringNeeds, windowScoringOf, windowScoringParameters } from "./snapkv.js";

const BASE_POLICIES = ["snapkv", "pyramidkv"];

/**
 * AdaKV over SnapKV (Ada-SnapKV) or PyramidKV (Ada-Pyramid): the base policy
 * fixes each layer's budget, then heads compete for it by their pooled window
 * attention, so per-head counts differ (ragged).
 */
export const adakvPolicy: Policy = {
  name: "adakv",
  defaultDecodeSlack: 64,
  description:
    "Shares each layer's budget among its KV heads by how much attention they concentrate, over SnapKV or PyramidKV scores (AdaKV); heads keep different counts.",
  parameters: [
    ...windowScoringParameters,
    { name: "alpha", description: "share of each head's uniform budget it is guaranteed (AdaKV's floor)", defaultValue: 0.2 },
    { name: "basePolicy", description: "snapkv (Ada-SnapKV) or pyramidkv (Ada-Pyramid)", defaultValue: "snapkv", choices: BASE_POLICIES },
    { name: "beta", description: "pyramid slope, with base_policy pyramidkv", defaultValue: 20 },
  ],
  ...windowScoringNeeds,
  *plan(cache, budget, spec) {
    const scoring = windowScoringOf(this, spec.params);
    const alpha = paramOf(this, spec.params, "alpha");
    const beta = paramOf(this, spec.params, "beta");
    const pyramid = basePolicyOf(this, spec.params) === "pyramidkv";
    const rows = lastQueryRows(cache.recentQueries, scoring.window, "eviction.window");
    return {
      keep: yield* eachLayerInSteps(cache.layers, function* (layer, l) {
        const scores = yield* windowAttentionScores(cache, l, rows, scoring);
        const heads = scores.map((headScores, h) => {
          const entries = layer.lengths[h];
          const layerBudget = pyramid ? pyramidBudget(entries, budget(entries), scoring.window, beta, l, cache.layers.length) : budget(entries);
          const window = entries - headScores.length;
          const start = layer.offsets[h];
          return {
            entries,
            window,
            over: entries > layerBudget,
            scores: headScores,
            positions: layer.positions.subarray(start, start + headScores.length),
            budget: Math.max(0, layerBudget - window),
          };
        });
        // Heads within their budget keep everything and take no part in the competition.
        const competing = heads.filter((head) => head.over);
        const counts = adaptiveCounts(competing, alpha);
        return heads.map((head) =>
          head.over ? selectTopKBeforeWindow(head.scores, head.entries, counts[competing.indexOf(head)] + head.window) : keepAll(head.entries),
        );
      }),
    };
  },
};

function basePolicyOf(policy: Policy, params: Partial<PolicyParams>): string {
  const base = paramOf(policy, params, "basePolicy");
  if (!BASE_POLICIES.includes(base)) {
    throw new InvalidEvictionError("eviction.base_policy", `adakv wraps ${BASE_POLICIES.join(" or ")}, not '${base}'`);
  }
  return base;
}
