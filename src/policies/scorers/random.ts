import type { SeededRandom } from "../../numerics/seeded-random.js";

/** One uniform draw per slot, in slot order: the top k of these is a uniformly random k-subset. */
export function randomScores(random: SeededRandom, entries: number): Float64Array {
  return Float64Array.from({ length: entries }, () => random.next());
}
