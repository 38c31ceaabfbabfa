import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ABLATION_FILES, writeAblationReport } from "../../src/eval/ablation-report.js";
import { silentProgress } from "../../src/eval/progress.js";
import type { RecallReport } from "../../src/eval/recall.js";
import { retentionOf } from "../../src/eval/retention.js";
import { runEval, type EvalReport } from "../../src/eval/run-eval.js";
import type { RecallTask } from "../../src/eval/recall-tasks.js";
import type { SequenceStats } from "../../src/gen/kvwarden/v1/kvwarden.js";
import { MODEL_FILES } from "../support/test-model.js";

const RECALL_DIR = fileURLToPath(new URL("../../models/recall/", import.meta.url));

describe("retentionOf", () => {
  it("counts, per layer, the needle tokens kept over heads and facts, whole facts, and heads keeping BOS", () => {
    const task = { needles: [{ start: 10, end: 14 }, { start: 20, end: 22 }] } as RecallTask;
    const heads = (...kept: number[][]) => ({ headLengths: kept.map((k) => k.length), headPositions: kept.map((positions) => ({ positions })) });
    const sequence = {
      layers: [heads([0, 10, 11, 12, 13, 20, 21], [1, 10, 20]), heads([0, 5], [0, 12, 13, 21])],
    } as unknown as SequenceStats;
    expect(retentionOf(sequence, task)).toEqual({
      // Layer 0: head 0 holds both facts whole; head 1 holds 1/4 and 1/2. Layer 1: nothing, then 2/4 and 1/2.
      needleTokens: [(1 + 1 + 0.25 + 0.5) / 4, (0 + 0 + 0.5 + 0.5) / 4],
      wholeNeedle: [2 / 4, 0],
      bos: [1 / 2, 1],
    });
  });
});

describe("kvwarden eval --ablations --quick", () => {
  const out = mkdtempSync(join(tmpdir(), "kvwarden-ablations-"));
  let report: EvalReport;
  let recall: RecallReport;
  let markdown: string;

  beforeAll(async () => {
    report = await runEval({
      suites: ["fidelity", "recall"],
      ablations: true,
      quick: true,
      fidelitySidecar: { model: { files: MODEL_FILES } },
      recallDir: RECALL_DIR,
      seed: 1,
      concurrency: 2,
      command: "kvwarden eval --ablations --quick",
      version: "test",
      progress: silentProgress,
    });
    writeAblationReport(report, out);
    markdown = readFileSync(join(out, ABLATION_FILES.markdown), "utf8");
    recall = report.recall as RecallReport;
  }, 240_000);
  afterAll(() => rmSync(out, { recursive: true, force: true }));

  it("runs every ablation variant, at 20% and 50%, without claims; on stories, none that needs a question", () => {
    expect(report.claims).toEqual([]);
    const fidelity = report.fidelity!;
    expect(fidelity.variants.map((v) => v.label)).toEqual(recall.variants.map((v) => v.label).filter((label) => !label.startsWith("nacl-proxy-")));
    expect(fidelity.variants.find((v) => v.label === "nacl-pooled")!.params).toBe("proxy_tokens=8, pooling=max, kernel_size=7");
    expect(fidelity.cells).toHaveLength(fidelity.variants.length * 2);
    expect(recall.budgets).toEqual([0.2, 0.5]);
    expect(recall.variants.map((v) => v.label)).toEqual([
      "snapkv",
      "streaming_llm",
      "nacl",
      "nacl-no-random",
      "nacl-pooled",
      "nacl-pooled-no-random",
      "nacl-max-head",
      "nacl-proxy-question",
      "nacl-proxy-last-token",
      "nacl-proxy-suffix",
      "knorm",
      "knorm-sink",
      "knorm-skip-0",
      "knorm-all-layers",
      "knorm-all-layers-sink",
      "knorm-highest",
      "knorm-highest-all-layers",
    ]);
    expect(recall.variants.find((v) => v.label === "nacl-pooled-no-random")!.params).toBe("proxy_tokens=16, pooling=max, kernel_size=7, random_share=0");
    expect(recall.variants.find((v) => v.label === "nacl-proxy-question")!.proxy).toBe("question-sentence");
    // A proxy span needs the question in the cache: those variants run query-aware only.
    const modes = (label: string) => recall.cells.filter((c) => c.label === label).map((c) => c.mode);
    expect(modes("nacl-proxy-last-token")).toEqual(["query-aware", "query-aware"]);
    expect(modes("nacl")).toEqual(["query-aware", "query-agnostic", "query-aware", "query-agnostic"]);
  });

  it("reads what each eviction left of the needle and of BOS from the kept positions", () => {
    const cell = (label: string, mode = "query-aware", b = 0.2) => recall.cells.find((c) => c.label === label && c.mode === mode && c.keepFraction === b)!;
    for (const c of recall.cells) {
      for (const values of Object.values(c.retention!)) {
        expect(values).toHaveLength(4);
        for (const v of values) expect(v >= 0 && v <= 1).toBe(true);
      }
    }
    // Sinks are kept in every head; knorm's skipped layers keep everything.
    expect(cell("streaming_llm").retention!.bos).toEqual([1, 1, 1, 1]);
    expect(cell("knorm-all-layers-sink").retention!.bos).toEqual([1, 1, 1, 1]);
    expect(cell("knorm").retention!.needleTokens.slice(0, 2)).toEqual([1, 1]);
    expect(cell("knorm-skip-0").retention!.wholeNeedle[0]).toBe(1);
    // Compressing every layer, knorm keeps what the budget says; skipping two of four, much more.
    expect(cell("knorm-all-layers").keptFraction).toBeCloseTo(0.2, 2);
    expect(cell("knorm").keptFraction).toBeGreaterThan(0.55);
  });

  it("writes the accuracy, kept, needle and per-layer tables, a row per variant", () => {
    expect(markdown).toContain("Made by `kvwarden eval --ablations --quick`");
    for (const heading of ["### Accuracy", "### Entries kept", "### What the eviction left of the needle", "### Per layer at 20%", "## Fidelity"]) {
      const lines = markdown.slice(markdown.indexOf(heading)).split("\n");
      const first = lines.findIndex((line) => line.startsWith("|"));
      const variants = heading === "## Fidelity" ? report.fidelity!.variants : recall.variants;
      expect(lines.slice(first + 2, lines.indexOf("", first))).toHaveLength(variants.length);
    }
    expect(markdown).toContain("| nacl-proxy-suffix | nacl | proxy_tokens=16 | last proxy_tokens positions |");
    expect(JSON.parse(readFileSync(join(out, ABLATION_FILES.json), "utf8")).recall.cells).toHaveLength(recall.cells.length);
  });
});
