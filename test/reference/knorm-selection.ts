/**
 * The L2-norm method's selection written straight from the paper's
 * l2_compress (Devoto et al. 2024, "A Simple and Effective L2 Norm-Based Strategy for KV Cache Compression"), independent of
 * src/policies: per KV head of a layer not skipped, sort the entries by key L2
 * norm ascending (highest first for the paper's ablation), ties to the earlier
 * position, and keep the first `budget`, returned in position order. The sink
 * ablation keeps the first `sinks` entries outright and ranks only the rest.
 * Norms are compared to 12 significant digits: one token's key has the same
 * norm at every position (RoPE is a rotation), and only float64 rounding of
 * the rotation tells them apart.
 */
export function knormReferenceHead(keys: readonly Float64Array[], budget: number, options: { highest: boolean; sinks: number }): number[] {
  const norms = keys.map((key) => Number(Math.sqrt(key.reduce((sum, k) => sum + k * k, 0)).toPrecision(12)));
  const sign = options.highest ? -1 : 1;
  const sinks = [...Array(Math.min(options.sinks, keys.length)).keys()];
  const ranked = [...Array(keys.length).keys()].filter((j) => j >= options.sinks).sort((a, b) => sign * (norms[a] - norms[b]) || a - b);
  return [...sinks, ...ranked.slice(0, budget - sinks.length)].sort((a, b) => a - b);
}
