/**
 * Keeps the protected slots plus the highest-scoring others, `count` in all,
 * returned ascending. Ties go to the lower slot (the earlier position).
 */
export function selectTopK(scores: ArrayLike<number>, count: number, isProtected: (slot: number) => boolean): Int32Array {
  const kept: number[] = [];
  const candidates: number[] = [];
  for (let slot = 0; slot < scores.length; slot++) (isProtected(slot) ? kept : candidates).push(slot);
  candidates.sort((a, b) => scores[b] - scores[a] || a - b);
  kept.push(...candidates.slice(0, Math.max(0, count - kept.length)));
  return Int32Array.from(kept).sort();
}
