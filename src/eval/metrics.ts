/** One scored position as Prefill returns it: the fed token's log-probability and the most likely alternatives. */
export interface TokenScore {
  tokenId: number;
  logprob: number;
  /** Best first. */
  top: readonly { tokenId: number; logprob: number }[];
  /** Every token's log-probability, by id, when the sidecar returned whole distributions. */
  distribution?: readonly number[];
}

/** One position of a teacher-forced continuation, full cache against evicted cache. */
export interface PositionComparison {
  fullLogprob: number;
  evictedLogprob: number;
  /** Both caches rank the same token first. */
  agrees: boolean;
  /** KL(full || evicted): exact over whole distributions, else a lower bound (see klLowerBound). */
  kl: number;
  /** Whether `kl` is exact. */
  klExact: boolean;
  /** Probability mass of the full cache's top list: how much of the distribution the KL sees. */
  fullTopMass: number;
}

/** Quality figures pooled over positions (every token weighs the same). */
export interface QualitySummary {
  tokens: number;
  perplexityFull: number;
  perplexityEvicted: number;
  /** (evicted / full - 1) in percent. */
  perplexityChangePct: number;
  top1Agreement: number;
  meanKl: number;
  /** Whether every position's KL was computed over whole distributions. */
  klExact: boolean;
  meanFullTopMass: number;
}

/** exp of the mean negative log-probability. */
export function perplexity(logprobs: readonly number[]): number {
  if (logprobs.length === 0) throw new Error("perplexity of no tokens");
  return Math.exp(-logprobs.reduce((sum, lp) => sum + lp, 0) / logprobs.length);
}

/** Whether both distributions rank the same token first. */
export function agreesTop1(full: TokenScore, evicted: TokenScore): boolean {
  return full.top[0].tokenId === evicted.top[0].tokenId;
}

// A tail mass the evicted cache rounds to zero while the full one does not would make the KL infinite;
// the top lists are float32, so treat such a tail as this small instead.
const TAIL_FLOOR = 1e-9;

/**
 * KL(full || evicted) at one position from top-k lists only. The tokens whose
 * log-probability both sides report (their top lists' intersection, plus the
 * fed token) keep their own probabilities; every other token is lumped into one
 * tail bucket per side (1 - the known mass). This is the KL of a coarsening of
 * both distributions, so by the log-sum inequality it never exceeds the true
 * KL; it equals it when, inside the tail, the two distributions are proportional.
 */
export function klLowerBound(full: TokenScore, evicted: TokenScore): number {
  const evictedById = new Map(evicted.top.map((t) => [t.tokenId, t.logprob]));
  evictedById.set(evicted.tokenId, evicted.logprob);
  const fullById = new Map(full.top.map((t) => [t.tokenId, t.logprob]));
  fullById.set(full.tokenId, full.logprob);
  let kl = 0;
  let fullKnown = 0;
  let evictedKnown = 0;
  for (const [tokenId, p] of fullById) {
    const q = evictedById.get(tokenId);
    if (q === undefined) continue;
    kl += Math.exp(p) * (p - q);
    fullKnown += Math.exp(p);
    evictedKnown += Math.exp(q);
  }
  const fullTail = Math.max(0, 1 - fullKnown);
  const evictedTail = Math.max(TAIL_FLOOR, 1 - evictedKnown);
  if (fullTail > 0) kl += fullTail * Math.log(fullTail / evictedTail);
  return kl;
}

/** KL(full || evicted) at one position over whole distributions (log-probabilities by token id). */
export function klExact(full: readonly number[], evicted: readonly number[]): number {
  if (full.length !== evicted.length) throw new Error("the two distributions cover different vocabularies");
  let kl = 0;
  for (let id = 0; id < full.length; id++) {
    const p = Math.exp(full[id]);
    if (p > 0) kl += p * (full[id] - evicted[id]);
  }
  // Float32 log-probabilities can put a near-identical pair a hair below zero.
  return Math.max(0, kl);
}

/** Compares the scores of one continuation under the full and the evicted cache, position by position. */
export function comparePositions(full: readonly TokenScore[], evicted: readonly TokenScore[]): PositionComparison[] {
  if (full.length !== evicted.length || full.some((f, i) => f.tokenId !== evicted[i].tokenId)) {
    throw new Error("the two score lists do not cover the same tokens");
  }
  if ([...full, ...evicted].some((s) => s.top.length === 0)) throw new Error("scores need their top alternatives");
  return full.map((f, i) => {
    const e = evicted[i];
    const exact = f.distribution !== undefined && e.distribution !== undefined;
    return {
      fullLogprob: f.logprob,
      evictedLogprob: e.logprob,
      agrees: agreesTop1(f, e),
      kl: exact ? klExact(f.distribution!, e.distribution!) : klLowerBound(f, e),
      klExact: exact,
      fullTopMass: f.top.reduce((sum, t) => sum + Math.exp(t.logprob), 0),
    };
  });
}

/** Pools positions, from one continuation or many. */
export function summarise(positions: readonly PositionComparison[]): QualitySummary {
  const mean = (value: (p: PositionComparison) => number) => positions.reduce((sum, p) => sum + value(p), 0) / positions.length;
  const perplexityFull = perplexity(positions.map((p) => p.fullLogprob));
  const perplexityEvicted = perplexity(positions.map((p) => p.evictedLogprob));
  return {
    tokens: positions.length,
    perplexityFull,
    perplexityEvicted,
    perplexityChangePct: (perplexityEvicted / perplexityFull - 1) * 100,
    top1Agreement: mean((p) => (p.agrees ? 1 : 0)),
    meanKl: mean((p) => p.kl),
    klExact: positions.every((p) => p.klExact),
    meanFullTopMass: mean((p) => p.fullTopMass),
  };
}
