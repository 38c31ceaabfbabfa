/** A head taking part in AdaKV's allocation. */
export interface AdaptiveHead {
  /** Scores of the head's selectable entries (window excluded), by slot. */
  scores: Float64Array;
  /** Original positions of those entries, for ties. */
  positions: Int32Array;
  /** The head's uniform share B of selected entries. */
  budget: number;
}

/**
 * AdaKV's per-head allocation within a layer (official rule): the best
 * sum(B) scores over all heads jointly are the wins, c_h of them in head h,
 * and head h selects b_h = round(c_h * (1 - alpha) + floor(alpha * B_h))
 * entries, at most what it holds. alpha is the floor that keeps a head from
 * starving. Ties in the joint ranking go to the lower position, then the lower
 * head. round() is half to even, as torch.round in the reference; like the
 * reference, the rounded total may differ slightly from sum(B) and is not
 * rebalanced.
 */
export function adaptiveCounts(heads: readonly AdaptiveHead[], alpha: number): number[] {
  const entries: { head: number; slot: number }[] = heads.flatMap((head, h) => Array.from(head.scores, (_, slot) => ({ head: h, slot })));
  entries.sort(
    (a, b) =>
      heads[b.head].scores[b.slot] - heads[a.head].scores[a.slot] ||
      heads[a.head].positions[a.slot] - heads[b.head].positions[b.slot] ||
      a.head - b.head,
  );
  const wins = new Array<number>(heads.length).fill(0);
  const total = heads.reduce((sum, head) => sum + head.budget, 0);
  for (const entry of entries.slice(0, total)) wins[entry.head]++;
  return heads.map((head, h) => Math.min(head.scores.length, roundHalfToEven(wins[h] * (1 - alpha) + Math.floor(alpha * head.budget))));
}

function roundHalfToEven(value: number): number {
  const lower = Math.floor(value);
  const fraction = value - lower;
  if (fraction !== 0.5) return Math.round(value);
  return lower % 2 === 0 ? lower : lower + 1;
}
