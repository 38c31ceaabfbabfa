import type { SeededRandom } from "../../numerics/seeded-random.js";
import { rankByScore } from "./top-k.js";

export interface TopKWithRandom {
  /** Best-scoring unprotected slots kept outright. */
  topCount: number;
  /** Slots then drawn from the rest. */
  randomCount: number;
  /** Softmax temperature of the draws; 0 draws uniformly. */
  temperature: number;
}

/**
 * NACL's selector: the protected slots, the `topCount` best-scoring others,
 * and `randomCount` drawn without replacement from the remaining ones with
 * p = softmax(score / temperature) among those not yet kept. The draws use
 * the Gumbel-top-k identity (the top k of score/temperature + Gumbel noise is
 * distributed exactly as k successive softmax draws without replacement),
 * taking one uniform number per remaining slot in slot order, so a seed fixes
 * the result. Returned ascending; never empty.
 */
export function selectTopKWithRandom(
  scores: Float64Array,
  isProtected: (slot: number) => boolean,
  selection: TopKWithRandom,
  random: SeededRandom,
): Int32Array {
  const kept: number[] = [];
  const candidates: number[] = [];
  for (let slot = 0; slot < scores.length; slot++) (isProtected(slot) ? kept : candidates).push(slot);
  const ranked = rankByScore(scores, candidates);
  const topCount = Math.max(selection.topCount, 1 - kept.length - selection.randomCount);
  kept.push(...ranked.slice(0, topCount));
  const rest = ranked.slice(topCount).sort((a, b) => a - b);
  const keys = new Float64Array(scores.length);
  for (const slot of rest) {
    const gumbel = -Math.log(-Math.log(random.next()));
    keys[slot] = selection.temperature > 0 ? scores[slot] / selection.temperature + gumbel : gumbel;
  }
  kept.push(...rankByScore(keys, rest).slice(0, selection.randomCount));
  return Int32Array.from(kept).sort();
}
