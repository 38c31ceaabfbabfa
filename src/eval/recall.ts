import { FinishReason, type EvictionResult, type InfoResponse } from "../gen/kvwarden/v1/kvwarden.js";
import type { KvwardenClient } from "../client/index.js";
import { mapConcurrent } from "./concurrency.js";
import { budgetMinimumOf, describeParams, type PolicyVariant } from "./policy-variants.js";
import type { Progress } from "./progress.js";
import { RECALL_TASKS, type RecallTask, type RecallTaskName } from "./recall-tasks.js";
import { meanRetention, retentionOf, type Retention } from "./retention.js";

/** Query-aware: the question is in the cache when the policy runs. Query-agnostic: it comes after. */
export const RECALL_MODES = ["query-aware", "query-agnostic"] as const;
export type RecallMode = (typeof RECALL_MODES)[number];

export interface RecallOptions {
  tasks: readonly RecallTask[];
  budgets: readonly number[];
  variants: readonly PolicyVariant[];
  window: number;
  concurrency: number;
}

/** Answers right out of asked, for one slice of the tasks. */
export interface Tally {
  correct: number;
  total: number;
}

/** One slice of tasks (a task kind at one prompt length) under one policy, budget and mode. */
export interface RecallGroup extends Tally {
  task: RecallTaskName;
  length: number;
  /** "n/a (budget below minimum N)" when the policy refuses the budget at this length. */
  unavailable?: string;
  /** Correct answers by the asked fact's depth: [depth, correct, total]. */
  byDepth: [number, number, number][];
}

export interface RecallCell {
  label: string;
  keepFraction: number;
  mode: RecallMode;
  /** Over the groups the policy could run. */
  accuracy?: number;
  byTask: Partial<Record<RecallTaskName, number>>;
  /** Entries kept over entries before the eviction, mean over the tasks it ran on. */
  keptFraction?: number;
  /** What the eviction left of the needles and of BOS, mean over the tasks it ran on. */
  retention?: Retention;
  groups: RecallGroup[];
}

export interface RecallReport {
  model: { name: string; layers: number; heads: number; kvHeads: number; contextLength: number; vocabSize: number };
  source: string;
  tasks: number;
  lengths: number[];
  window: number;
  budgets: number[];
  variants: { label: string; policy: string; params: string; proxy?: string }[];
  /** With the full cache. */
  full: { accuracy: number; byTask: Partial<Record<RecallTaskName, number>>; groups: RecallGroup[] };
  cells: RecallCell[];
}

/**
 * Needle tasks answered by greedy decoding and exact match, with the full cache
 * and under each policy, budget and mode. Each task is prefilled once per mode
 * (the whole prompt, and the context alone); every policy and budget then
 * evicts from its own Fork of that prefill.
 */
export async function runRecall(client: KvwardenClient, info: InfoResponse, source: string, options: RecallOptions, progress: Progress): Promise<RecallReport> {
  const model = info.model!;
  const { tasks, concurrency } = options;
  const settings = options.variants.flatMap((variant) =>
    options.budgets.flatMap((keepFraction) => RECALL_MODES.filter((mode) => mode === "query-aware" || !variant.queryAwareOnly).map((mode) => ({ variant, keepFraction, mode }))),
  );
  progress.phase("recall", tasks.length * (1 + settings.length));
  const perTask = await mapConcurrent(tasks, concurrency, async (task) => {
    const bases = { "query-aware": `eval-recall-${task.index}-prompt`, "query-agnostic": `eval-recall-${task.index}-context` } as const;
    await client.prefill({ sequenceId: bases["query-aware"], tokenIds: task.tokens });
    await client.prefill({ sequenceId: bases["query-agnostic"], tokenIds: task.tokens.slice(0, task.questionStart) });
    try {
      const full = await answer(client, bases["query-aware"], `eval-recall-${task.index}-full`, task, "query-aware");
      progress.tick();
      const outcomes: Outcome[] = [];
      for (const { variant, keepFraction, mode } of settings) {
        outcomes.push(await answer(client, bases[mode], `eval-recall-${task.index}-${variant.label}-${keepFraction}-${mode}`, task, mode, variant, keepFraction));
        progress.tick(`${variant.label} @ ${keepFraction} ${mode}`);
      }
      return { full, outcomes };
    } finally {
      for (const base of Object.values(bases)) await client.release(base);
    }
  });
  progress.stop();
  const full = tallyGroups(tasks, perTask.map((t) => t.full));
  // Setting-major, as the cells read them.
  const outcomes = settings.flatMap((_, s) => perTask.map((t) => t.outcomes[s]));

  const cells = settings.map(({ variant, keepFraction, mode }, s): RecallCell => {
    const cellOutcomes = outcomes.slice(s * tasks.length, (s + 1) * tasks.length);
    const groups = tallyGroups(tasks, cellOutcomes);
    const ran = cellOutcomes.filter((o) => o.unavailable === undefined);
    return {
      label: variant.label,
      keepFraction,
      mode,
      ...accuracies(groups),
      keptFraction: ran.length > 0 ? ran.reduce((sum, o) => sum + o.keptFraction, 0) / ran.length : undefined,
      retention: meanRetention(ran.flatMap((o) => (o.retention ? [o.retention] : []))),
      groups,
    };
  });
  const fullAccuracy = accuracies(full);
  return {
    model: { name: model.name, layers: model.layers, heads: model.heads, kvHeads: model.kvHeads, contextLength: model.contextLength, vocabSize: model.vocabSize },
    source,
    tasks: tasks.length,
    lengths: [...new Set(tasks.map((t) => t.length))].sort((a, b) => a - b),
    window: options.window,
    budgets: [...options.budgets],
    variants: options.variants.map((v) => ({
      label: v.label,
      policy: v.policy,
      params: describeParams(v.params),
      ...(v.policy === "nacl" ? { proxy: v.proxy ?? "question-and-prefix" } : {}),
    })),
    full: { accuracy: fullAccuracy.accuracy ?? 0, byTask: fullAccuracy.byTask, groups: full },
    cells,
  };
}

