import { uniformCounts } from "./allocators/uniform.js";
import { sinkEntries } from "./protected-parts.js";
import { sinkTokensParameter } from "./sink-tokens.js";
import { eachLayer, paramOf, type Policy } from "./policy.js";
import { positionScores } from "./scorers/position.js";
import { selectTopK } from "./selectors/top-k.js";

/** StreamingLLM: attention sinks (the first S entries) plus the most recent C - S. */
export const streamingLlmPolicy: Policy = {
  name: "streaming_llm",
  defaultDecodeSlack: 64,
  description: "Keeps the first sink_tokens entries (attention sinks) and the most recent ones (StreamingLLM).",
  parameters: [sinkTokensParameter],
  queryRowsNeeded: () => 0,
  readsKeys: false,
  protectedParts: [sinkEntries],
  *plan(cache, budget, spec) {
    const sinks = paramOf(this, spec.params, "sinkTokens");
    const counts = uniformCounts(cache.layers, budget);
    return {
      keep: yield* eachLayer(cache.layers, (layer, l) =>
        Array.from(layer.lengths, (_, h) => selectTopK(positionScores(layer, h), counts[l][h], (slot) => slot < sinks)),
      ),
    };
  },
};
