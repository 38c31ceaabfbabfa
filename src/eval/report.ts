import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { lineChartSvg, type ChartPoint } from "./chart.js";
import type { FidelityReport } from "./fidelity.js";
import { budget, change, markdownTable as table, nats, percent } from "./format.js";
import { RECALL_MODES, type RecallCell, type RecallGroup, type RecallReport } from "./recall.js";
import { RECALL_TASKS } from "./recall-tasks.js";
import type { EvalReport } from "./run-eval.js";

/** The files a report is written to, inside the output folder. */
export const REPORT_FILES = { markdown: "report.md", json: "report.json", fidelityChart: "fidelity.svg", recallChart: "recall.svg" };

/** Writes report.md, report.json and a chart per suite that ran into `dir`; returns the paths written. */
export async function writeReport(report: EvalReport, dir: string): Promise<string[]> {
  mkdirSync(dir, { recursive: true });
  const written: string[] = [];
  const write = (name: string, content: string) => {
    writeFileSync(join(dir, name), content);
    written.push(join(dir, name));
  };
  if (report.fidelity) write(REPORT_FILES.fidelityChart, await fidelityChart(report.fidelity));
  if (report.recall && "cells" in report.recall) write(REPORT_FILES.recallChart, await recallChart(report.recall));
  write(REPORT_FILES.json, JSON.stringify(report, null, 2) + "\n");
  write(REPORT_FILES.markdown, markdown(report));
  return written;
}

function markdown(report: EvalReport): string {
  const lines = [
    "# kvwarden evaluation",
    "",
    `Made by \`${report.command}\` (kvwarden ${report.version}, ${report.startedAt}, ${Math.round(report.durationSeconds)} s${report.quick ? ", quick run" : ""}).`,
    `Every figure is also in [${REPORT_FILES.json}](${REPORT_FILES.json}).`,
    "",
  ];
  if (report.fidelity) lines.push(...fidelitySection(report.fidelity));
  if (report.recall) lines.push(...("cells" in report.recall ? recallSection(report.recall) : ["## Recall suite", "", `Skipped: ${report.recall.skipped}.`, ""]));
  lines.push("## Research claims next to what kvwarden measures", "");
  lines.push(
    "Verdicts are computed from the figures above. A duel counts the fidelity KL at each budget (a 2% difference or less is a tie) and the recall accuracy at each budget and mode.",
    "",
  );
  lines.push(...table(["topic", "claim", "measured here", "verdict"], report.claims.map((c) => [c.topic, c.claim, c.measured, `**${c.verdict}**`])), "");
  return lines.join("\n");
}

function fidelitySection(f: NonNullable<EvalReport["fidelity"]>): string[] {
  const contexts = f.prompts.map((p) => p.contextTokens);
  const continuations = f.prompts.map((p) => p.continuationTokens);
  const grid = (value: (cell: FidelityReport["cells"][number]) => string) =>
    table(
      ["policy", ...f.budgets.map(budget)],
      f.variants.map((v) => [v.label, ...f.budgets.map((b) => {
        const cell = f.cells.find((c) => c.label === v.label && c.keepFraction === b);
        return !cell ? "" : cell.unavailable ?? value(cell);
      })]),
    );
  return [
    "## Fidelity suite",
    "",
    `Model ${f.model.name} (${f.model.layers} layers, ${f.model.heads} query heads, ${f.model.kvHeads} KV heads, context ${f.model.contextLength}), ${f.sidecar}.`,
    "",
    `Prompts: ${f.prompts.length} stories the model sampled itself from BOS (temperature 1, seeds from ${f.firstSeed} up, keeping those that ran to at least ${f.shape.minTokens} tokens, at most ${f.shape.maxTokens}).`,
    `Each is split into a context of ${range(contexts)} tokens (BOS included), which is prefilled and evicted with \`keep_fraction\` f (budget C = floor(${contexts[0]} f) entries per KV head per layer), and a continuation of ${range(continuations)} tokens, which is teacher-forced over that cache with \`Prefill(return_logprobs, top_logprobs=${f.topLogprobs}${f.klExact ? ", return_distribution" : ""})\`.`,
    `The same continuation over the full cache has perplexity ${f.full.perplexity.toFixed(3)} (${f.full.tokens} tokens).`,
    "",
    f.klExact
      ? `KL(full || evicted) is exact: both sides' whole next-token distributions (${f.model.vocabSize} log-probabilities per position) come back from \`return_distribution\`.`
      : `**KL is a lower bound.** The continuations are too long for whole distributions within the API's limit per call, so it uses the top ${f.topLogprobs} alternatives per position: the probabilities of the tokens both sides list (and of the fed token) are kept and every other token is lumped into one tail bucket per side; that is the KL of a coarsening of both distributions, never more than the true KL. The full cache's top ${f.topLogprobs} hold ${percent(f.full.meanTopMass)} of the probability on average.`,
    "",
    `Policies, with parameters sized for this model where the defaults do not fit (the default window of 32 needs C >= 33, more than 10% of a ${contexts[0]}-token context):`,
    "",
    ...table(["policy", "runs as", "parameters"], f.variants.map((v) => [v.label, v.policy, v.params])),
    "",
    "NACL and random draw with the story's seed.",
    "",
    "### Perplexity change against the full cache (lower is better)",
    "",
    ...grid((c) => change(c.quality!.perplexityChangePct)),
    "",
    "### Top-1 agreement with the full cache (higher is better)",
    "",
    ...grid((c) => percent(c.quality!.top1Agreement)),
    "",
    `### Mean KL(full || evicted) per token, nats (${f.klExact ? "exact" : "lower bound"}; lower is better)`,
    "",
    ...grid((c) => nats(c.quality!.meanKl)),
    "",
    "### Entries actually kept (share of the context's KV entries)",
    "",
    "knorm never compresses layers 0 and 1; simlayerkv compresses only the layers it judges lazy (count in brackets).",
    "",
    ...grid((c) => percent(c.keptFraction!) + (c.lazyLayers ? ` (${c.lazyLayers.toFixed(1)} lazy)` : "")),
    "",
    `![Fidelity against entries kept](${REPORT_FILES.fidelityChart})`,
    "",
  ];
}

