/**
 * NACL's one-shot selection written straight from the paper's procedure
 * (Chen et al. 2024, NACL; the reference code's kvcache_eviction),
 * for one layer, with plain arrays, independent of src/policies:
 *
 *   score[q][j] = sum over proxy rows of softmax(q . k_j / sqrt(d)) over the
 *   keys the row sees; a KV head's score is the sum over its query heads;
 *   keep the sinks [0, S), the proxies, the top Kp candidates by score (ties to
 *   the earlier position) and Kr drawn at random from the rest.
 *
 * The random draw has no reference output (the paper's code is unseeded), so
 * this returns the deterministic part, and what the draw may pick from.
 * `causal`: each proxy row sees keys up to its own position (kvwarden's causal scoring
 * rule); false, every key (the reference's non-causal flash-attention).
 */
export interface NaclReferenceInput {
  /** [kvHead][entry] post-RoPE keys; entry j has position j (a freshly prefilled cache). */
  keys: Float64Array[][];
  /** Proxy rows: their positions and [queryHead] post-RoPE queries. */
  proxies: { position: number; queries: Float64Array[] }[];
  sinks: number;
  budget: number;
  randomShare: number;
  causal: boolean;
}

export interface NaclReferenceHead {
  /** Sinks, proxies and the proxy top-k, ascending. */
  deterministic: number[];
  /** How many are drawn at random from the other candidates. */
  randomCount: number;
  scores: Float64Array;
}

export function naclReferenceLayer(input: NaclReferenceInput): NaclReferenceHead[] {
  const kvHeads = input.keys.length;
  const queryHeads = input.proxies[0].queries.length;
  const group = queryHeads / kvHeads;
  return input.keys.map((keys, kvHead) => {
    const length = keys.length;
    const d = keys[0].length;
    const scores = new Float64Array(length);
    for (let q = kvHead * group; q < (kvHead + 1) * group; q++) {
      for (const proxy of input.proxies) {
        const visible = input.causal ? proxy.position + 1 : length;
        const logits = keys.slice(0, visible).map((key) => key.reduce((sum, k, i) => sum + k * proxy.queries[q][i], 0) / Math.sqrt(d));
        const max = Math.max(...logits);
        const exps = logits.map((x) => Math.exp(x - max));
        const total = exps.reduce((a, b) => a + b, 0);
        exps.forEach((e, j) => (scores[j] += e / total));
      }
    }
    const proxyPositions = new Set(input.proxies.map((p) => p.position));
    const protectedEntries = [...Array(length).keys()].filter((j) => j < input.sinks || proxyPositions.has(j));
    const candidates = [...Array(length).keys()].filter((j) => j >= input.sinks && !proxyPositions.has(j));
    const remaining = input.budget - protectedEntries.length;
    const randomCount = Math.floor(remaining * input.randomShare);
    const top = [...candidates].sort((a, b) => scores[b] - scores[a] || a - b).slice(0, remaining - randomCount);
    return { deterministic: [...protectedEntries, ...top].sort((a, b) => a - b), randomCount, scores };
  });
}
