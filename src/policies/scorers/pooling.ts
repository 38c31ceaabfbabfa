import type { Pooling } from "../policy.js";

/**
 * 1-D pooling with PyTorch's semantics for an odd kernel k: stride 1, padding
 * k//2 on both sides, so the output is as long as the input. Max-pooling pads
 * with -Infinity (padding never wins); avg-pooling pads with zeros and always
 * divides by k (count_include_pad), so edge values shrink.
 */
export function pool1d(values: Float64Array, kernelSize: number, pooling: Pooling): Float64Array {
  if (pooling === "none") return Float64Array.from(values);
  const half = Math.floor(kernelSize / 2);
  return values.map((_, i) => {
    const from = Math.max(0, i - half);
    const to = Math.min(values.length, i + half + 1);
    if (pooling === "max") {
      let max = -Infinity;
      for (let j = from; j < to; j++) max = Math.max(max, values[j]);
      return max;
    }
    let sum = 0;
    for (let j = from; j < to; j++) sum += values[j];
    return sum / kernelSize;
  });
}
