import { eachLayer, type Policy } from "./policy.js";
import { namedRecentEntries } from "./protected-parts.js";
import { accumulatedAttentionScores } from "./scorers/accumulated-attention.js";
import { selectTopK } from "./selectors/top-k.js";

/** H2O: per head, the last R entries plus the C - R heavy hitters by attention accumulated so far. */
export const h2oPolicy: Policy = {
  name: "h2o",
  defaultDecodeSlack: 0,
  description: "Keeps the most recent entries and the heavy hitters: those that have received the most attention since they were cached (H2O).",
  // The default depends on the budget, so recent_tokens is read from the request, never through paramOf.
  parameters: [{ name: "recentTokens", description: "most recent entries always kept", defaultValue: "floor(C/2)" }],
  queryRowsNeeded: () => 0,
  readsKeys: false,
  protectedParts: [namedRecentEntries],
  *plan(cache, budget, spec) {
    return {
      keep: yield* eachLayer(cache.layers, (layer) =>
        Array.from(layer.lengths, (entries, h) => {
          const count = budget(entries);
          const recent = spec.params.recentTokens ?? Math.floor(count / 2);
          return selectTopK(accumulatedAttentionScores(layer, h), count, (slot) => slot >= entries - recent);
        }),
      ),
    };
  },
};
