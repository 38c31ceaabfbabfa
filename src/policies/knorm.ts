import { uniformCounts } from "./allocators/uniform.js";
import { eachLayer, InvalidEvictionError, paramOf, type Policy } from "./policy.js";
import { sinkEntries } from "./protected-parts.js";
import { keyNormScores } from "./scorers/key-norm.js";
import { keepAll } from "./selectors/keep-all.js";
import { selectTopK } from "./selectors/top-k.js";

/**
 * KNorm: per head, the C entries with the lowest key L2 norm; skipped layers
 * keep everything. The paper protects no sinks; sink_tokens is an ablation.
 */
export const knormPolicy: Policy = {
  name: "knorm",
  defaultDecodeSlack: 64,
  description: "Keeps the entries whose keys have the lowest L2 norm (low-norm keys draw attention); layers in skip_layers keep everything (KNorm).",
  parameters: [
    {
      name: "skipLayers",
      description: "layers left whole (the norm-attention link fails in the first layers); skip_no_layers compresses every layer",
      defaultValue: [0, 1],
    },
    { name: "keepHighestNorm", description: "ablation: keep the highest-norm keys instead (the paper's control; much worse)", defaultValue: false },
    { name: "sinkTokens", description: "ablation: entries at the start always kept (attention sinks); the paper keeps none", defaultValue: 0 },
  ],
  queryRowsNeeded: () => 0,
  readsKeys: true,
  protectedParts: [sinkEntries],
  *plan(cache, budget, spec) {
    const skip = paramOf(this, spec.params, "skipLayers");
    const highest = paramOf(this, spec.params, "keepHighestNorm");
    const sinks = paramOf(this, spec.params, "sinkTokens");
    const scores = (layer: (typeof cache.layers)[number], h: number) => {
      const lowFirst = keyNormScores(layer, h, cache.shape.headSize);
      return highest ? lowFirst.map((score) => -score) : lowFirst;
    };
    // The default [0, 1] may name layers a small model lacks; a request's own list may not.
    const outside = spec.params.skipLayers?.find((l) => l >= cache.layers.length);
    if (outside !== undefined) {
      throw new InvalidEvictionError("eviction.skip_layers", `eviction.skip_layers names layer ${outside}; the model has ${cache.layers.length} layers`);
    }
    const counts = uniformCounts(cache.layers, budget);
    return {
      keep: yield* eachLayer(cache.layers, (layer, l) =>
        Array.from(layer.lengths, (entries, h) =>
          skip.includes(l) ? keepAll(entries) : selectTopK(scores(layer, h), counts[l][h], (slot) => slot < sinks),
        ),
      ),
    };
  },
};
