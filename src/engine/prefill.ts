import { scoreToken, type TokenLogprob } from "../model/sampling/logprobs.js";
import type { EvictionSpec } from "../policies/policy.js";
import type { EngineTelemetry } from "../telemetry/engine-telemetry.js";
import type { Caller } from "./caller.js";
import { contextLimit, type EngineModel } from "../model/engine-model.js";
import { EngineError } from "./engine-error.js";
import { OBSERVATION_ROWS } from "./evicted-attention-share.js";
import { DEFAULT_MAX_PROMPT_BYTES, type EngineOptions } from "./engine-options.js";
import type { EvictionOutcome } from "./eviction-types.js";
import { promptTokens, type PromptContent } from "./prompt-tokens.js";
import type { Sequence } from "./sequence.js";
import type { SequenceAdmission } from "./sequence-admission.js";
import type { SequenceEviction } from "./sequence-eviction.js";
import type { SequenceTable } from "./sequence-table.js";

export interface PrefillInput extends PromptContent {
  sequenceId: string;
  eviction?: EvictionSpec;
  /** Score the fed tokens, with this many top alternatives per position (and every token's, with `distribution`). */
  logprobs?: { top: number; distribution?: boolean };
}

export interface PrefillOutcome {
  sequenceId: string;
  promptTokens: number;
  position: number;
  kvBytes: number;
  tokenIds: number[];
  eviction?: EvictionOutcome;
  logprobs?: TokenLogprob[];
}

/**
 * Most bytes of whole distributions one Prefill may return (return_distribution), at 4 per
 * log-probability as sent: a cap on memory, since answering holds about nine times that while
 * the call lasts (the float32 scores, the response's numbers, the encoded message).
 */
export const MAX_DISTRIBUTION_BYTES = 16 * 2 ** 20;

/** Where a feed collects the scores of the tokens it feeds. */
interface Scoring {
  top: number;
  distribution: boolean;
  scores: TokenLogprob[];
}

/**
 * Prefill: tokenizes the prompt, feeds it through the model in chunks (creating the sequence on
 * its first call), scores the fed tokens when asked and runs the requested eviction. All or
 * nothing: a call that fails leaves the sequence as it was (a new one is removed again).
 */
export class Prefill {
  constructor(
    private readonly model: EngineModel,
    private readonly options: EngineOptions,
    private readonly table: SequenceTable,
    private readonly admission: SequenceAdmission,
    private readonly eviction: SequenceEviction,
    private readonly telemetry: EngineTelemetry,
  ) {}

  async run(input: PrefillInput, signal: AbortSignal | undefined, caller: Caller): Promise<PrefillOutcome> {
    const { tokenizer, config } = this.model;
    const body = await promptTokens(input, tokenizer, config.vocabSize, this.options.maxPromptBytes ?? DEFAULT_MAX_PROMPT_BYTES, signal);
    // Looked up after tokenizing (which lets the event loop turn): the sequence may have come or gone meanwhile.
    const existing = this.table.get(caller, input.sequenceId);
    const tokens = input.text && existing === undefined && tokenizer.addsBos ? [tokenizer.bosId, ...body] : body;
    this.admission.checkRequestTokens(tokens.length, "prompt");
    const vocab = config.vocabSize;
    if (input.logprobs?.distribution && tokens.length * vocab * 4 > MAX_DISTRIBUTION_BYTES) {
      throw new EngineError(
        "INVALID_ARGUMENT",
        `return_distribution for ${tokens.length} tokens is ${tokens.length * vocab * 4} bytes of log-probabilities (4 each, vocabulary ${vocab}); the cap is ${MAX_DISTRIBUTION_BYTES} bytes (16 MiB) per call: score at most ${Math.floor(MAX_DISTRIBUTION_BYTES / (4 * vocab))} tokens per Prefill`,
      );
    }
    const sequence = existing ?? this.table.create(caller, input.sequenceId);
    return this.table.withSequence(sequence, existing === undefined, async () => {
      const position = sequence.position;
      const limit = contextLimit(this.model, this.options.allowPastContext);
      if (position + tokens.length > limit) {
        throw new EngineError(
          "OUT_OF_RANGE",
          `sequence '${input.sequenceId}' would reach position ${position + tokens.length}, past the model's trained context of ${limit} tokens`,
        );
      }
      const resolved = input.eviction && this.eviction.resolve(input.eviction, sequence.maxHeadLength + (position - sequence.fedTokens) + tokens.length);
      const checkpoint = sequence.checkpoint();
      let ringRows = sequence.recentQueries.rows;
      if (input.eviction && resolved) {
        // The policy named here scores the queries of the tokens fed now: room for them, and for the rows that
        // estimate the eviction's cost when it is traced (apply trims the ring to the policy's need after; a ring
        // holding rows only grows here, so that a failed call can restore it). The feed's admission takes it.
        const fedAfter = sequence.fedTokens + (sequence.pendingToken === null ? 0 : 1) + tokens.length;
        const observed = resolved.observer.measuring() ? OBSERVATION_ROWS : 0;
        const rows = Math.min(Math.max(resolved.policy.queryRowsNeeded(input.eviction.params, fedAfter), observed), this.options.recentQueryRows);
        ringRows = sequence.recentQueries.count === 0 ? rows : Math.max(sequence.recentQueries.rows, rows);
      }
      const scoring = input.logprobs && { top: input.logprobs.top, distribution: input.logprobs.distribution ?? false, scores: [] };
      await this.feed(sequence, tokens, ringRows, signal, scoring);
      let eviction: EvictionOutcome | undefined;
      try {
        eviction = input.eviction && resolved ? await this.eviction.apply(sequence, input.eviction, resolved, signal) : undefined;
      } catch (error) {
        sequence.rollback(checkpoint); // the policy refused, or the call ended, before changing anything
        throw error;
      }
      sequence.settle();
      return {
        sequenceId: sequence.id,
        promptTokens: tokens.length,
        position: sequence.position,
        kvBytes: sequence.bytes,
        tokenIds: tokens,
        eviction,
        logprobs: scoring?.scores,
      };
    });
  }

