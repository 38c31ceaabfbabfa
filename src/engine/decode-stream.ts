import { LaneArenas } from "../kv/lane-arenas.js";
import { Sampler, type SamplingParams } from "../model/sampling/sampler.js";
import { runInSlices } from "../numerics/sliced-work.js";
import type { EvictionSpec } from "../policies/policy.js";
import type { EngineTelemetry } from "../telemetry/engine-telemetry.js";
import type { Caller } from "./caller.js";
import { CancelledCalls } from "./cancelled-calls.js";
import { DecodeBatcher } from "./decode-batcher.js";
import { contextLimit, type EngineModel } from "../model/engine-model.js";
import { EngineError } from "./engine-error.js";
import { DEFAULT_MAX_BATCH_SIZE, type EngineOptions } from "./engine-options.js";
import type { EvictionOutcome } from "./eviction-types.js";
import { checkTokenIds } from "./prompt-tokens.js";
import type { Sequence } from "./sequence.js";
import type { SequenceAdmission } from "./sequence-admission.js";
import type { SequenceEviction } from "./sequence-eviction.js";
import type { SequenceTable } from "./sequence-table.js";

export interface DecodeInput {
  sequenceId: string;
  maxNewTokens: number;
  sampling: SamplingParams;
  /** Empty = the model's default stop tokens (unless ignoreEos). */
  stopTokenIds: readonly number[];
  ignoreEos: boolean;
  /** Sets the sequence's standing decode budget; policy "none" removes it. */
  eviction?: EvictionSpec;
  /** Pending while the consumer cannot take more tokens (a full stream buffer); none are produced meanwhile. */
  backpressure?: () => Promise<void> | undefined;
}

export type FinishReason = "length" | "stop" | "context";

export interface GeneratedToken {
  tokenId: number;
  text: string;
  position: number;
  finishReason?: FinishReason;
  /** What the decode budget evicted before this token, if it ran. */
  eviction?: EvictionOutcome;
}

/**
 * Decode: samples tokens one at a time, ends on a stop token, the length asked or the context,
 * streams text as whole UTF-8 characters, and keeps the sequence within its standing decode
 * budget. Steps of concurrent streams run together in batched graph runs (DecodeBatcher).
 */
export class DecodeStreams {
  private readonly batcher: DecodeBatcher<Sequence>;
  /** Per lane of decode steps, the caches of the sequences in its batch, side by side. */
  private readonly arenas: LaneArenas;
  private readonly cancelled = new CancelledCalls<Sequence>();

  constructor(
    private readonly model: EngineModel,
    private readonly options: EngineOptions,
    private readonly table: SequenceTable,
    private readonly admission: SequenceAdmission,
    private readonly eviction: SequenceEviction,
    private readonly telemetry: EngineTelemetry,
  ) {
    // A device-resident cache steps one sequence per run: the batch arena is a host copy.
    const maxBatch = model.runner.deviceCache ? 1 : Math.max(1, options.maxBatchSize ?? DEFAULT_MAX_BATCH_SIZE);
    this.batcher = new DecodeBatcher(
      (batch, lane, lanes, inStages) => this.runDecodeBatch(batch, lane, lanes, inStages),
      maxBatch,
      (sequence) => sequence.maxHeadLength,
      model.runner.parallelism,
      (sequence) => sequence.maxCapacity,
      (slots) => model.runner.decodeInStages?.(slots) ?? false,
    );
    const { layers, kvHeads, headSize } = model.config;
    this.arenas = new LaneArenas(layers, { kvHeads, headSize, kvDtype: model.runner.kvDtype });
  }

  /** The batch arenas' bytes (outside the budget: see BatchArena). */
  get arenaBytes(): number {
    return this.arenas.bytes;
  }

