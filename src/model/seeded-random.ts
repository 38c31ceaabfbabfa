import { xoroshiro128plus, type RandomGenerator } from "pure-rand";

/** A seeded source of uniform numbers: same seed, same sequence. */
export class SeededRandom {
  private readonly generator: RandomGenerator;

  constructor(seed: number | bigint) {
    const value = BigInt(seed);
    // Fold the 64-bit seed into the generator's 32-bit seed.
    this.generator = xoroshiro128plus(Number(BigInt.asIntN(32, value ^ (value >> 32n))));
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
