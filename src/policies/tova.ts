import { eachLayerInSteps, type Policy } from "./policy.js";
import { lastRowAttentionByPosition } from "./scorers/last-row-attention.js";
import { lastQueryRows } from "./scorers/query-rows.js";
import { keepAll } from "./selectors/keep-all.js";
import { rankByScore, selectTopK } from "./selectors/top-k.js";

/**
 * TOVA: one set of positions per layer, kept by every head: the C positions
 * the last token attends to most, averaged over all query heads. A head that
 * holds none of them (possible only after an earlier per-head eviction) keeps
 * its own best entry rather than being emptied.
 */
export const tovaPolicy: Policy = {
  name: "tova",
  defaultDecodeSlack: 0,
  description: "Keeps, per layer, the entries the last token attends to most, averaged over all heads; every head keeps the same positions (TOVA).",
  parameters: [],
  queryRowsNeeded: () => 1,
  readsKeys: true,
  protectedParts: [],
  *plan(cache, budget) {
    const [lastRow] = lastQueryRows(cache.recentQueries, 1, "eviction");
    return {
      keep: yield* eachLayerInSteps(cache.layers, function* (layer, l) {
        const { positions, scores } = yield* lastRowAttentionByPosition(cache, l, lastRow);
        const count = budget(positions.length);
        const keptPositions = new Set(Array.from(selectTopK(scores, count, () => false), (i) => positions[i]));
        const scoreOf = new Map(Array.from(positions, (position, i) => [position, scores[i]]));
        return Array.from(layer.lengths, (entries, h) => {
          const headPositions = layer.positions.subarray(layer.offsets[h], layer.offsets[h] + entries);
          const kept = Array.from(keepAll(entries)).filter((slot) => keptPositions.has(headPositions[slot]));
          if (kept.length > 0 || entries === 0) return Int32Array.from(kept);
          const headScores = Array.from(headPositions, (position) => scoreOf.get(position)!);
          return Int32Array.of(rankByScore(headScores, Array.from(keepAll(entries)))[0]);
        });
      }),
    };
  },
};
