import { SeededRandom } from "../../numerics/seeded-random.js";

export interface SamplingParams {
  /** 0 = greedy. */
  temperature: number;
  /** 0 = no cut. */
  topK: number;
  /** 0 or 1 = no cut. */
  topP: number;
  seed: bigint;
}

/** Index of the largest logit; ties go to the lower token id. */
export function argmax(logits: Float32Array): number {
  let best = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i;
  return best;
}

/** Picks next tokens from logits: greedy, or temperature with top-k and nucleus cuts. */
export class Sampler {
  private readonly random: SeededRandom;

  constructor(private readonly params: SamplingParams) {
    this.random = new SeededRandom(params.seed);
  }

  next(logits: Float32Array): number {
    const { temperature, topK, topP } = this.params;
    if (temperature <= 0) return argmax(logits);
    // Candidates by descending logit (ties: lower id first), cut to top-k.
    let order = Array.from(logits.keys()).sort((a, b) => logits[b] - logits[a] || a - b);
    if (topK > 0) order = order.slice(0, topK);
    const max = logits[order[0]];
    const weights = order.map((id) => Math.exp((logits[id] - max) / temperature));
    const total = weights.reduce((sum, w) => sum + w, 0);
    let kept = order.length;
    if (topP > 0 && topP < 1) {
      let cumulative = 0;
      kept = 0;
      while (kept < order.length && cumulative < topP * total) cumulative += weights[kept++];
    }
    const mass = weights.slice(0, kept).reduce((sum, w) => sum + w, 0);
    let target = this.random.next() * mass;
    for (let i = 0; i < kept; i++) {
      target -= weights[i];
      if (target < 0) return order[i];
    }
    return order[kept - 1];
  }
}