function recallSection(r: NonNullable<Extract<EvalReport["recall"], { cells: unknown }>>): string[] {
  const cellText = (cell: RecallCell | undefined) => {
    if (!cell) return "";
    if (cell.accuracy === undefined) return cell.groups.find((g) => g.unavailable)?.unavailable ?? "n/a";
    const tasks = RECALL_TASKS.map((t) => (cell.byTask[t] === undefined ? "-" : (cell.byTask[t]! * 100).toFixed(0))).join("/");
    const refused = cell.groups.filter((g) => g.unavailable).map((g) => `${g.task} ${g.length}`);
    return `${percent(cell.accuracy, 0)} (${tasks})${refused.length > 0 ? `; n/a at ${refused.join(", ")}` : ""}`;
  };
  const lines = [
    "## Recall suite",
    "",
    `Model ${r.model.name} (${r.model.layers} layers, ${r.model.heads} query heads, ${r.model.kvHeads} KV heads, context ${r.model.contextLength}), ${r.sidecar}.`,
    "",
    `Tasks: ${r.tasks} from \`${r.source}\` (prompt lengths ${r.lengths.join(", ")}; ${RECALL_TASKS.join(", ")}). The answer is decoded greedily and must match exactly.`,
    "Query-aware: the whole prompt, question included, is prefilled and evicted at once (NACL's proxy span is the question). Query-agnostic: the context is prefilled and evicted, then the question is fed.",
    `Windowed policies use a window (NACL: proxy tokens) of ${r.window}: the question and answer prefix take 10-16 tokens.`,
    "",
    ...table(["policy", "runs as", "parameters"], r.variants.map((v) => [v.label, v.policy, v.params])),
    "",
    `Full cache: ${percent(r.full.accuracy)} (${RECALL_TASKS.map((t) => `${t} ${r.full.byTask[t] === undefined ? "-" : percent(r.full.byTask[t]!, 0)}`).join(", ")}).`,
    "",
    ...table(["task", "prompt tokens", "correct", "by depth of the asked fact"], r.full.groups.map((g) => [g.task, String(g.length), `${g.correct}/${g.total}`, depthText(g.byDepth)])),
    "",
  ];
  const find = (label: string, b: number, mode: string) => r.cells.find((c) => c.label === label && c.keepFraction === b && c.mode === mode);
  for (const mode of RECALL_MODES) {
    lines.push(`### ${mode}: accuracy (all tasks, then ${RECALL_TASKS.join("/")} in percent)`, "");
    lines.push(...table(["policy", ...r.budgets.map(budget)], r.variants.map((v) => [v.label, ...r.budgets.map((b) => cellText(find(v.label, b, mode)))])), "");
  }
  lines.push("### Entries actually kept (share of the evicted span's KV entries, mean over the tasks; query-aware / query-agnostic)", "");
  lines.push(
    "Query-aware evicts over the whole prompt, query-agnostic over the context before the question. knorm never compresses layers 0 and 1; simlayerkv compresses only the layers it judges lazy.",
    "",
  );
  const kept = (cell: RecallCell | undefined) => (cell?.keptFraction === undefined ? "n/a" : percent(cell.keptFraction));
  lines.push(...table(["policy", ...r.budgets.map(budget)], r.variants.map((v) => [v.label, ...r.budgets.map((b) => `${kept(find(v.label, b, "query-aware"))} / ${kept(find(v.label, b, "query-agnostic"))}`)])), "");
  // Where the needle sits and how long the prompt is matter most at a tight budget.
  const tight = r.budgets.includes(0.2) ? 0.2 : r.budgets[0];
  const depths = [...new Set(r.full.groups.flatMap((g) => g.byDepth.map(([d]) => d)))].sort((a, b) => a - b);
  const rate = (tallies: readonly [number, number][]) => {
    const total = tallies.reduce((sum, [, t]) => sum + t, 0);
    return total > 0 ? percent(tallies.reduce((sum, [c]) => sum + c, 0) / total, 0) : "n/a";
  };
  const byLength = (groups: readonly RecallGroup[], length: number) => rate(groups.filter((g) => g.length === length).map((g) => [g.correct, g.total]));
  const byDepth = (groups: readonly RecallGroup[], depth: number) => rate(groups.flatMap((g) => g.byDepth.filter(([d]) => d === depth).map(([, c, t]) => [c, t] as [number, number])));
  lines.push(`### Accuracy by prompt length and by depth of the asked fact, at ${budget(tight)} (all tasks)`, "");
  const headers = ["policy", "mode", ...r.lengths.map((l) => `${l} tokens`), ...depths.map((d) => `depth ${d}`)];
  const rows = [["full cache", "", ...r.lengths.map((l) => byLength(r.full.groups, l)), ...depths.map((d) => byDepth(r.full.groups, d))]];
  for (const v of r.variants) {
    for (const mode of RECALL_MODES) {
      const groups = find(v.label, tight, mode)?.groups ?? [];
      rows.push([v.label, mode, ...r.lengths.map((l) => byLength(groups, l)), ...depths.map((d) => byDepth(groups, d))]);
    }
  }
  lines.push(...table(headers, rows), "");
  lines.push(`![Recall accuracy against entries kept](${REPORT_FILES.recallChart})`, "");
  return lines;
}

