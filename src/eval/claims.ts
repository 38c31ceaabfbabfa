import type { FidelityReport } from "./fidelity.js";
import { budget, change, nats, percent } from "./format.js";
import { RECALL_MODES, type RecallMode, type RecallReport } from "./recall.js";

export type Verdict = "agrees" | "disagrees" | "mixed" | "no difference" | "not measured" | "too few to judge";

/** Below these sample sizes (a --quick run: 3 stories, one recall task per kind) a verdict would be noise. */
export const MIN_STORIES = 8;
export const MIN_RECALL_TASKS = 10;

/** A research claim next to what this project measures. */
export interface Claim {
  topic: string;
  claim: string;
  measured: string;
  verdict: Verdict;
}

/** One like-for-like comparison: is `a` better than `b` here? */
interface Duel {
  /** Positive when a is better. */
  edge: number;
  text: string;
}

/**
 * The published methods' claims (SnapKV, PyramidKV, H2O, TOVA, StreamingLLM, AdaKV, NACL,
 * SimLayerKV, the L2 norm of keys) that the two suites can test, each with its verdict computed from the figures (never written by hand).
 */
export function researchClaims(fidelity: FidelityReport | undefined, recall: RecallReport | undefined): Claim[] {
  const claims: ((look: Figures) => Claim)[] = [
    (look) => duelClaim(look, "NACL vs H2O", "nacl", "h2o", "NACL (ACL 2024): proxy-token scores plus random eviction beat accumulated-attention eviction (H2O-style) at the same budget."),
    naclRetention,
    (look) =>
      duelClaim(look, "Ada-SnapKV vs SnapKV", "ada-snapkv", "snapkv", "Ada-KV (NeurIPS 2025): adaptive per-head budgets beat SnapKV's uniform ones at equal budget, question-aware and question-agnostic."),
    (look) => duelClaim(look, "Ada-Pyramid vs PyramidKV", "ada-pyramidkv", "pyramidkv", "Ada-KV: the same gain over PyramidKV's per-layer budgets (Ada-Pyramid)."),
    knormLanguageModelling,
    knormPasskey,
    (look) =>
      duelClaim(
        look,
        "L2 norm: lowest vs highest norm",
        "knorm",
        "knorm-highest",
        "L2 norm (EMNLP 2024) ablation: keeping the highest-norm keys (knorm with keep_highest_norm) instead of the lowest is much worse.",
      ),
    (look) => duelClaim(look, "L2 norm vs random", "knorm", "random", "If low key norms mark the entries attention needs, keeping the lowest-norm keys beats keeping random ones with the same memory."),
    simLayerKv,
    streamingFloor,
    queryAwareness,
  ];
  // Each claim reads through its own Figures, which records the reports the verdict rests on.
  return claims.map((claimOf) => {
    const look = new Figures(fidelity, recall);
    return judgedOnEnough(claimOf(look), look);
  });
}

/** A verdict drawn from fewer stories or recall tasks than MIN_STORIES / MIN_RECALL_TASKS is withheld; the figures stay. */
function judgedOnEnough(claim: Claim, look: Figures): Claim {
  if (claim.verdict === "not measured") return claim;
  const thin: string[] = [];
  const stories = look.fidelity?.prompts.length ?? 0;
  const tasks = look.recall?.tasks ?? 0;
  if (look.readFidelity && stories < MIN_STORIES) thin.push(`${stories} ${stories === 1 ? "story" : "stories"} (${MIN_STORIES} needed)`);
  if (look.readRecall && tasks < MIN_RECALL_TASKS) thin.push(`${tasks} recall ${tasks === 1 ? "task" : "tasks"} (${MIN_RECALL_TASKS} needed)`);
  if (thin.length === 0) return claim;
  return { ...claim, measured: `${claim.measured} Too few to judge (it would read "${claim.verdict}"): ${thin.join(", ")}.`, verdict: "too few to judge" };
}

/** Reads cells from the reports. */
class Figures {
  /** Whether a fidelity or recall cell was found, i.e. which report a claim's figures come from. */
  readFidelity = false;
  readRecall = false;

  constructor(
    readonly fidelity: FidelityReport | undefined,
    readonly recall: RecallReport | undefined,
  ) {}

  get budgets(): number[] {
    return this.fidelity?.budgets ?? this.recall?.budgets ?? [];
  }

  fidelityCell(label: string, keepFraction: number) {
    const cell = this.fidelity?.cells.find((c) => c.label === label && c.keepFraction === keepFraction && c.quality);
    this.readFidelity ||= cell !== undefined;
    return cell;
  }

