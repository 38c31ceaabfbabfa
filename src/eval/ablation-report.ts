import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { budget, change, markdownTable as table, nats, percent } from "./format.js";
import { RECALL_MODES, type RecallCell, type RecallMode, type RecallReport } from "./recall.js";
import { RECALL_TASKS } from "./recall-tasks.js";
import type { EvalReport } from "./run-eval.js";

export const ABLATION_FILES = { markdown: "ablations.md", json: "ablations.json" };

/** Writes ablations.md and ablations.json (every figure) into `dir`; returns the paths written. */
export function writeAblationReport(report: EvalReport, dir: string): string[] {
  const recall = report.recall && "cells" in report.recall ? report.recall : undefined;
  if (!recall && !report.fidelity) throw new Error(`no suite ran${report.recall && "skipped" in report.recall ? `: recall skipped, ${report.recall.skipped}` : ""}`);
  mkdirSync(dir, { recursive: true });
  const paths = [join(dir, ABLATION_FILES.json), join(dir, ABLATION_FILES.markdown)];
  writeFileSync(paths[0], JSON.stringify(report, null, 2) + "\n");
  const lines = [
    "# Eviction ablations: NACL and knorm",
    "",
    `Made by \`${report.command}\` (kvwarden ${report.version}, ${report.startedAt}, ${Math.round(report.durationSeconds)} s). Every figure is also in [${ABLATION_FILES.json}](${ABLATION_FILES.json}).`,
    "",
    ...(recall ? recallAblations(recall) : []),
    ...(report.fidelity ? fidelityAblations(report.fidelity) : []),
  ];
  writeFileSync(paths[1], lines.join("\n"));
  return paths;
}

/** Perplexity change, KL and entries kept per variant and budget on the fidelity model. */
function fidelityAblations(f: NonNullable<EvalReport["fidelity"]>): string[] {
  const text = (label: string, b: number) => {
    const cell = f.cells.find((c) => c.label === label && c.keepFraction === b);
    if (!cell) return "-";
    if (!cell.quality) return cell.unavailable ?? "n/a";
    return `${change(cell.quality.perplexityChangePct)}, KL ${nats(cell.quality.meanKl)}, kept ${percent(cell.keptFraction!, 0)}`;
  };
  return [
    `## Fidelity (${f.model.name})`,
    "",
    `${f.prompts.length} stories the model sampled itself, their contexts evicted and continuations teacher-forced, as in the evaluation report (${f.sidecar}); full-cache perplexity ${f.full.perplexity.toFixed(3)}. Each cell: perplexity change, mean KL(full || evicted) in nats${f.klExact ? " (exact)" : " (lower bound)"}, share of the context's entries kept.`,
    "",
    ...table(["variant", "parameters", ...f.budgets.map(budget)], f.variants.map((v) => [v.label, v.params, ...f.budgets.map((b) => text(v.label, b))])),
    "",
  ];
}

/** Accuracy, entries kept and what each eviction left of the needle and BOS per variant on the recall model. */
function recallAblations(r: RecallReport & { sidecar: string }): string[] {
  const find = (label: string, b: number, mode: RecallMode) => r.cells.find((c) => c.label === label && c.keepFraction === b && c.mode === mode);
  const both = (label: string, b: number, text: (cell: RecallCell) => string) =>
    RECALL_MODES.map((mode) => {
      const cell = find(label, b, mode);
      return cell ? text(cell) : "-";
    }).join(" / ");
  const kept = (cell: RecallCell) => (cell.keptFraction === undefined ? "n/a" : percent(cell.keptFraction, 0));
  const accuracy = (cell: RecallCell) => (cell.accuracy === undefined ? "n/a" : percent(cell.accuracy, 0));
  const mean = (values: readonly number[]) => values.reduce((sum, v) => sum + v, 0) / values.length;
  const retained = (pick: (cell: RecallCell) => number[] | undefined) => (cell: RecallCell) => {
    const values = pick(cell);
    return values ? percent(mean(values), 0) : "n/a";
  };
  const layers = Array.from({ length: r.model.layers }, (_, l) => l);
  const tight = r.budgets[0];
  return [
    `## Recall (${r.model.name})`,
    "",
    `Model ${r.model.name} (${r.model.layers} layers, ${r.model.heads} query heads, ${r.model.kvHeads} KV heads), ${r.sidecar}; ${r.tasks} tasks from \`${r.source}\` (prompt lengths ${r.lengths.join(", ")}; ${RECALL_TASKS.join(", ")}).`,
    `Full cache: ${percent(r.full.accuracy)}. Each cell gives query-aware / query-agnostic (\`-\`: a proxy span needs the question in the cache, so it runs query-aware only).`,
    "Query-aware: the whole prompt is prefilled and evicted; NACL's proxies are the proxy span named below. Query-agnostic: the context is evicted, then the question fed; NACL's proxies are the context's last tokens.",
    "",
    ...table(
      ["variant", "policy", "parameters", "NACL proxies, query-aware"],
      r.variants.map((v) => [v.label, v.policy, v.params, v.proxy === undefined ? "" : v.proxy === "suffix" ? "last proxy_tokens positions" : v.proxy]),
    ),
    "",
    "### Accuracy",
    "",
    ...table(["variant", ...r.budgets.map(budget)], r.variants.map((v) => [v.label, ...r.budgets.map((b) => both(v.label, b, accuracy))])),
    "",
    "### Entries kept (share of the evicted span's entries)",
    "",
    ...table(["variant", ...r.budgets.map(budget)], r.variants.map((v) => [v.label, ...r.budgets.map((b) => both(v.label, b, kept))])),
    "",
    "### What the eviction left of the needle (the asked facts' sentences, e.g. \"the pass key is 7 1 9 3 8.\")",
    "",
    "Read from `Stats(include_positions)` right after the eviction: the share of the facts' tokens kept, over every layer and KV head; then the share of (layer, head) pairs that kept a whole fact.",
    "",
    ...table(
      ["variant", ...r.budgets.map((b) => `tokens kept, ${budget(b)}`), ...r.budgets.map((b) => `whole fact, ${budget(b)}`)],
      r.variants.map((v) => [
        v.label,
        ...r.budgets.map((b) => both(v.label, b, retained((c) => c.retention?.needleTokens))),
        ...r.budgets.map((b) => both(v.label, b, retained((c) => c.retention?.wholeNeedle))),
      ]),
    ),
    "",
    `### Per layer at ${budget(tight)}, query-aware: needle tokens kept, and KV heads keeping BOS (the attention sink)`,
    "",
    ...table(
      ["variant", ...layers.map((l) => `needle, layer ${l}`), ...layers.map((l) => `BOS, layer ${l}`)],
      r.variants.map((v) => {
        const retention = find(v.label, tight, "query-aware")?.retention;
        return [
          v.label,
          ...layers.map((l) => (retention ? percent(retention.needleTokens[l], 0) : "n/a")),
          ...layers.map((l) => (retention ? percent(retention.bos[l], 0) : "n/a")),
        ];
      }),
    ),
    "",
  ];
}
