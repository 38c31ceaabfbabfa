/**
 * A number rounded to the nearest IEEE 754 half-precision value (ties to even, past the largest
 * finite value to infinity), written from the format's definition (11 significant bits, exponents
 * from -14, subnormals below), independent of src/numerics: what a float16 store keeps of it.
 */
export function roundToFloat16(x: number): number {
  if (!Number.isFinite(x) || x === 0) return x;
  const magnitude = Math.abs(x);
  if (magnitude >= 65520) return Math.sign(x) * Infinity; // halfway past 65504, the largest finite half
  let exponent = Math.floor(Math.log2(magnitude));
  if (2 ** exponent > magnitude) exponent--; // log2 may round across a power of two
  if (2 ** (exponent + 1) <= magnitude) exponent++;
  const spacing = 2 ** (Math.max(exponent, -14) - 10);
  const scaled = magnitude / spacing;
  const below = Math.floor(scaled);
  const steps = scaled - below > 0.5 || (scaled - below === 0.5 && below % 2 === 1) ? below + 1 : below;
  return Math.sign(x) * steps * spacing;
}
