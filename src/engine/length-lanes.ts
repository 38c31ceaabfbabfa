import { floatsPerEntry, type KvShape } from "../kv/layer-cache.js";

/**
 * The least a graph run costs besides the entries it attends, in cached entries: onnxruntime's
 * per-node dispatch, which is all of a small model's step (a decode step of stories260K takes
 * about 1 ms at a few cached entries and about 0.8 us more per cached entry: docs/bench/latest.md,
 * target 5).
 */
export const DISPATCH_COST_ENTRIES = 1024;

/**
 * What one graph run costs besides the entries it attends, in cached entries: the weights it
 * reads, once for the whole batch, over the bytes one cached entry adds to a step (its key and
 * value in every layer), or the dispatch cost where that is more. About 1,024 for stories260K;
 * about 26,700 for the ~200M benchmark Llama in float32, where a step is bound by its 672 MB
 * of weights and a sequence of 8,192 entries costs less than a run of its own.
 */
export function runCostEntries(stepWeightBytes: number, layers: number, shape: KvShape): number {
  const entryBytes = layers * shape.kvHeads * floatsPerEntry(shape) * Float32Array.BYTES_PER_ELEMENT;
  return Math.max(DISPATCH_COST_ENTRIES, Math.round(stepWeightBytes / entryBytes));
}

/**
 * Splits a decode batch into lanes of similar cache length, shortest first.
 * A batched step pads every sequence to the longest head of its run, so a
 * short sequence beside a long one would attend (and be copied to) the long
 * one's length: a sequence shares its lane's run only while that padding
 * costs less than a run of its own (its length is within `runCost` entries of
 * the lane's shortest: runCostEntries).
 */
export function lanesOf<T>(items: readonly T[], entriesOf: (item: T) => number, runCost: number): T[][] {
  const sorted = items.map((item) => ({ item, entries: entriesOf(item) })).sort((a, b) => a.entries - b.entries);
  const lanes: T[][] = [];
  let shortest = -Infinity;
  for (const { item, entries } of sorted) {
    if (entries - shortest > runCost) {
      lanes.push([]);
      shortest = entries;
    }
    lanes.at(-1)!.push(item);
  }
  return lanes;
}
