import { describe, expect, it } from "vitest";
import { float16ToFloat32 } from "../../src/numerics/float16.js";
import { roundToFloat16 } from "../reference/float16-rounding.js";

// The reference rounding (test/reference/float16-rounding.ts) against every half-precision value the
// project decodes: each rounds to itself, a midpoint to its even neighbour, a hair off it to the nearer.
describe("the reference float16 rounding", () => {
  const halves = float16ToFloat32(Uint16Array.from({ length: 0x7c00 }, (_, bits) => bits)); // +0 up to the largest finite

  it("keeps every finite half, and rounds between neighbours to the nearer, ties to the even one", () => {
    for (let bits = 0; bits < halves.length; bits++) {
      expect(roundToFloat16(halves[bits])).toBe(halves[bits]);
      expect(roundToFloat16(-halves[bits])).toBe(-halves[bits]);
      if (bits + 1 === halves.length) continue;
      const [low, high] = [halves[bits], halves[bits + 1]];
      const middle = (low + high) / 2;
      expect(roundToFloat16(middle)).toBe(bits % 2 === 0 ? low : high);
      expect(roundToFloat16(middle - (high - low) / 8)).toBe(low);
      expect(roundToFloat16(middle + (high - low) / 8)).toBe(high);
    }
  });

  it("rounds past the largest finite half to infinity from the midpoint on", () => {
    expect(roundToFloat16(65519)).toBe(65504);
    expect(roundToFloat16(65520)).toBe(Infinity);
    expect(roundToFloat16(-1e6)).toBe(-Infinity);
  });
});
