/**
 * Where the recall model's attention and key norms put the needle, measured
 * with the plain float64 forward pass (independent of kvwarden), for the
 * causes in docs/eval/ablations-findings.md. Run:
 *
 *   npx tsx test/reference/recall-diagnosis.ts > docs/eval/recall-diagnosis.md
 *
 * Per layer and KV head, over held-out prompts of 256 and 512 tokens (every
 * task and needle depth, one each):
 * - the share of the question's attention (its rows, the group's query heads)
 *   that lands on the needle (the asked fact's sentence) and on BOS, and the
 *   same for the last prompt token alone, whose next token is the answer;
 * - the needle's and BOS's key-norm percentile among the prompt's keys
 *   (0 = lowest norm, what knorm keeps first);
 * - Spearman's correlation between minus the key norm and the attention the
 *   question pays (positive: low norms draw attention, the L2-norm paper's
 *   observation);
 * - NACL without its random part at 20%: the share of needle tokens its proxy
 *   top-k keeps, and how many kept entries change when the proxies attend
 *   non-causally (the reference's flash-attention) instead of causally; and,
 *   with the question sentence alone as proxies (up to its "?"), the share of
 *   the answer prefix after it ("the pass key is") that the top-k keeps;
 * - in layer 3's KV head 1 (where the last token's attention goes to the
 *   needle), that attention and NACL's keeps by token of the first asked fact.
 */
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { loadLlama2cCheckpoint } from "../../src/model/checkpoints/llama2c-checkpoint.js";
import { createReferenceCache, referenceForward } from "./llama-forward.js";
import { naclReferenceLayer } from "./nacl-selection.js";

const DIR = fileURLToPath(new URL("../../models/recall/", import.meta.url));
const QUESTION = 502; // " what"
const PERIOD = 296; // "."
const QUESTION_MARK = 298; // "?"

interface Record {
  task: string;
  length: number;
  depth: number;
  prompt_tokens: number[];
  needle_positions: number[];
}

const records = (readFileSync(`${DIR}heldout.jsonl`, "utf8").split("\n").filter((l) => l.trim() !== "").map((l) => JSON.parse(l)) as Record[]).filter(
  (r, i, all) => r.length <= 512 && all.findIndex((o) => o.task === r.task && o.length === r.length && o.depth === r.depth) === i,
);
const weights = loadLlama2cCheckpoint(`${DIR}recall.bin`, "recall");
const { layers, heads, kvHeads } = weights.config;
const group = heads / kvHeads;

type Sums = { [metric: string]: number[][] };
const sums: Sums = {};
// By token of the first asked fact ("the pass key is 7 1 9 3 8." or "the value of owl is 0 5 5 3."), in the retrieval head.
const RETRIEVAL = { layer: 3, head: 1 };
const FACT_TOKENS = 10;
const byOffset = { attention: new Array(FACT_TOKENS).fill(0), kept: new Array(FACT_TOKENS).fill(0) };
const add = (metric: string, l: number, h: number, value: number) => {
  sums[metric] ??= Array.from({ length: layers }, () => new Array(kvHeads).fill(0));
  sums[metric][l][h] += value / records.length;
};

const ranks = (values: readonly number[]) => {
  const order = values.map((_, i) => i).sort((a, b) => values[a] - values[b]);
  const r = new Array(values.length);
  order.forEach((index, rank) => (r[index] = rank));
  return r as number[];
};
const pearson = (a: readonly number[], b: readonly number[]) => {
  const mean = (x: readonly number[]) => x.reduce((s, v) => s + v, 0) / x.length;
  const [ma, mb] = [mean(a), mean(b)];
  let num = 0;
  let da = 0;
  let db = 0;
  a.forEach((_, i) => {
    num += (a[i] - ma) * (b[i] - mb);
    da += (a[i] - ma) ** 2;
    db += (b[i] - mb) ** 2;
  });
  return num / Math.sqrt(da * db);
};

