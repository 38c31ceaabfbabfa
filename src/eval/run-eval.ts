import { existsSync } from "node:fs";
import { join, relative } from "node:path";
import type { InfoResponse } from "../gen/kvwarden/v1/kvwarden.js";
import { Llama2cTokenizer } from "../model/tokenizers/llama2c-tokenizer.js";
import { researchClaims, type Claim } from "./claims.js";
import { runFidelity, type FidelityReport } from "./fidelity.js";
import { ablationVariants } from "./ablation-variants.js";
import { policyVariants, selectVariants, type PolicyVariant } from "./policy-variants.js";
import type { Progress } from "./progress.js";
import { runRecall, type RecallReport } from "./recall.js";
import { loadRecallTasks, selectRecallTasks } from "./recall-tasks.js";
import { openSidecar, type SidecarChoice } from "./sidecar.js";

export const SUITES = ["fidelity", "recall"] as const;
export type Suite = (typeof SUITES)[number];

export const DEFAULT_BUDGETS = [0.1, 0.2, 0.35, 0.5];
const QUICK_BUDGETS = [0.2, 0.5];
/** The ablations' budgets: NACL's reference 20% (its "80% eviction") and 50%. */
export const ABLATION_BUDGETS = [0.2, 0.5];

// Windowed policies' window (SnapKV family) or proxy count (NACL), per suite. Fidelity: KVCache-Factory's
// runner value; the smallest budget of a 320-token context (32 entries) still leaves 24 entries to select.
// Recall: the question and answer prefix take 10-16 tokens, so a window of 16 observes the question itself.
const FIDELITY_WINDOW = 8;
const RECALL_WINDOW = 16;

export interface EvalOptions {
  suites: readonly Suite[];
  quick: boolean;
  /** The language model for the fidelity suite: a running sidecar or one started here. */
  fidelitySidecar: SidecarChoice;
  /** Folder with recall.bin, tok.bin and heldout.jsonl. */
  recallDir: string;
  /** A running sidecar serving the recall model; absent = start one here from recallDir. */
  recallTarget?: string;
  /** Bearer token for the running sidecars, if they require one. */
  token?: string;
  /** Policy labels or names; absent = every policy the sidecar offers but none (with `ablations`, every ablation variant). */
  policies?: readonly string[];
  /** Run the suites on the ablation variants (ablation-variants.ts) instead of one variant per policy; no claims. */
  ablations?: boolean;
  /** keep_fraction values; absent = DEFAULT_BUDGETS (quick: 0.2 and 0.5). */
  budgets?: readonly number[];
  /** Fidelity stories; absent = 32 (quick: 3). */
  prompts?: number;
  /** Recall tasks per task kind, prompt length and depth; absent = 2 (quick: 1, shortest length and middle depth only). */
  recallPerGroup?: number;
  seed: number;
  /** Requests in flight at once. */
  concurrency: number;
  /** The command line, for the report. */
  command: string;
  version: string;
  progress: Progress;
}

export interface EvalReport {
  command: string;
  version: string;
  quick: boolean;
  startedAt: string;
  durationSeconds: number;
  fidelity?: FidelityReport & { sidecar: string };
  recall?: (RecallReport & { sidecar: string }) | { skipped: string };
  claims: Claim[];
}

/** Runs the chosen suites and gathers every figure. */
export async function runEval(options: EvalOptions): Promise<EvalReport> {
  const started = Date.now();
  const budgets = options.budgets ?? (options.ablations ? ABLATION_BUDGETS : options.quick ? QUICK_BUDGETS : DEFAULT_BUDGETS);
  const fidelity = options.suites.includes("fidelity") ? await fidelitySuite(options, budgets) : undefined;
  const recall = options.suites.includes("recall") ? await recallSuite(options, budgets) : undefined;
  return {
    command: options.command,
    version: options.version,
    quick: options.quick,
    startedAt: new Date(started).toISOString(),
    durationSeconds: (Date.now() - started) / 1000,
    fidelity,
    recall,
    claims: options.ablations ? [] : researchClaims(fidelity, recall && "cells" in recall ? recall : undefined),
  };
}

