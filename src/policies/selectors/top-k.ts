/** Slots best first: higher score, ties to the lower slot (the earlier position). Sorts `slots` in place. */
export function rankByScore(scores: ArrayLike<number>, slots: number[]): number[] {
  // NaN from Infinity - Infinity falls through to the slot order, like any other tie.
  return slots.sort((a, b) => scores[b] - scores[a] || a - b);
}

/**
 * Keeps the protected slots plus the highest-scoring others, `count` in all,
 * returned ascending. Ties go to the lower slot (the earlier position). A head
 * is never emptied: at least one slot is kept even if `count` is 0, and the
 * protected slots are all kept even if they exceed `count`.
 */
export function selectTopK(scores: ArrayLike<number>, count: number, isProtected: (slot: number) => boolean): Int32Array {
  const kept: number[] = [];
  const candidates: number[] = [];
  for (let slot = 0; slot < scores.length; slot++) (isProtected(slot) ? kept : candidates).push(slot);
  kept.push(...rankByScore(scores, candidates).slice(0, Math.max(0, Math.max(1, count) - kept.length)));
  return Int32Array.from(kept).sort();
}

/**
 * SnapKV-style keep: every entry of the window (the slots after the scored
 * ones) plus the best `count - window` of the scored entries before it.
 */
export function selectTopKBeforeWindow(scoresBeforeWindow: Float64Array, entries: number, count: number): Int32Array {
  const scores = new Float64Array(entries);
  scores.set(scoresBeforeWindow);
  return selectTopK(scores, count, (slot) => slot >= scoresBeforeWindow.length);
}