/** Correct answers by depth of the asked fact, e.g. "0: 2/2, 0.5: 1/2". */
function depthText(byDepth: readonly [number, number, number][]): string {
  return [...byDepth]
    .sort((a, b) => a[0] - b[0])
    .map(([depth, correct, total]) => `${depth}: ${correct}/${total}`)
    .join(", ");
}

function range(values: readonly number[]): string {
  const min = Math.min(...values);
  const max = Math.max(...values);
  return min === max ? String(min) : `${min}-${max}`;
}

function fidelityChart(f: FidelityReport): Promise<string> {
  const panels = ["perplexity change (%)", "top-1 agreement", `mean KL (nats${f.klExact ? "" : ", lower bound"})`];
  const points: ChartPoint[] = f.cells.flatMap((c) =>
    c.quality
      ? [
          { policy: c.label, kept: c.keptFraction!, panel: panels[0], value: c.quality.perplexityChangePct },
          { policy: c.label, kept: c.keptFraction!, panel: panels[1], value: c.quality.top1Agreement },
          { policy: c.label, kept: c.keptFraction!, panel: panels[2], value: c.quality.meanKl },
        ]
      : [],
  );
  return lineChartSvg(`Fidelity, model ${f.model.name}: continuation over the evicted cache vs the full cache`, points, { panels, xTitle: "share of KV entries kept" });
}

function recallChart(r: RecallReport): Promise<string> {
  const points: ChartPoint[] = r.cells.flatMap((c) =>
    c.accuracy !== undefined && c.keptFraction !== undefined ? [{ policy: c.label, kept: c.keptFraction, panel: c.mode, value: c.accuracy }] : [],
  );
  return lineChartSvg(`Needle recall, model ${r.model.name}: exact-match accuracy (dashed: full cache, ${percent(r.full.accuracy, 0)})`, points, {
    panels: RECALL_MODES,
    xTitle: "share of KV entries kept",
    yDomain: [0, 1],
    reference: r.full.accuracy,
  });
}
