import type { LayerView } from "../policy.js";

/** Every head of every layer keeps the same budget C(T), never more than it holds. */
export function uniformCounts(layers: readonly LayerView[], budget: (entries: number) => number): number[][] {
  return layers.map((layer) => Array.from(layer.lengths, (entries) => Math.min(entries, budget(entries))));
}
