import type { GroupReduction } from "../policy.js";

/**
 * Reduces per-query-head scores to per-KV-head scores: query head q belongs
 * to KV head floor(q / G), G = heads / kvHeads, and each group of G is
 * combined by mean, max or sum (the heads of one group score the same slots).
 */
export function reduceOverGroups(perQueryHead: readonly Float64Array[], kvHeads: number, reduction: GroupReduction): Float64Array[] {
  const group = perQueryHead.length / kvHeads;
  return Array.from({ length: kvHeads }, (_, h) => {
    const members = perQueryHead.slice(h * group, (h + 1) * group);
    const out = Float64Array.from(members[0]);
    for (const member of members.slice(1)) {
      for (let slot = 0; slot < out.length; slot++) {
        out[slot] = reduction === "max" ? Math.max(out[slot], member[slot]) : out[slot] + member[slot];
      }
    }
    if (reduction === "mean") for (let slot = 0; slot < out.length; slot++) out[slot] /= group;
    return out;
  });
}
