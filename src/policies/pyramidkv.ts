import { pyramidBudget } from "./allocators/pyramid.js";
import { eachLayerInSteps, paramOf, type Policy } from "./policy.js";
import { lastQueryRows } from "./scorers/query-rows.js";
import { windowAttentionScores } from "./scorers/window-attention.js";
import { selectTopKBeforeWindow } from "./selectors/top-k.js";
import { windowScoringNeeds, windowScoringOf, windowScoringParameters } from "./snapkv.js";

/** PyramidKV: SnapKV with budgets falling linearly from the bottom layer to the top. */
export const pyramidkvPolicy: Policy = {
  name: "pyramidkv",
  defaultDecodeSlack: 64,
  description: "SnapKV with per-layer budgets that shrink from the bottom layer to the top, averaging the requested budget (PyramidKV).",
  parameters: [
    ...windowScoringParameters,
    { name: "beta", description: "the top layer selects (C - W) / beta entries beyond its window", defaultValue: 20 },
  ],
  ...windowScoringNeeds,
  *plan(cache, budget, spec) {
    const scoring = windowScoringOf(this, spec.params);
    const beta = paramOf(this, spec.params, "beta");
    const rows = lastQueryRows(cache.recentQueries, scoring.window, "eviction.window");
    return {
      keep: yield* eachLayerInSteps(cache.layers, function* (layer, l) {
        return (yield* windowAttentionScores(cache, l, rows, scoring)).map((scores, h) => {
          const entries = layer.lengths[h];
          return selectTopKBeforeWindow(scores, entries, pyramidBudget(entries, budget(entries), scoring.window, beta, l, cache.layers.length));
        });
      }),
    };
  },
};
