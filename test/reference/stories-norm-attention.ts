/**
 * Does a low key norm draw attention on stories260K, the fidelity suite's
 * model? The L2-norm paper's premise, measured with the plain float64 forward
 * pass (independent of kvwarden) on stories the model samples itself from BOS
 * (temperature 1, seeds 1-8, 320 tokens, as long as the fidelity contexts).
 * Run:
 *
 *   npx tsx test/reference/stories-norm-attention.ts > docs/eval/stories-norm-attention.md
 *
 * Per layer and KV head: Spearman's correlation between minus the key norm
 * and the attention the last 8 tokens pay each earlier entry (summed over
 * rows and the group's query heads; positive = low norms draw attention),
 * BOS's key-norm percentile (0 = lowest, what knorm keeps first) and share of
 * that attention, and the share held by the 20% of entries with the lowest
 * norms (what knorm keeps at 20%) and by the 20% with the highest.
 */
import { SeededRandom } from "../../src/numerics/seeded-random.js";
import { loadTestWeights } from "../support/test-model.js";
import { createReferenceCache, referenceForward } from "./llama-forward.js";

const STORIES = 8;
const TOKENS = 320;
const ROWS = 8;
const weights = loadTestWeights();
const { layers, heads, kvHeads } = weights.config;
const group = heads / kvHeads;
const spearman = Array.from({ length: layers }, () => new Array(kvHeads).fill(0));
const bosPercentile = Array.from({ length: layers }, () => new Array(kvHeads).fill(0));
const bosShare = Array.from({ length: layers }, () => new Array(kvHeads).fill(0));
const lowestShare = Array.from({ length: layers }, () => new Array(kvHeads).fill(0));
const highestShare = Array.from({ length: layers }, () => new Array(kvHeads).fill(0));

const ranks = (values: readonly number[]) => {
  const r = new Array<number>(values.length);
  values.map((_, i) => i).sort((a, b) => values[a] - values[b]).forEach((index, rank) => (r[index] = rank));
  return r;
};
const pearson = (a: readonly number[], b: readonly number[]) => {
  const mean = (x: readonly number[]) => x.reduce((s, v) => s + v, 0) / x.length;
  const [ma, mb] = [mean(a), mean(b)];
  let [num, da, db] = [0, 0, 0];
  a.forEach((_, i) => {
    num += (a[i] - ma) * (b[i] - mb);
    da += (a[i] - ma) ** 2;
    db += (b[i] - mb) ** 2;
  });
  return num / Math.sqrt(da * db);
};

for (let seed = 1; seed <= STORIES; seed++) {
  const random = new SeededRandom(seed);
  const cache = createReferenceCache(weights.config);
  // [layer][kvHead][entry]: attention the last ROWS tokens paid, summed.
  const paid = Array.from({ length: layers }, () => Array.from({ length: kvHeads }, () => new Float64Array(TOKENS)));
  let token = 1; // BOS
  for (let position = 0; position < TOKENS; position++) {
    const { logits, attention } = referenceForward(weights, cache, [token], position);
    if (position >= TOKENS - ROWS) {
      for (let l = 0; l < layers; l++) for (let q = 0; q < heads; q++) attention[l][0][q].forEach((p, j) => (paid[l][Math.floor(q / group)][j] += p));
    }
    // Temperature-1 sampling from the softmax of the logits.
    const row = logits[0];
    const max = Math.max(...row);
    const exps = Array.from(row, (x) => Math.exp(x - max));
    let u = random.next() * exps.reduce((a, b) => a + b, 0);
    token = exps.findIndex((e) => (u -= e) <= 0);
  }
  const scored = TOKENS - ROWS;
  for (let l = 0; l < layers; l++) {
    for (let h = 0; h < kvHeads; h++) {
      const norms = cache[l][h].map((e) => Math.sqrt(e.key.reduce((s, x) => s + x * x, 0)));
      const minusNorm = norms.slice(0, scored).map((n) => -n);
      spearman[l][h] += pearson(ranks(minusNorm), ranks(Array.from(paid[l][h].subarray(0, scored)))) / STORIES;
      bosPercentile[l][h] += norms.filter((n) => n < norms[0]).length / (norms.length - 1) / STORIES;
      const attention = Array.from(paid[l][h].subarray(0, scored));
      const total = attention.reduce((a, b) => a + b, 0);
      const byNorm = attention.map((_, j) => j).sort((a, b) => norms[a] - norms[b]);
      const fifth = Math.floor(scored * 0.2);
      const share = (entries: number[]) => entries.reduce((sum, j) => sum + attention[j], 0) / total / STORIES;
      bosShare[l][h] += attention[0] / total / STORIES;
      lowestShare[l][h] += share(byNorm.slice(0, fifth));
      highestShare[l][h] += share(byNorm.slice(-fifth));
    }
  }
}

const columns = Array.from({ length: layers }, (_, l) => Array.from({ length: kvHeads }, (_, h) => `L${l} H${h}`)).flat();
process.stdout.write(
  [
    "# stories260K: does a low key norm draw attention?",
    "",
    `Made by \`npx tsx test/reference/stories-norm-attention.ts\`: the float64 reference forward pass on ${STORIES} stories stories260K samples from BOS (temperature 1, seeds 1-${STORIES}, ${TOKENS} tokens). Means over the stories, per layer (L) and KV head (H); attention is what the last ${ROWS} tokens pay the ${TOKENS - ROWS} entries before them.`,
    "",
    `| metric | ${columns.join(" | ")} |`,
    `|---|${columns.map(() => "---").join("|")}|`,
    `| Spearman(-norm, attention) | ${spearman.flat().map((v) => v.toFixed(2)).join(" | ")} |`,
    ...(
      [
        ["BOS norm percentile", bosPercentile],
        ["attention on BOS", bosShare],
        ["attention on the lowest-norm 20%", lowestShare],
        ["attention on the highest-norm 20%", highestShare],
      ] as const
    ).map(([metric, values]) => `| ${metric} | ${values.flat().map((v) => `${(v * 100).toFixed(1)}%`).join(" | ")} |`),
    "",
  ].join("\n"),
);
