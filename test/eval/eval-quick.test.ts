import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { silentProgress } from "../../src/eval/progress.js";
import { REPORT_FILES, writeReport } from "../../src/eval/report.js";
import { runEval, type EvalReport } from "../../src/eval/run-eval.js";
import { MODEL_FILES } from "../support/test-model.js";

const RECALL_DIR = fileURLToPath(new URL("../../models/recall/", import.meta.url));
const RECALL_PRESENT = ["recall.bin", "tok.bin", "heldout.jsonl"].every((name) => existsSync(join(RECALL_DIR, name)));

function expectSvg(path: string): void {
  const svg = readFileSync(path, "utf8");
  expect(svg.startsWith("<svg")).toBe(true);
  expect(svg.trimEnd().endsWith("</svg>")).toBe(true);
  expect(svg).toContain('xmlns="http://www.w3.org/2000/svg"');
  // One line per policy: vega draws each as a path.
  expect((svg.match(/<path/g) ?? []).length).toBeGreaterThan(10);
}

describe("kvwarden eval --quick", () => {
  const out = mkdtempSync(join(tmpdir(), "kvwarden-eval-"));
  let report: EvalReport;
  let markdown: string;

  beforeAll(async () => {
    report = await runEval({
      suites: ["fidelity", "recall"],
      quick: true,
      fidelitySidecar: { model: { files: MODEL_FILES } },
      recallDir: RECALL_DIR,
      seed: 1,
      concurrency: 2,
      command: "kvwarden eval --quick",
      version: "test",
      progress: silentProgress,
    });
    await writeReport(report, out);
    markdown = readFileSync(join(out, REPORT_FILES.markdown), "utf8");
  }, 240_000);
  afterAll(() => rmSync(out, { recursive: true, force: true }));

  it("writes the Markdown, the JSON with every figure and the charts", () => {
    const json = JSON.parse(readFileSync(join(out, REPORT_FILES.json), "utf8")) as EvalReport;
    expect(json.command).toBe("kvwarden eval --quick");
    expect(json.quick).toBe(true);
    const fidelity = json.fidelity!;
    expect(fidelity.prompts).toHaveLength(3);
    expect(fidelity.budgets).toEqual([0.2, 0.5]);
    // stories260K's continuations fit whole distributions: the KL is exact.
    expect(fidelity.klExact).toBe(true);
    expect(fidelity.variants.map((v) => v.label)).toEqual(expect.arrayContaining(["streaming_llm", "snapkv", "ada-snapkv", "ada-pyramidkv", "nacl", "knorm", "simlayerkv", "h2o"]));
    expect(fidelity.variants.map((v) => v.label)).not.toContain("none");
    expect(fidelity.cells).toHaveLength(fidelity.variants.length * 2);
    for (const cell of fidelity.cells) {
      const q = cell.quality!;
      expect(q.tokens).toBe(fidelity.full.tokens);
      expect(q.top1Agreement).toBeGreaterThan(0.5);
      expect(q.top1Agreement).toBeLessThanOrEqual(1);
      expect(q.meanKl).toBeGreaterThanOrEqual(-1e-9);
      expect(Number.isFinite(q.perplexityChangePct)).toBe(true);
      expect(cell.perPrompt).toHaveLength(3);
      expect(cell.keptFraction).toBeGreaterThan(0);
    }
    // Fewer entries cost more: streaming_llm at 20% strays further than at 50%.
    const kl = (f: number) => fidelity.cells.find((c) => c.label === "streaming_llm" && c.keepFraction === f)!.quality!.meanKl;
    expect(kl(0.2)).toBeGreaterThan(kl(0.5));
    expectSvg(join(out, REPORT_FILES.fidelityChart));
    expect(json.claims.length).toBeGreaterThanOrEqual(8);
    // A quick run's 3 stories and one recall task per kind are too few for any verdict (MIN_STORIES, MIN_RECALL_TASKS).
    expect(json.claims.every((c) => ["not measured", "too few to judge"].includes(c.verdict))).toBe(true);
    expect(json.claims.some((c) => c.verdict === "too few to judge")).toBe(true);
  });

  it("puts each metric in a Markdown table of policies by budget, and the claims table last", () => {
    expect(markdown).toContain("Made by `kvwarden eval --quick`");
    for (const heading of ["### Perplexity change", "### Top-1 agreement", "### Mean KL", "### Entries actually kept"]) {
      const lines = markdown.slice(markdown.indexOf(heading)).split("\n");
      const first = lines.findIndex((line) => line.startsWith("|"));
      const section = lines.slice(first, lines.indexOf("", first));
      expect(section[0]).toBe("| policy | 20% | 50% |");
      expect(section[1]).toBe("|---|---|---|");
      expect(section.slice(2)).toHaveLength(report.fidelity!.variants.length);
    }
    const claims = markdown.slice(markdown.indexOf("## Research claims"));
    expect(claims).toContain("| topic | claim | measured here | verdict |");
    expect(claims).toContain("| NACL vs H2O |");
    expect(markdown).toContain(`](${REPORT_FILES.fidelityChart})`);
  });

  it.runIf(RECALL_PRESENT)("runs the recall suite on the recall model", () => {
    const recall = report.recall!;
    expect("cells" in recall).toBe(true);
    if (!("cells" in recall)) return;
    // One task per kind at the shortest prompt with the fact in the middle: the committed model answers all three.
    expect(recall.tasks).toBe(3);
    expect(recall.lengths).toEqual([256]);
    expect(recall.full.groups.map((g) => [g.task, g.length, g.byDepth])).toEqual([
      ["passkey", 256, [[0.5, 1, 1]]],
      ["multikey", 256, [[0.5, 1, 1]]],
      ["multiquery", 256, [[0.5, 1, 1]]],
    ]);
    expect(recall.full.accuracy).toBe(1);
    expect(recall.budgets).toEqual([0.2, 0.5]);
    expect(recall.variants.map((v) => v.label)).toEqual(report.fidelity!.variants.map((v) => v.label));
    expect(recall.cells).toHaveLength(recall.variants.length * 2 * 2);
    for (const cell of recall.cells) {
      expect(["query-aware", "query-agnostic"]).toContain(cell.mode);
      expect(cell.groups.reduce((sum, g) => sum + g.total, 0) + cell.groups.filter((g) => g.unavailable).length).toBe(3);
      if (cell.accuracy === undefined) continue;
      expect(cell.accuracy).toBeGreaterThanOrEqual(0);
      expect(cell.accuracy).toBeLessThanOrEqual(1);
      expect(cell.keptFraction).toBeGreaterThan(0);
      expect(cell.keptFraction).toBeLessThanOrEqual(1);
    }
    expectSvg(join(out, REPORT_FILES.recallChart));
    for (const heading of ["### query-aware: accuracy", "### query-agnostic: accuracy", "### Entries actually kept (share of the evicted span"]) {
      const lines = markdown.slice(markdown.indexOf(heading)).split("\n");
      const first = lines.findIndex((line) => line.startsWith("|"));
      expect(lines[first]).toBe("| policy | 20% | 50% |");
      expect(lines.slice(first + 2, lines.indexOf("", first))).toHaveLength(recall.variants.length);
    }
    expect(markdown).toContain(`](${REPORT_FILES.recallChart})`);
    const aware = report.claims.find((c) => c.topic === "Query-aware vs query-agnostic")!;
    expect(aware.verdict).not.toBe("not measured");
    expect(report.claims.find((c) => c.topic === "StreamingLLM floor")!.verdict).not.toBe("not measured");
  });

  it.runIf(!RECALL_PRESENT)("skips the recall suite, saying why, while the recall model is absent", () => {
    expect(report.recall).toEqual({ skipped: expect.stringContaining("recall.bin") });
    expect(markdown).toContain("## Recall suite\n\nSkipped:");
  });
});