async function fidelitySuite(options: EvalOptions, budgets: readonly number[]): Promise<EvalReport["fidelity"]> {
  const sidecar = await openSidecar(options.fidelitySidecar);
  try {
    const info = await sidecar.client.info();
    const report = await runFidelity(
      sidecar.client,
      info,
      {
        prompts: options.prompts ?? (options.quick ? 3 : 32),
        budgets,
        firstSeed: options.seed,
        // A proxy span on the question means nothing on stories: those ablation variants are recall-only.
        variants: options.ablations
          ? pick(ablationVariants(info, FIDELITY_WINDOW).filter((v) => !v.queryAwareOnly), options.policies)
          : variantsFor(info, FIDELITY_WINDOW, options.policies),
        window: FIDELITY_WINDOW,
        concurrency: options.concurrency,
      },
      options.progress,
    );
    return { sidecar: sidecar.description, ...report };
  } finally {
    await sidecar.close();
  }
}

async function recallSuite(options: EvalOptions, budgets: readonly number[]): Promise<EvalReport["recall"]> {
  const files = { modelPath: join(options.recallDir, "recall.bin"), tokenizerPath: join(options.recallDir, "tok.bin") };
  const heldout = join(options.recallDir, "heldout.jsonl");
  const needed = options.recallTarget ? [files.tokenizerPath, heldout] : [files.modelPath, files.tokenizerPath, heldout];
  const missing = needed.filter((path) => !existsSync(path));
  if (missing.length > 0) return { skipped: `the recall model's files are missing: ${missing.join(", ")}` };

  const sidecar = await openSidecar(options.recallTarget ? { target: options.recallTarget, token: options.token } : { model: { files } });
  try {
    const info = await sidecar.client.info();
    const model = info.model!;
    const tokenizer = Llama2cTokenizer.load(files.tokenizerPath, model.vocabSize);
    // "?" and "." follow a word without a space; alone, the tokenizer would put one before them.
    const [question, questionMark, ...more] = tokenizer.encode("what?");
    const [, period, ...rest] = tokenizer.encode("what.");
    if (more.length + rest.length > 0 || question === undefined || questionMark === undefined || period === undefined) {
      throw new Error(`${files.tokenizerPath}: "what", "?" and "." are not one token each; is this the recall tokenizer?`);
    }
    const all = loadRecallTasks(heldout, model.bosTokenId, { question, questionMark, period });
    // Quick: one task per kind, at the shortest length with the needle in the middle.
    const depths = [...new Set(all.map((t) => t.depth))].sort((a, b) => a - b);
    const tasks = selectRecallTasks(all, {
      perGroup: options.recallPerGroup ?? (options.quick ? 1 : 2),
      lengths: options.quick ? [Math.min(...all.map((t) => t.length))] : undefined,
      depths: options.quick ? [depths[Math.floor(depths.length / 2)]] : undefined,
    });
    const report = await runRecall(
      sidecar.client,
      info,
      relative(process.cwd(), heldout),
      {
        tasks,
        budgets,
        variants: options.ablations ? pick(ablationVariants(info, RECALL_WINDOW), options.policies) : variantsFor(info, RECALL_WINDOW, options.policies),
        window: RECALL_WINDOW,
        concurrency: options.concurrency,
      },
      options.progress,
    );
    return { sidecar: sidecar.description, ...report };
  } finally {
    await sidecar.close();
  }
}

function variantsFor(info: InfoResponse, window: number, policies: readonly string[] | undefined) {
  return pick(policyVariants(info, window), policies);
}

function pick(variants: PolicyVariant[], policies: readonly string[] | undefined) {
  return policies ? selectVariants(variants, policies) : variants;
}