  recallCell(label: string, keepFraction: number, mode: RecallMode) {
    const cell = this.recall?.cells.find((c) => c.label === label && c.keepFraction === keepFraction && c.mode === mode && c.accuracy !== undefined);
    this.readRecall ||= cell !== undefined;
    return cell;
  }

  labels(): string[] {
    return [...new Set([...(this.fidelity?.variants ?? []), ...(this.recall?.variants ?? [])].map((v) => v.label))];
  }
}

/** A policy's quality by the share of entries it kept, one point per budget. */
type Curve = { kept: number; value: number }[];

/**
 * The curve's value at `kept`: its own point when one lies within 2 points of
 * it, else linear interpolation between the points around it; undefined
 * outside the curve (never extrapolated).
 */
function atKept(curve: Curve, kept: number): { value: number; interpolated: boolean } | undefined {
  const sorted = [...curve].sort((x, y) => x.kept - y.kept);
  const near = sorted.find((p) => Math.abs(p.kept - kept) <= 0.02);
  if (near) return { value: near.value, interpolated: false };
  const upper = sorted.findIndex((p) => p.kept > kept);
  if (upper <= 0) return undefined;
  const [lo, hi] = [sorted[upper - 1], sorted[upper]];
  return { value: lo.value + ((hi.value - lo.value) * (kept - lo.kept)) / (hi.kept - lo.kept), interpolated: true };
}

/**
 * a against b at equal memory: at each of a's budgets, b's figure at the share
 * of entries a actually kept (knorm and simlayerkv keep whole layers, so more
 * than their budget). Fidelity compares mean KL (within 2% is a tie), recall
 * accuracy per mode.
 */
function duels(look: Figures, a: string, b: string): { found: Duel[]; skipped: string[] } {
  const found: Duel[] = [];
  const skipped: string[] = [];
  const compare = (what: string, f: number, mine: { kept: number; value: number } | undefined, theirs: Curve, lowerIsBetter: boolean, show: (v: number) => string) => {
    if (!mine || theirs.length === 0) return;
    const other = atKept(theirs, mine.kept);
    if (!other) {
      skipped.push(`${what} at ${budget(f)} (${a} kept ${percent(mine.kept, 0)}, outside ${b}'s range)`);
      return;
    }
    const difference = lowerIsBetter ? other.value - mine.value : mine.value - other.value;
    const tie = lowerIsBetter ? Math.abs(difference) <= 0.02 * Math.max(mine.value, other.value) : difference === 0;
    const note = other.interpolated ? ` (${b} interpolated to ${percent(mine.kept, 0)} kept)` : "";
    found.push({ edge: tie ? 0 : difference, text: `${what} ${show(mine.value)} vs ${show(other.value)} at ${budget(f)}${note}` });
  };
  const fidelityCurve = (label: string): Curve =>
    look.budgets.flatMap((f) => {
      const cell = look.fidelityCell(label, f);
      return cell?.quality ? [{ kept: cell.keptFraction ?? 1, value: cell.quality.meanKl }] : [];
    });
  const recallCurve = (label: string, mode: RecallMode): Curve =>
    look.budgets.flatMap((f) => {
      const cell = look.recallCell(label, f, mode);
      return cell?.accuracy !== undefined ? [{ kept: cell.keptFraction ?? 1, value: cell.accuracy }] : [];
    });
  for (const f of look.budgets) {
    const fa = look.fidelityCell(a, f);
    compare("KL", f, fa?.quality && { kept: fa.keptFraction ?? 1, value: fa.quality.meanKl }, fidelityCurve(b), true, nats);
    for (const mode of RECALL_MODES) {
      const ra = look.recallCell(a, f, mode);
      compare(`${mode} accuracy`, f, ra?.accuracy !== undefined ? { kept: ra.keptFraction ?? 1, value: ra.accuracy } : undefined, recallCurve(b, mode), false, (v) => percent(v, 0));
    }
  }
  return { found, skipped };
}

function verdictOf(found: readonly Duel[]): Verdict {
  if (found.length === 0) return "not measured";
  const wins = found.filter((d) => d.edge > 0).length;
  const losses = found.filter((d) => d.edge < 0).length;
  if (wins > 0 && losses === 0) return "agrees";
  if (losses > 0 && wins === 0) return "disagrees";
  return wins === 0 ? "no difference" : "mixed";
}

