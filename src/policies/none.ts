import type { Policy } from "./policy.js";
import { keepAll } from "./selectors/keep-all.js";

/** Keeps everything. */
export const nonePolicy: Policy = {
  name: "none",
  defaultDecodeSlack: 64,
  description: "Keeps every entry (no eviction).",
  parameters: [],
  queryRowsNeeded: () => 0,
  readsKeys: false,
  protectedParts: [],
  *plan(cache) {
    return { keep: cache.layers.map((layer) => Array.from(layer.lengths, (n) => keepAll(n))) };
  },
};
