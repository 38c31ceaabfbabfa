/**
 * What one graph run costs besides the entries it attends, in cached entries:
 * a decode step of stories260K takes about 1 ms at a few cached entries and
 * about 0.8 us more per cached entry (docs/bench/latest.md, target 5).
 */
export const RUN_COST_ENTRIES = 1024;

/**
 * Splits a decode batch into lanes of similar cache length, shortest first.
 * A batched step pads every sequence to the longest head of its run, so a
 * short sequence beside a long one would attend (and be copied to) the long
 * one's length: a sequence shares its lane's run only while that padding
 * costs less than a run of its own (its length is within RUN_COST_ENTRIES of
 * the lane's shortest).
 */
export function lanesOf<T>(items: readonly T[], entriesOf: (item: T) => number): T[][] {
  const sorted = items.map((item) => ({ item, entries: entriesOf(item) })).sort((a, b) => a.entries - b.entries);
  const lanes: T[][] = [];
  let shortest = -Infinity;
  for (const { item, entries } of sorted) {
    if (entries - shortest > RUN_COST_ENTRIES) {
      lanes.push([]);
      shortest = entries;
    }
    lanes.at(-1)!.push(item);
  }
  return lanes;
}
