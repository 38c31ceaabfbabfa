import { describe, expect, it } from "vitest";
import { MIN_RECALL_TASKS, researchClaims } from "../../src/eval/claims.js";
import { policyVariants, selectVariants } from "../../src/eval/policy-variants.js";
import type { RecallCell, RecallMode, RecallReport } from "../../src/eval/recall.js";
import { InfoResponse } from "../../src/gen/kvwarden/v1/kvwarden.js";

const info = InfoResponse.fromPartial({
  policies: [
    { name: "none" },
    { name: "snapkv", parameters: [{ name: "window" }] },
    { name: "adakv", parameters: [{ name: "window" }, { name: "base_policy" }] },
    { name: "streaming_llm" },
  ],
});

describe("policy selection", () => {
  it("runs every policy but none, adakv over snapkv and over pyramidkv", () => {
    expect(policyVariants(info, 16).map((v) => v.label)).toEqual(["snapkv", "ada-snapkv", "ada-pyramidkv", "streaming_llm"]);
    expect(selectVariants(policyVariants(info, 16), ["adakv"]).map((v) => v.label)).toEqual(["ada-snapkv", "ada-pyramidkv"]);
  });

  it("takes none as the full cache alone, and refuses unknown names", () => {
    expect(selectVariants(policyVariants(info, 16), ["none"])).toEqual([]);
    expect(selectVariants(policyVariants(info, 16), ["none", "snapkv"]).map((v) => v.label)).toEqual(["snapkv"]);
    expect(() => selectVariants(policyVariants(info, 16), ["h2o"])).toThrow(/unknown policies h2o/);
  });
});

/** A recall report with one accuracy per policy, budget and mode (every policy keeps what it was given). */
function recallReport(accuracy: Record<string, Partial<Record<RecallMode, number[]>>>, budgets = [0.2, 0.5], full = 1, tasks = 10): RecallReport {
  const cells: RecallCell[] = Object.entries(accuracy).flatMap(([label, modes]) =>
    Object.entries(modes).flatMap(([mode, values]) =>
      budgets.map((keepFraction, i) => ({ label, keepFraction, mode: mode as RecallMode, accuracy: values![i], keptFraction: keepFraction, byTask: {}, groups: [] })),
    ),
  );
  return {
    model: { name: "recall", layers: 4, heads: 8, kvHeads: 2, contextLength: 1024, vocabSize: 509 },
    source: "heldout.jsonl",
    tasks,
    lengths: [256],
    window: 16,
    budgets,
    variants: Object.keys(accuracy).map((label) => ({ label, policy: label, params: "defaults" })),
    full: { accuracy: full, byTask: { passkey: full }, groups: [] },
    cells,
  };
}

describe("research claims from recall figures", () => {
  const claim = (report: RecallReport, topic: string) => researchClaims(undefined, report).find((c) => c.topic === topic)!;

  it("query-aware vs query-agnostic: agrees only when the question helps the window-scored policies", () => {
    const helps = recallReport({ snapkv: { "query-aware": [0.9, 1], "query-agnostic": [0.3, 0.6] }, nacl: { "query-aware": [0.8, 0.9], "query-agnostic": [0.4, 0.9] } });
    const helped = claim(helps, "Query-aware vs query-agnostic");
    expect(helped.verdict).toBe("agrees");
    expect(helped.measured).toContain("higher in 3, lower in 0, equal in 1 of 4");
    expect(helped.measured).toContain("snapkv 90% vs 30% at 20%");

    const hurts = recallReport({ snapkv: { "query-aware": [0.2, 1], "query-agnostic": [0.3, 0.6] } });
    expect(claim(hurts, "Query-aware vs query-agnostic").verdict).toBe("mixed");
    // Policies that do not read the question are not counted.
    const blind = recallReport({ streaming_llm: { "query-aware": [0.9, 1], "query-agnostic": [0.3, 0.6] } });
    expect(claim(blind, "Query-aware vs query-agnostic").verdict).toBe("not measured");
  });

  it("NACL vs H2O compares accuracy at equal memory in each mode", () => {
    const report = recallReport({ nacl: { "query-aware": [0.9, 1], "query-agnostic": [0.5, 0.7] }, h2o: { "query-aware": [0.6, 1], "query-agnostic": [0.6, 0.8] } });
    const duel = claim(report, "NACL vs H2O");
    expect(duel.verdict).toBe("mixed");
    expect(duel.measured).toContain("better in 1, worse in 2, tied in 1 of 4");
  });

  it("StreamingLLM floor: counts the query-agnostic policy-budget pairs below it", () => {
    const report = recallReport({ streaming_llm: { "query-agnostic": [0.4, 0.6] }, snapkv: { "query-agnostic": [0.5, 0.5] }, knorm: { "query-agnostic": [0.4, 0.9] } });
    const floor = claim(report, "StreamingLLM floor");
    expect(floor.verdict).toBe("mixed");
    expect(floor.measured).toContain("3 of 4 policy-budget pairs are at or above it; below it: snapkv 50% < 60% at 50%");
  });

  it("withholds a verdict drawn from fewer recall tasks than MIN_RECALL_TASKS (a --quick run), keeping the figures", () => {
    const figures = { nacl: { "query-aware": [0.9, 1], "query-agnostic": [0.5, 0.7] }, h2o: { "query-aware": [0.6, 1], "query-agnostic": [0.6, 0.8] } };
    expect(MIN_RECALL_TASKS).toBe(10);
    const thin = claim(recallReport(figures, [0.2, 0.5], 1, 3), "NACL vs H2O");
    expect(thin.verdict).toBe("too few to judge");
    expect(thin.measured).toContain("better in 1, worse in 2, tied in 1 of 4");
    expect(thin.measured).toContain('Too few to judge (it would read "mixed"): 3 recall tasks (10 needed).');
    expect(claim(recallReport(figures, [0.2, 0.5], 1, 10), "NACL vs H2O").verdict).toBe("mixed");
    // Nothing to judge stays "not measured".
    expect(claim(recallReport({ nacl: figures.nacl }, [0.2, 0.5], 1, 3), "NACL vs H2O").verdict).toBe("not measured");
  });

  it("tells a duel whose policies both ran but never kept comparable memory from one that was not run", () => {
    // knorm kept 90% and 95%; random's curve spans 10-20%: no point of knorm lies within random's range.
    const report = recallReport({ knorm: { "query-aware": [0.5, 0.6] } }, [0.9, 0.95]);
    report.variants.push({ label: "random", policy: "random", params: "defaults" });
    report.cells.push(...[0.1, 0.2].map((keepFraction) => ({ label: "random", keepFraction, mode: "query-aware" as const, accuracy: 0.4, keptFraction: keepFraction, byTask: {}, groups: [] })));
    const duel = claim(report, "L2 norm vs random");
    expect(duel.measured).toContain("Both ran, but no pair of figures kept comparable memory.");
    expect(duel.measured).not.toContain("not run");
    expect(claim(recallReport({ knorm: { "query-aware": [0.5, 0.6] } }), "L2 norm vs random").measured).toBe("random was not run.");
  });
});
