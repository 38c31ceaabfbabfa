import { xoroshiro128plus, type RandomGenerator } from "pure-rand";

const MASK_64 = (1n << 64n) - 1n;
const GOLDEN_GAMMA = 0x9e3779b97f4a7c15n;

/** SplitMix64's output for state `seed` (Steele, Lea and Flood): every seed bit reaches every output bit. */
export function splitMix64(seed: bigint): bigint {
  let z = (seed + GOLDEN_GAMMA) & MASK_64;
  z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & MASK_64;
  z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & MASK_64;
  return z ^ (z >> 31n);
}

/**
 * A seeded source of uniform numbers: same seed, same sequence. The 64-bit
 * seed fills xoroshiro128+'s whole 128-bit state through SplitMix64, as its
 * authors recommend; seeding it from a small integer directly makes the first
 * draws of neighbouring seeds nearly equal.
 */
export class SeededRandom {
  private readonly generator: RandomGenerator;

  constructor(seed: number | bigint) {
    const value = BigInt.asUintN(64, BigInt(seed));
    const high = splitMix64(value);
    const low = splitMix64((value + GOLDEN_GAMMA) & MASK_64);
    const words = [high >> 32n, high, low >> 32n, low].map((w) => Number(BigInt.asIntN(32, w)));
    this.generator = xoroshiro128plus.fromState(words);
  }

  /** A uniform number in [0, 1) with 53 random bits. */
  next(): number {
    const high = this.generator.unsafeNext() >>> 5; // 27 bits
    const low = this.generator.unsafeNext() >>> 6; // 26 bits
    return (high * 67108864 + low) / 9007199254740992;
  }

  /** A fresh seed, for requests that gave none. */
  static randomSeed(): bigint {
    return BigInt.asUintN(64, BigInt(Math.floor(Math.random() * 2 ** 32)) * 4294967296n + BigInt(Math.floor(Math.random() * 2 ** 32)));
  }
}