  async *run(input: DecodeInput, signal: AbortSignal | undefined, caller: Caller): AsyncGenerator<GeneratedToken> {
    const sequence = this.table.lookup(caller, input.sequenceId);
    if (!Number.isInteger(input.maxNewTokens) || input.maxNewTokens < 1) {
      throw new EngineError("INVALID_ARGUMENT", `max_new_tokens must be at least 1, got ${input.maxNewTokens}`);
    }
    this.admission.checkRequestTokens(input.maxNewTokens, "max_new_tokens");
    checkTokenIds(input.stopTokenIds, this.model.config.vocabSize, "stop_token_ids");
    sequence.claim();
    const untrack = this.cancelled.track(sequence, signal);
    // A Decode that ends before its first token leaves the sequence as it was, standing budget included.
    const standing = sequence.decodeBudget;
    let produced = 0;
    this.batcher.join();
    try {
      if (sequence.lastLogits === null && sequence.pendingToken === null) {
        throw new EngineError("FAILED_PRECONDITION", `sequence '${sequence.id}' has no tokens yet: prefill it before decoding`);
      }
      const limit = contextLimit(this.model, this.options.allowPastContext);
      if (sequence.position >= limit) {
        throw new EngineError("OUT_OF_RANGE", `sequence '${sequence.id}' is at position ${sequence.position}, the model's trained context`);
      }
      if (input.eviction) sequence.keepWithin(this.eviction.decodeBudgetFor(input.eviction, sequence));
      const stops = new Set(input.stopTokenIds.length > 0 || input.ignoreEos ? input.stopTokenIds : this.model.defaultStopTokens);
      const sampler = new Sampler(input.sampling);
      const text = new TextDecoder("utf-8");
      while (produced < input.maxNewTokens) {
        if (signal?.aborted) return;
        const full = input.backpressure?.();
        if (full) {
          await this.batcher.sitOut(full);
          if (signal?.aborted) return;
        }
        if (sequence.pendingToken !== null) await this.step(sequence, signal);
        // A step already running when the client cancelled completes; nothing is sampled after it.
        if (signal?.aborted) return;
        const eviction = await this.eviction.enforceBudget(sequence);
        const tokenId = sampler.next(sequence.lastLogits!);
        const position = sequence.position;
        const previous = sequence.lastToken;
        sequence.acceptSampled(tokenId);
        produced++;
        const finishReason: FinishReason | undefined = stops.has(tokenId)
          ? "stop"
          : produced === input.maxNewTokens
            ? "length"
            : position + 1 >= limit || !this.admission.canGrow(sequence)
              ? "context"
              : undefined;
        const piece = finishReason === "stop" ? "" : text.decode(this.model.tokenizer.tokenBytes(tokenId, previous), { stream: true });
        yield { tokenId, text: finishReason ? piece + text.decode() : piece, position, finishReason, eviction };
        if (finishReason) return;
      }
    } finally {
      this.batcher.leave();
      // The arena serves running streams only; with none left, its memory goes back.
      if (this.batcher.idle) this.arenas.clear();
      if (produced === 0) sequence.keepWithin(standing);
      else if (input.eviction) this.eviction.keepQueryRowsOf(sequence, input.eviction);
      sequence.settle();
      sequence.unclaim();
      untrack();
    }
  }

  /** Resolves once the Decode calls the client cancelled on `sequences` have wound down. */
  settled(sequences: Iterable<Sequence>): Promise<void> {
    return this.cancelled.settled(sequences);
  }

  close(): void {
    this.arenas.clear();
  }

  /**
   * One decode step: feeds the pending token through the model together with
   * whichever other sequences step now. On failure the sequence is as before.
   */
  private async step(sequence: Sequence, signal?: AbortSignal): Promise<void> {
    const reservation = await this.admission.grow(sequence, 1);
    try {
      await this.batcher.step(sequence, signal);
    } catch (error) {
      reservation.release();
      throw this.admission.budgetError(error);
    }
  }

  /** Runs one decode step for each sequence of `batch` (room already reserved), alone or in one batched graph run. */
  private async runDecodeBatch(batch: Sequence[], lane: number, lanes: number, inStages: boolean): Promise<void> {
    const { vocabSize } = this.model.config;
    if (batch.length === 1) {
      const [sequence] = batch;
      const tokens = [sequence.pendingToken!];
      const out = await this.telemetry.observeStep("decode", sequence.id, 1, sequence.fedTokens, () =>
        this.model.runner.run({ tokens, firstPosition: sequence.fedTokens, past: sequence.layers, queryRows: 1, inStages }),
      );
      sequence.absorbStep(out, tokens, 0, 1, vocabSize);
      this.model.runner.recycle?.(out);
      return;
    }
    const arena = this.arenas.of(lane, lanes);
    const arranged = arena.arrange(batch);
    const out = await this.telemetry.observeStep("decode", arranged[0].id, 1, arranged[0].fedTokens, async () =>
      this.model.runner.runDecodeBatch({
        tokens: arranged.map((s) => s.pendingToken!),
        positions: arranged.map((s) => s.fedTokens),
        // A resize lays out megabytes: in slices, the members waiting for this step meanwhile.
        past: await runInSlices(arena.gather(arranged.map((s) => s.layers))),
        inStages,
      }),
      arranged.length,
    );
    arranged.forEach((sequence, b) => sequence.absorbStep(out, [sequence.pendingToken!], b, 1, vocabSize));
    this.model.runner.recycle?.(out);
  }
}
