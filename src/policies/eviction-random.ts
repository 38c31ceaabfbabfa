import { SeededRandom } from "../model/seeded-random.js";

const MASK_64 = (1n << 64n) - 1n;

/**
 * The random stream an eviction with this seed draws from. SeededRandom seeds
 * xoroshiro128+ with a state whose first outputs follow the seed almost
 * linearly (seeds 1, 2 and 3 draw nearly the same first numbers), so the seed
 * is spread by SplitMix64 first. The engine always passes a seed (the
 * request's, or a fresh one); a missing seed here means 0.
 */
export function evictionRandom(seed: bigint | undefined): SeededRandom {
  return new SeededRandom(splitMix64(seed ?? 0n));
}

/** SplitMix64's output for state `seed` (Steele, Lea and Flood): every seed bit reaches every output bit. */
export function splitMix64(seed: bigint): bigint {
  let z = (seed + 0x9e3779b97f4a7c15n) & MASK_64;
  z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & MASK_64;
  z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & MASK_64;
  return z ^ (z >> 31n);
}