function duelClaim(look: Figures, topic: string, a: string, b: string, claim: string): Claim {
  const { found, skipped } = duels(look, a, b);
  const wins = found.filter((d) => d.edge > 0).length;
  const losses = found.filter((d) => d.edge < 0).length;
  const tally = found.length > 0 ? `At equal memory, ${a} is better in ${wins}, worse in ${losses}, tied in ${found.length - wins - losses} of ${found.length} comparisons (KL: lower is better). ` : "";
  const unrun = [a, b].filter((label) => !look.labels().includes(label));
  const details =
    found.length > 0
      ? `${found.map((d) => d.text).join("; ")}.`
      : unrun.length > 0
        ? `${unrun.join(" and ")} ${unrun.length > 1 ? "were" : "was"} not run.`
        : `Both ran, but no pair of figures kept comparable memory.`;
  const left = skipped.length > 0 ? ` Not comparable: ${skipped.join("; ")}.` : "";
  return { topic, claim, measured: tally + details + left, verdict: verdictOf(found) };
}

function naclRetention(look: Figures): Claim {
  const claim = "NACL: at 80% eviction (20% budget) performance stays above 95% of the full cache's.";
  const full = look.recall?.full.accuracy;
  const parts: string[] = [];
  let ok = true;
  let measured = false;
  for (const mode of RECALL_MODES) {
    const accuracy = look.recallCell("nacl", 0.2, mode)?.accuracy;
    if (accuracy === undefined || !full) continue;
    measured = true;
    ok &&= accuracy >= 0.95 * full;
    parts.push(`${mode}: ${percent(accuracy, 0)} vs ${percent(full, 0)} full (${percent(accuracy / full, 0)} retained)`);
  }
  const agreement = look.fidelityCell("nacl", 0.2)?.quality;
  if (agreement) parts.push(`fidelity: top-1 agreement ${percent(agreement.top1Agreement)}, perplexity ${change(agreement.perplexityChangePct)}`);
  return { topic: "NACL at 20% budget", claim, measured: parts.join("; ") || "nacl at 20% was not run.", verdict: measured ? (ok ? "agrees" : "disagrees") : "not measured" };
}

function knormLanguageModelling(look: Figures): Claim {
  const claim = "L2 norm: language modelling loses no perplexity with half the cache evicted.";
  const cell = look.fidelityCell("knorm", 0.5);
  if (!cell?.quality) return { topic: "L2 norm at 50%", claim, measured: "knorm at 50% was not run.", verdict: "not measured" };
  return {
    topic: "L2 norm at 50%",
    claim,
    measured: `perplexity ${change(cell.quality.perplexityChangePct)}, top-1 agreement ${percent(cell.quality.top1Agreement)}, KL ${nats(cell.quality.meanKl)}; it kept ${percent(cell.keptFraction ?? 1)} of the entries (layers 0 and 1 are never compressed).`,
    verdict: Math.abs(cell.quality.perplexityChangePct) < 1 ? "agrees" : "disagrees",
  };
}

function knormPasskey(look: Figures): Claim {
  const claim = "L2 norm: passkey retrieval stays perfect at 90% compression (one eviction after the whole prompt, question included).";
  const cell = look.recallCell("knorm", 0.1, "query-aware");
  const full = look.recall?.full.byTask.passkey;
  const accuracy = cell?.byTask.passkey;
  if (accuracy === undefined || full === undefined) return { topic: "L2 norm passkey at 10%", claim, measured: "knorm passkey at 10% was not run.", verdict: "not measured" };
  return {
    topic: "L2 norm passkey at 10%",
    claim,
    measured: `query-aware passkey accuracy ${percent(accuracy, 0)} (full cache ${percent(full, 0)}), keeping ${percent(cell?.keptFraction ?? 1)} of the entries.`,
    verdict: accuracy >= full - 0.05 ? "agrees" : "disagrees",
  };
}

