import FlatQueue from "flatqueue";

/** Which pairs of tokens merge, and in which order. */
export interface MergeTable {
  /** The token `left` followed by `right` merges into, or -1 when they form no piece that merges. */
  merged(left: number, right: number): number;
  /** When a merged token forms: lower ranks first; among equal ranks, the leftmost pair first. */
  rank(token: number): number;
}

/**
 * Merges the adjacent pair with the lowest-ranked merged token, the leftmost
 * among equals, again and again until no pair merges: llama2.c's (and
 * sentencepiece's) BPE. A priority queue of candidate pairs makes this
 * O(n log n) where rescanning the list for each merge was O(n²); the result
 * is the same, merge for merge.
 *
 * A generator that yields after every `slice` steps, so that a caller can
 * pause between slices (see src/numerics/sliced-work.ts); returns the merged ids.
 */
export function* mergeBestPairs(ids: readonly number[], table: MergeTable, slice: number): Generator<void, number[]> {
  const count = ids.length;
  // Tokens stay at the index of their first piece; a merge keeps the left index and empties the right one.
  const token = Int32Array.from(ids);
  const EMPTY = -1;
  // A linked list over the indices; `count` ends it.
  const next = Int32Array.from({ length: count }, (_, i) => i + 1);
  const previous = Int32Array.from({ length: count }, (_, i) => i - 1);
  // A candidate is its right index, queued by rank, then by left index: an exact integer (rank * count + left).
  const queue = new FlatQueue<number>(Math.max(1, 3 * count), Float64Array, Uint32Array);
  const rankAt = (left: number, right: number): number => {
    const merged = table.merged(token[left], token[right]);
    return merged < 0 ? -1 : table.rank(merged);
  };
  const offer = (left: number) => {
    const right = next[left];
    if (right >= count) return;
    const rank = rankAt(left, right);
    if (rank >= 0) queue.push(right, rank * count + left);
  };

  for (let left = 0; left + 1 < count; left++) {
    offer(left);
    if ((left + 1) % slice === 0) yield;
  }
  let steps = 0;
  while (queue.length > 0) {
    const priority = queue.peekValue()!;
    const right = queue.pop()!;
    const left = priority % count;
    // Stale when either side has changed since: then the pair now there, if any, was queued on its own.
    if (token[left] === EMPTY || next[left] !== right || rankAt(left, right) !== (priority - left) / count) continue;
    token[left] = table.merged(token[left], token[right]);
    token[right] = EMPTY;
    const after = next[right];
    next[left] = after;
    if (after < count) previous[after] = left;
    if (previous[left] >= 0) offer(previous[left]);
    offer(left);
    if (++steps % slice === 0) yield;
  }
  const merged: number[] = [];
  // Index 0 always holds the first token: a merge keeps its left index.
  for (let i = 0; i < count; i = next[i]) merged.push(token[i]);
  return merged;
}