interface Outcome {
  correct: boolean;
  keptFraction: number;
  retention?: Retention;
  /** The minimum budget the policy asked for, when it refused this one. */
  unavailable?: number;
}

/**
 * Decodes one task's answer greedily from a Fork of `base`, the task prefilled
 * for `mode`. Query-aware: the whole prompt is in the cache when it is evicted,
 * with NACL's proxies on the question. Query-agnostic: the context is evicted,
 * then the question fed.
 */
async function answer(
  client: KvwardenClient,
  base: string,
  sequenceId: string,
  task: RecallTask,
  mode: RecallMode,
  variant?: PolicyVariant,
  keepFraction?: number,
): Promise<Outcome> {
  const aware = mode === "query-aware";
  const eviction = variant && {
    policy: variant.policy,
    keepFraction,
    seed: BigInt(task.index),
    ...(aware ? withProxySpan(variant, task) : variant.params),
  };
  let result: EvictionResult | undefined;
  await client.fork(base, sequenceId);
  try {
    try {
      if (eviction) result = (await client.evict({ sequenceId, eviction })).eviction;
    } catch (error) {
      const minimum = budgetMinimumOf(error);
      if (minimum === undefined) throw error;
      return { correct: false, keptFraction: 1, unavailable: minimum };
    }
    const retention = result && retentionOf((await client.stats({ sequenceId, includePositions: true })).sequences[0], task);
    if (!aware) await client.prefill({ sequenceId, tokenIds: task.tokens.slice(task.questionStart) });
    const { tokenIds, finishReason } = await client.generate({ sequenceId, maxNewTokens: task.answer.length });
    // A stop token ends the answer; it is not part of it.
    const generated = finishReason === FinishReason.FINISH_REASON_STOP ? tokenIds.slice(0, -1) : tokenIds;
    return {
      correct: generated.length === task.answer.length && generated.every((id, i) => id === task.answer[i]),
      keptFraction: result ? Number(result.entriesAfter) / Number(result.entriesBefore) : 1,
      retention,
    };
  } finally {
    await client.release(sequenceId);
  }
}

/** The variant's parameters, with NACL's proxy span where the variant puts it (the question and answer prefix by default). */
function withProxySpan(variant: PolicyVariant, task: RecallTask) {
  if (variant.policy !== "nacl") return variant.params;
  const end = task.tokens.length;
  const spans = {
    "question-and-prefix": { start: task.questionStart, end },
    "question-sentence": { start: task.questionStart, end: task.questionEnd },
    "last-token": { start: end - 1, end },
    suffix: undefined,
  };
  const proxySpan = spans[variant.proxy ?? "question-and-prefix"];
  if (!proxySpan) return variant.params;
  const { proxyTokens: _replaced, ...rest } = variant.params;
  return { ...rest, proxySpan };
}

function tallyGroups(tasks: readonly RecallTask[], outcomes: readonly Outcome[]): RecallGroup[] {
  const groups = new Map<string, RecallGroup>();
  tasks.forEach((task, i) => {
    const key = `${task.task}/${task.length}`;
    const group = groups.get(key) ?? { task: task.task, length: task.length, correct: 0, total: 0, byDepth: [] };
    groups.set(key, group);
    const outcome = outcomes[i];
    if (outcome.unavailable !== undefined) {
      group.unavailable = `n/a (budget below minimum ${outcome.unavailable})`;
      return;
    }
    group.total++;
    if (outcome.correct) group.correct++;
    let depth = group.byDepth.find(([d]) => d === task.depth);
    if (!depth) group.byDepth.push((depth = [task.depth, 0, 0]));
    depth[2]++;
    if (outcome.correct) depth[1]++;
  });
  return [...groups.values()].sort((a, b) => RECALL_TASKS.indexOf(a.task) - RECALL_TASKS.indexOf(b.task) || a.length - b.length);
}

function accuracies(groups: readonly RecallGroup[]): { accuracy?: number; byTask: Partial<Record<RecallTaskName, number>> } {
  const rate = (slice: readonly Tally[]) => {
    const total = slice.reduce((sum, g) => sum + g.total, 0);
    return total > 0 ? slice.reduce((sum, g) => sum + g.correct, 0) / total : undefined;
  };
  const byTask: Partial<Record<RecallTaskName, number>> = {};
  for (const task of RECALL_TASKS) {
    const value = rate(groups.filter((g) => g.task === task));
    if (value !== undefined) byTask[task] = value;
  }
  return { accuracy: rate(groups), byTask };
}
