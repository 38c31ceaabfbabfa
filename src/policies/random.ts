import { SeededRandom } from "../numerics/seeded-random.js";
import { sinkEntries } from "./protected-parts.js";
import { sinkTokensParameter } from "./sink-tokens.js";
import { eachLayer, paramOf, type Policy } from "./policy.js";
import { randomScores } from "./scorers/random.js";
import { keepAll } from "./selectors/keep-all.js";
import { selectTopK } from "./selectors/top-k.js";

/**
 * Random: per head, the first S entries plus a uniformly random choice of the
 * rest, C in all; the same seed keeps the same entries.
 */
export const randomPolicy: Policy = {
  name: "random",
  defaultDecodeSlack: 64,
  description: "Keeps the first sink_tokens entries and a seeded uniformly random choice of the others (a baseline).",
  parameters: [sinkTokensParameter],
  queryRowsNeeded: () => 0,
  readsKeys: false,
  protectedParts: [sinkEntries],
  *plan(cache, budget, spec) {
    const sinks = paramOf(this, spec.params, "sinkTokens");
    const random = new SeededRandom(spec.seed ?? 0n);
    return {
      keep: yield* eachLayer(cache.layers, (layer) =>
        Array.from(layer.lengths, (entries) => {
          const count = budget(entries);
          if (entries <= count) return keepAll(entries);
          return selectTopK(randomScores(random, entries), count, (slot) => slot < sinks);
        }),
      ),
    };
  },
};