function simLayerKv(look: Figures): Claim {
  const claim =
    "SimLayerKV: many layers are lazy; trimming them at the default threshold (0.9) compresses the cache 5x for a 1.2% drop (with 4-bit KIVI, so about 1.25x from the trimming itself).";
  const parts: string[] = [];
  let best: { compression: number; drop: number } | undefined;
  for (const f of look.budgets) {
    const cell = look.fidelityCell("simlayerkv", f);
    if (!cell?.quality || cell.keptFraction === undefined) continue;
    const layers = look.fidelity!.model.layers;
    const compression = 1 / cell.keptFraction;
    parts.push(
      `${budget(f)}: ${(cell.lazyLayers ?? 0).toFixed(1)} of ${layers} layers lazy, ${compression.toFixed(2)}x, perplexity ${change(cell.quality.perplexityChangePct)}` +
        RECALL_MODES.map((mode) => {
          const r = look.recallCell("simlayerkv", f, mode);
          return r?.accuracy !== undefined ? `, ${mode} ${percent(r.accuracy, 0)}` : "";
        }).join(""),
    );
    if (cell.quality.perplexityChangePct <= 1.2 && (!best || compression > best.compression)) best = { compression, drop: cell.quality.perplexityChangePct };
  }
  if (parts.length === 0) return { topic: "SimLayerKV", claim, measured: "simlayerkv was not run.", verdict: "not measured" };
  const summary = best ? `Most compression within a 1.2% perplexity rise: ${best.compression.toFixed(2)}x. ` : "No budget stayed within a 1.2% perplexity rise. ";
  const verdict: Verdict = best === undefined ? "disagrees" : best.compression >= 1.25 ? "agrees" : "disagrees";
  return { topic: "SimLayerKV", claim, measured: summary + parts.join("; "), verdict };
}

function streamingFloor(look: Figures): Claim {
  const claim = "StreamingLLM (sinks + recent) is the floor that query-agnostic scoring policies should beat: it keeps nothing from the middle of the context.";
  const others = look.labels().filter((l) => l !== "streaming_llm" && l !== "random");
  const below: string[] = [];
  let compared = 0;
  for (const f of look.budgets) {
    const floor = look.recallCell("streaming_llm", f, "query-agnostic")?.accuracy;
    if (floor === undefined) continue;
    for (const label of others) {
      const accuracy = look.recallCell(label, f, "query-agnostic")?.accuracy;
      if (accuracy === undefined) continue;
      compared++;
      if (accuracy < floor) below.push(`${label} ${percent(accuracy, 0)} < ${percent(floor, 0)} at ${budget(f)}`);
    }
  }
  const floors = look.budgets
    .map((f) => [f, look.recallCell("streaming_llm", f, "query-agnostic")?.accuracy] as const)
    .filter((e): e is readonly [number, number] => e[1] !== undefined)
    .map(([f, a]) => `${percent(a, 0)} at ${budget(f)}`);
  if (compared === 0) return { topic: "StreamingLLM floor", claim, measured: "No query-agnostic recall figures.", verdict: "not measured" };
  return {
    topic: "StreamingLLM floor",
    claim,
    measured: `streaming_llm query-agnostic accuracy ${floors.join(", ")}; ${compared - below.length} of ${compared} policy-budget pairs are at or above it${below.length > 0 ? `; below it: ${below.join(", ")}` : ""}.`,
    verdict: below.length === 0 ? "agrees" : below.length < compared ? "mixed" : "disagrees",
  };
}

/** The policies whose scores look at the question when it is in the cache: the SnapKV family's observation window, NACL's proxy span. */
const QUESTION_READERS = ["snapkv", "ada-snapkv", "pyramidkv", "ada-pyramidkv", "nacl"];

function queryAwareness(look: Figures): Claim {
  const claim =
    "SnapKV and kvpress: window-scored policies are strongest when the question is inside the observation window (query-aware); compressing the context alone (query-agnostic) costs them accuracy.";
  const found: Duel[] = [];
  for (const label of QUESTION_READERS) {
    for (const f of look.budgets) {
      const aware = look.recallCell(label, f, "query-aware")?.accuracy;
      const agnostic = look.recallCell(label, f, "query-agnostic")?.accuracy;
      if (aware === undefined || agnostic === undefined) continue;
      found.push({ edge: aware - agnostic, text: `${label} ${percent(aware, 0)} vs ${percent(agnostic, 0)} at ${budget(f)}` });
    }
  }
  if (found.length === 0) return { topic: "Query-aware vs query-agnostic", claim, measured: "No recall figures for the window-scored policies in both modes.", verdict: "not measured" };
  const wins = found.filter((d) => d.edge > 0).length;
  const losses = found.filter((d) => d.edge < 0).length;
  return {
    topic: "Query-aware vs query-agnostic",
    claim,
    measured: `Query-aware accuracy is higher in ${wins}, lower in ${losses}, equal in ${found.length - wins - losses} of ${found.length} policy-budget pairs (query-aware vs query-agnostic): ${found.map((d) => d.text).join("; ")}.`,
    verdict: verdictOf(found),
  };
}
