import type { KvArray, KvDtype } from "../../../src/kv/layer-cache.js";

/** float16 bits of an integer of magnitude below 2048 (exact in float16). */
export function half(n: number): number {
  if (!Number.isInteger(n) || Math.abs(n) >= 2048) throw new Error(`${n} is not an integer float16 holds exactly`);
  if (n === 0) return 0;
  const sign = n < 0 ? 0x8000 : 0;
  const m = Math.abs(n);
  const exponent = Math.floor(Math.log2(m));
  const fraction = (m / 2 ** exponent - 1) * 1024;
  return sign | ((exponent + 15) << 10) | fraction;
}

/** `values` (integers below 2048 in magnitude) as a KV array of `dtype`. */
export function kvArray(values: readonly number[], dtype: KvDtype): KvArray {
  return dtype === "float16" ? Uint16Array.from(values, half) : Float32Array.from(values);
}

/** Distinct small integers, exact in float32 and float16: the n-th value of a stream. */
export function sample(n: number): number {
  return ((n * 37) % 1999) - 999;
}
