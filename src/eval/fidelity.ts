import type { EvictionResult, EvictionSpec, InfoResponse, TokenLogprob } from "../gen/kvwarden/v1/kvwarden.js";
import type { KvwardenClient } from "../client/index.js";
import type { DeepPartial } from "../gen/kvwarden/v1/kvwarden.js";
import { mapConcurrent } from "./concurrency.js";
import { comparePositions, summarise, type PositionComparison, type QualitySummary, type TokenScore } from "./metrics.js";
import { budgetMinimumOf, describeParams, type PolicyVariant } from "./policy-variants.js";
import type { Progress } from "./progress.js";
import { MAX_DISTRIBUTION_BYTES } from "../engine/engine.js";
import { sampleStories, storyShape, type StoryPrompt, type StoryShape } from "./story-prompts.js";

/** The API's largest top_logprobs: the KL sees this many alternatives per position. */
export const TOP_LOGPROBS = 20;

export interface FidelityOptions {
  prompts: number;
  /** keep_fraction values. */
  budgets: readonly number[];
  firstSeed: number;
  variants: readonly PolicyVariant[];
  /** The window the variants were sized with (for the report). */
  window: number;
  concurrency: number;
}

/** One policy at one budget, over every prompt. */
export interface FidelityCell {
  label: string;
  keepFraction: number;
  /** Budget C the sidecar resolved (entries per KV head per layer). */
  budgetTokens?: number;
  /** "n/a (budget below minimum N)" when the policy refuses the budget. */
  unavailable?: string;
  quality?: QualitySummary;
  /** Entries kept over entries before the eviction, mean over prompts (SimLayerKV keeps whole layers). */
  keptFraction?: number;
  /** Mean number of layers judged lazy (SimLayerKV). */
  lazyLayers?: number;
  perPrompt?: (QualitySummary & { seed: number })[];
}

export interface FidelityReport {
  model: { name: string; layers: number; heads: number; kvHeads: number; contextLength: number; vocabSize: number };
  shape: StoryShape;
  prompts: { seed: number; contextTokens: number; continuationTokens: number }[];
  firstSeed: number;
  topLogprobs: number;
  /** KL over whole next-token distributions (Prefill return_distribution), not a top-list lower bound. */
  klExact: boolean;
  window: number;
  budgets: number[];
  variants: { label: string; policy: string; params: string }[];
  /** The continuations scored with the full cache. */
  full: { tokens: number; perplexity: number; meanTopMass: number };
  cells: FidelityCell[];
}

/** One story under one policy and budget: its comparison, or the minimum budget the policy asked for. */
type Run = { compared: PositionComparison[]; eviction?: EvictionResult } | { minimum: number };

/**
 * Teacher-forces each story's continuation over the full cache and over the
 * cache each policy leaves of its context at each budget, and compares the
 * next-token distributions position by position.
 */