for (const record of records) {
  const tokens = [1, ...record.prompt_tokens];
  const questionStart = tokens.lastIndexOf(QUESTION);
  const questionEnd = tokens.indexOf(QUESTION_MARK, questionStart) + 1;
  const needle = record.needle_positions.flatMap((start) => {
    const end = tokens.indexOf(PERIOD, start) + 1;
    return Array.from({ length: end - start }, (_, i) => start + i);
  });
  const cache = createReferenceCache(weights.config);
  const { attention, queries } = referenceForward(weights, cache, tokens, 0);
  const budget = Math.floor(tokens.length * 0.2);
  for (let l = 0; l < layers; l++) {
    const keys = cache[l].map((entries) => entries.map((e) => e.key));
    const proxies = Array.from({ length: tokens.length - questionStart }, (_, r) => ({ position: questionStart + r, queries: queries[l][questionStart + r] }));
    const causal = naclReferenceLayer({ keys, proxies, sinks: 4, budget, randomShare: 0, causal: true });
    const nonCausal = naclReferenceLayer({ keys, proxies, sinks: 4, budget, randomShare: 0, causal: false });
    const sentenceOnly = naclReferenceLayer({ keys, proxies: proxies.filter((p) => p.position < questionEnd), sinks: 4, budget, randomShare: 0, causal: true });
    for (let h = 0; h < kvHeads; h++) {
      const share = (rows: number[], positions: number[]) => {
        let total = 0;
        for (const row of rows) for (let q = h * group; q < (h + 1) * group; q++) for (const p of positions) total += attention[l][row][q][p];
        return total / (rows.length * group);
      };
      const questionRows = Array.from({ length: tokens.length - questionStart }, (_, r) => questionStart + r);
      add("question → needle", l, h, share(questionRows, needle));
      add("question → BOS", l, h, share(questionRows, [0]));
      add("last token → needle", l, h, share([tokens.length - 1], needle));
      add("last token → BOS", l, h, share([tokens.length - 1], [0]));
      const norms = keys[h].map((k) => Math.sqrt(k.reduce((s, x) => s + x * x, 0)));
      const percentile = (p: number) => norms.filter((n) => n < norms[p]).length / (norms.length - 1);
      add("needle norm percentile", l, h, needle.reduce((s, p) => s + percentile(p), 0) / needle.length);
      add("BOS norm percentile", l, h, percentile(0));
      const context = Array.from({ length: questionStart }, (_, j) => j);
      const paid = context.map((j) => share(questionRows, [j]));
      add("Spearman(-norm, question attention)", l, h, pearson(ranks(context.map((j) => -norms[j])), ranks(paid)));
      const kept = new Set(causal[h].deterministic);
      add("NACL top-k keeps of needle (20%, no random)", l, h, needle.filter((p) => kept.has(p)).length / needle.length);
      if (l === RETRIEVAL.layer && h === RETRIEVAL.head) {
        const start = record.needle_positions[0];
        for (let o = 0; o < FACT_TOKENS; o++) {
          byOffset.attention[o] += share([tokens.length - 1], [start + o]) / records.length;
          byOffset.kept[o] += (kept.has(start + o) ? 1 : 0) / records.length;
        }
      }
      const prefix = Array.from({ length: tokens.length - questionEnd }, (_, i) => questionEnd + i);
      const sentenceKept = new Set(sentenceOnly[h].deterministic);
      add("answer prefix kept, proxies = question sentence (20%, no random)", l, h, prefix.filter((p) => sentenceKept.has(p)).length / prefix.length);
      const other = new Set(nonCausal[h].deterministic);
      add("kept entries changed by non-causal proxies", l, h, causal[h].deterministic.filter((p) => !other.has(p)).length);
    }
  }
}

const cell = (metric: string, value: number) =>
  metric.startsWith("kept entries") ? value.toFixed(2) : metric.startsWith("Spearman") ? value.toFixed(2) : `${(value * 100).toFixed(1)}%`;
const columns = Array.from({ length: layers }, (_, l) => Array.from({ length: kvHeads }, (_, h) => `L${l} H${h}`)).flat();
const out = [
  "# Recall model diagnosis: attention and key norms around the needle",
  "",
  `Made by \`npx tsx test/reference/recall-diagnosis.ts\`: the plain float64 forward pass of \`test/reference/llama-forward.ts\` (independent of kvwarden) on ${records.length} held-out prompts (${[...new Set(records.map((r) => r.length))].join(" and ")} tokens; every task and needle depth, one each). Means over the prompts, per layer (L) and KV head (H). The needle is the asked fact's sentence (about 10 tokens); the question is its ${"\u201c"}what ...? the ... is${"\u201d"} rows; attention shares are over the KV head's ${group} query heads. Norm percentile 0 is the lowest norm (what knorm keeps first), 100% the highest.`,
  "",
  `| metric | ${columns.join(" | ")} |`,
  `|---|${columns.map(() => "---").join("|")}|`,
  ...Object.entries(sums).map(([metric, values]) => `| ${metric} | ${values.flat().map((v) => cell(metric, v)).join(" | ")} |`),
  "",
  `In layer ${RETRIEVAL.layer}, KV head ${RETRIEVAL.head}, by token of the first asked fact (passkey: 4 words \"the pass key is\", 5 digits, the period; multikey and multiquery: 5 words \"the value of owl is\", 4 digits, the period; so the first digit is token 4 or 5):`,
  "",
  `| | ${byOffset.attention.map((_, o) => `token ${o}`).join(" | ")} |`,
  `|---|${byOffset.attention.map(() => "---").join("|")}|`,
  `| last token's attention | ${byOffset.attention.map((v) => `${(v * 100).toFixed(1)}%`).join(" | ")} |`,
  `| kept by NACL's top-k (20%, no random) | ${byOffset.kept.map((v) => `${(v * 100).toFixed(0)}%`).join(" | ")} |`,
  "",
];
process.stdout.write(out.join("\n"));