  /**
   * Feeds the pending token (if any) and `tokens` through the model in chunks,
   * appending their keys and values, the sequence's query ring keeping `ringRows` rows from then on.
   * All or nothing: on any failure the sequence is rolled back.
   */
  private async feed(sequence: Sequence, tokens: readonly number[], ringRows: number, signal?: AbortSignal, scoring?: Scoring): Promise<void> {
    const { prefillChunkTokens } = this.options;
    const all = sequence.pendingToken === null ? [...tokens] : [sequence.pendingToken, ...tokens];
    // Index in `all` of the first token to score (the pending token is not this call's).
    const firstScored = all.length - tokens.length;
    // A single chunk changes nothing until its step has succeeded, so only longer feeds need a
    // checkpoint (taking one copies attention mass and recent queries: too dear per step).
    const checkpoint = all.length > prefillChunkTokens ? sequence.checkpoint() : null;
    // Without a checkpoint, what a failure must undo is the capacity reserved here.
    const reservation = await this.admission.growWhenRoom(sequence, all.length, signal, ringRows);
    try {
      for (let start = 0; start < all.length; start += prefillChunkTokens) {
        if (signal?.aborted) throw new EngineError("CANCELLED", "the call was cancelled");
        const chunk = all.slice(start, start + prefillChunkTokens);
        // The graph computes only the query rows the sequence keeps (at least one: its output is never empty).
        const queryRows = Math.min(chunk.length, Math.max(1, sequence.recentQueries.rows));
        const logitRows = scoring ? chunk.length : 1;
        if (scoring && start === 0 && firstScored === 0) {
          // The first token is predicted by the logits of the call before (none for a new sequence).
          scoring.scores.push(sequence.lastLogits ? scoreToken(sequence.lastLogits, chunk[0], scoring.top, scoring.distribution) : { tokenId: chunk[0], top: [] });
        }
        const out = await this.telemetry.observeStep("prefill", sequence.id, chunk.length, sequence.fedTokens, () =>
          this.model.runner.run({ tokens: chunk, firstPosition: sequence.fedTokens, past: sequence.layers, queryRows, logitRows }),
        );
        // Cancelled (or past its deadline) while the step ran: the caller is gone and will see a failure,
        // so nothing of this call may stay (before, a feed finished after its deadline kept a sequence the
        // caller never knew of: docs/limits.md, "Full soak run").
        if (signal?.aborted) throw new EngineError("CANCELLED", "the call was cancelled");
        if (scoring) {
          // Row r predicts token start + r + 1.
          const vocab = this.model.config.vocabSize;
          for (let r = 0; r < chunk.length && start + r + 1 < all.length; r++) {
            if (start + r + 1 >= firstScored) scoring.scores.push(scoreToken(out.logits.subarray(r * vocab, (r + 1) * vocab), all[start + r + 1], scoring.top, scoring.distribution));
          }
        }
        sequence.absorbStep(out, chunk, 0, queryRows, this.model.config.vocabSize);
        this.model.runner.recycle?.(out);
      }
    } catch (error) {
      if (checkpoint) sequence.rollback(checkpoint);
      else reservation.release();
      throw this.admission.budgetError(error);
    }
  }
}
