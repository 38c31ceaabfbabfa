export interface TokenLogprob {
  tokenId: number;
  /** Undefined for a sequence's first token: nothing precedes it. */
  logprob?: number;
  /** The most likely tokens at this position, best first. */
  top: { tokenId: number; logprob: number }[];
  /** Every token's log-probability at this position, by id (when asked for). */
  distribution?: Float32Array;
}

/**
 * Scores `tokenId` against the logits that predicted it (log-softmax in float64),
 * with the `topCount` most likely tokens and, if asked, the whole distribution.
 */
export function scoreToken(logits: Float32Array, tokenId: number, topCount: number, withDistribution = false): TokenLogprob {
  let max = -Infinity;
  for (const value of logits) max = Math.max(max, value);
  let sum = 0;
  for (const value of logits) sum += Math.exp(value - max);
  const logNormalizer = max + Math.log(sum);
  const top =
    topCount > 0
      ? Array.from(logits.keys())
          .sort((a, b) => logits[b] - logits[a] || a - b)
          .slice(0, topCount)
          .map((id) => ({ tokenId: id, logprob: logits[id] - logNormalizer }))
      : [];
  const distribution = withDistribution ? Float32Array.from(logits, (value) => value - logNormalizer) : undefined;
  return { tokenId, logprob: logits[tokenId] - logNormalizer, top, distribution };
}
