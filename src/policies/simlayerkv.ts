import { lazyLayers } from "./allocators/lazy-layer.js";
import { eachLayer, paramOf, type Policy } from "./policy.js";
import { sinkEntries } from "./protected-parts.js";
import { positionScores } from "./scorers/position.js";
import { lastQueryRows } from "./scorers/query-rows.js";
import { keepAll } from "./selectors/keep-all.js";
import { selectTopK } from "./selectors/top-k.js";

/**
 * SimLayerKV: a layer whose recent queries look almost only at the sinks and
 * the most recent entries is lazy and is trimmed StreamingLLM-style to the
 * first S + last C - S entries; every other layer keeps everything.
 */
export const simlayerkvPolicy: Policy = {
  name: "simlayerkv",
  defaultDecodeSlack: 64,
  description:
    "Trims lazy layers (whose recent queries put more than delta of their attention on the sinks and the most recent entries) to sinks + recent; other layers keep everything (SimLayerKV).",
  parameters: [
    { name: "delta", description: "a layer is lazy when its sink + recent attention exceeds delta", defaultValue: 0.9 },
    { name: "sinkTokens", description: "entries at the start kept in lazy layers (attention sinks)", defaultValue: 4 },
    { name: "window", description: "the last W tokens' queries judge laziness", defaultValue: 32 },
  ],
  queryRowsNeeded(params) {
    return paramOf(this, params, "window");
  },
  readsKeys: true,
  protectedParts: [sinkEntries],
  *plan(cache, budget, spec) {
    const sinks = paramOf(this, spec.params, "sinkTokens");
    const rows = lastQueryRows(cache.recentQueries, paramOf(this, spec.params, "window"), "eviction.window");
    const lazy = yield* lazyLayers(cache, rows, sinks, budget, paramOf(this, spec.params, "delta"));
    return {
      keep: yield* eachLayer(cache.layers, (layer, l) =>
        Array.from(layer.lengths, (entries, h) =>
          lazy.includes(l)
            ? selectTopK(positionScores(layer, h), budget(entries), (slot) => slot < sinks)
            : keepAll(entries),
        ),
      ),
      lazyLayers: lazy,
    };
  },
};