export async function runFidelity(client: KvwardenClient, info: InfoResponse, options: FidelityOptions, progress: Progress): Promise<FidelityReport> {
  const model = info.model!;
  const shape = storyShape(model.contextLength);
  const { concurrency } = options;
  // Whole distributions (exact KL) whenever a continuation's fit the API's limit per call.
  const wholeDistributions = (continuation: readonly number[]) => continuation.length * model.vocabSize * 4 <= MAX_DISTRIBUTION_BYTES;
  progress.phase("fidelity: sampling stories", options.prompts);
  const stories = await sampleStories(client, { count: options.prompts, firstSeed: options.firstSeed, bosTokenId: model.bosTokenId, shape, concurrency }, () =>
    progress.tick(),
  );

  // Each story's context is prefilled once; the full cache and every policy and budget score from their own Fork of it.
  const settings = options.variants.flatMap((variant) => options.budgets.map((keepFraction) => ({ variant, keepFraction })));
  progress.phase("fidelity: full cache and policies", stories.length * (1 + settings.length));
  const perStory = await mapConcurrent(stories, concurrency, async (story) => {
    const base = `eval-context-${story.seed}`;
    await client.prefill({ sequenceId: base, tokenIds: story.context });
    try {
      const score = (sequenceId: string, eviction?: DeepPartial<EvictionSpec>) =>
        scoreContinuation(client, base, sequenceId, story, wholeDistributions(story.continuation), eviction);
      const { scores: full } = await score(`eval-full-${story.seed}`);
      progress.tick();
      const runs: Run[] = [];
      for (const { variant, keepFraction } of settings) {
        const eviction = { policy: variant.policy, keepFraction, seed: BigInt(story.seed), ...variant.params };
        try {
          const scored = await score(`eval-${variant.label}-${keepFraction}-${story.seed}`, eviction);
          runs.push({ compared: comparePositions(full, scored.scores), eviction: scored.eviction });
        } catch (error) {
          const minimum = budgetMinimumOf(error);
          if (minimum === undefined) throw error;
          runs.push({ minimum });
        } finally {
          progress.tick(`${variant.label} @ ${keepFraction}`);
        }
      }
      return { full, runs };
    } finally {
      await client.release(base);
    }
  });
  progress.stop();
  const full = perStory.map((story) => story.full);
  const cells = settings.map(({ variant, keepFraction }, s) => cellOf(variant.label, keepFraction, stories, perStory.map((story) => story.runs[s])));
  const fullSummary = summarise(full.flatMap((scores) => comparePositions(scores, scores)));
  return {
    model: { name: model.name, layers: model.layers, heads: model.heads, kvHeads: model.kvHeads, contextLength: model.contextLength, vocabSize: model.vocabSize },
    shape,
    prompts: stories.map((s) => ({ seed: s.seed, contextTokens: s.context.length, continuationTokens: s.continuation.length })),
    firstSeed: options.firstSeed,
    topLogprobs: TOP_LOGPROBS,
    klExact: fullSummary.klExact && cells.every((c) => c.quality?.klExact ?? true),
    window: options.window,
    budgets: [...options.budgets],
    variants: options.variants.map((v) => ({ label: v.label, policy: v.policy, params: describeParams(v.params) })),
    full: { tokens: fullSummary.tokens, perplexity: fullSummary.perplexityFull, meanTopMass: fullSummary.meanFullTopMass },
    cells,
  };
}

function cellOf(label: string, keepFraction: number, stories: readonly StoryPrompt[], runs: readonly Run[]): FidelityCell {
  const refused = runs.find((run) => "minimum" in run);
  // Every context has the same length, so a budget refused for one prompt is refused for all.
  if (refused && "minimum" in refused) return { label, keepFraction, unavailable: `n/a (budget below minimum ${refused.minimum})` };
  const done = runs as Extract<Run, { compared: unknown }>[];
  const mean = (value: (run: (typeof done)[number]) => number) => done.reduce((sum, run) => sum + value(run), 0) / done.length;
  return {
    label,
    keepFraction,
    budgetTokens: done[0].eviction?.budgetTokens,
    quality: summarise(done.flatMap((run) => run.compared)),
    keptFraction: mean((run) => (run.eviction ? Number(run.eviction.entriesAfter) / Number(run.eviction.entriesBefore) : 1)),
    lazyLayers: mean((run) => run.eviction?.lazyLayers.length ?? 0),
    perPrompt: done.map((run, i) => ({ seed: stories[i].seed, ...summarise(run.compared) })),
  };
}

/** Forks the prefilled context `base` (evicting if asked), then feeds the continuation and returns its scores. */
async function scoreContinuation(
  client: KvwardenClient,
  base: string,
  sequenceId: string,
  story: StoryPrompt,
  returnDistribution: boolean,
  eviction?: DeepPartial<EvictionSpec>,
) {
  await client.fork(base, sequenceId);
  try {
    const evicted = eviction && (await client.evict({ sequenceId, eviction }));
    const scored = await client.prefill({ sequenceId, tokenIds: story.continuation, returnLogprobs: true, topLogprobs: TOP_LOGPROBS, returnDistribution });
    return { scores: scored.logprobs.map(tokenScore), eviction: evicted?.eviction };
  } finally {
    await client.release(sequenceId);
  }
}

function tokenScore(scored: TokenLogprob): TokenScore {
  if (scored.logprob === undefined) throw new Error("a continuation token came back without its log-probability");
  return { tokenId: scored.tokenId, logprob: scored.logprob, top: scored.top, distribution: scored.distribution.length > 0 ? scored.distribution : undefined };
}
