import type { Policy } from "./policy.js";

/** Keeps everything. */
export const nonePolicy: Policy = {
  name: "none",
  description: "Keeps every entry (no eviction).",
  parameters: [],
  minimumBudget: () => 1,
  plan: (layers) => layers.map((layer) => Array.from(layer.lengths, (n) => Int32Array.from({ length: n }, (_, i) => i))),
};
