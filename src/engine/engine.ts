import type { ModelConfig } from "../model/checkpoint.js";
import { Sampler, type SamplingParams } from "../model/sampler.js";
import type { ModelRunner, StepOutput } from "../model/model-runner.js";
import type { WeightDtype } from "../model/weight-layout.js";
import type { ChatMessage, Tokenizer } from "../model/tokenizer.js";
import { scoreToken, type TokenLogprob } from "../model/logprobs.js";
import { KeysOnDevice } from "../kv/keys-on-device.js";
import { LaneArenas } from "../kv/lane-arenas.js";
import { KvBudgetExceeded, SlabPool } from "../kv/slab-pool.js";
import { InvalidEvictionError, type EvictionSpec } from "../policies/policy.js";
import { resolveEviction } from "../policies/registry.js";
import { evictionTelemetry, observeCrossTenantCompression, observeStep } from "../telemetry/engine-telemetry.js";
import { applyEviction, commitEviction } from "./apply-eviction.js";
import { CancelledCalls } from "./cancelled-calls.js";
import { DecodeBatcher } from "./decode-batcher.js";
import { DecodeBudget } from "./decode-budget.js";
import { EngineError } from "./engine-error.js";
import type { EvictionObserver, EvictionOutcome, PlannedEviction, ResolvedEviction } from "./eviction-types.js";
import { requestFingerprint } from "./request-digest.js";
import { RequestLog, type RequestLogOptions } from "./request-log.js";
import { Sequence } from "./sequence.js";
import { truncate, type TruncateOutcome } from "./truncate.js";

export type { EvictionOutcome } from "./eviction-types.js";
export type { TruncateOutcome } from "./truncate.js";

export interface EngineOptions {
  /** Bytes of KV memory all sequences together may hold. */
  kvBudgetBytes: number;
  /** Most entries any KV head of one sequence may hold. */
  maxSequenceTokens: number;
  /** Prefill runs the model on at most this many tokens at a time. */
  prefillChunkTokens: number;
  /** Allow positions past the model's trained context. */
  allowPastContext: boolean;
  /** Idle sequences are dropped after this long. */
  sequenceTtlMs: number;
  /** Post-RoPE queries of this many recent tokens are kept per sequence for attention scorers. */
  recentQueryRows: number;
  /** Most sequences whose decode steps run together in one graph run (default 32; 1 = no batching). */
  maxBatchSize?: number;
  /** Limits each tenant has beside the global budget; absent = none. */
  tenantQuota?: TenantQuota;
  /** Most UTF-8 bytes of prompt text (or chat messages) one Prefill may send, and most token ids
   * (a token stands for at least one byte); default DEFAULT_MAX_PROMPT_BYTES. */
  maxPromptBytes?: number;
  /** How long and how many request ids each tenant's retries are recognised for (defaults: 600 s, 10,000). */
  requestLog?: Partial<RequestLogOptions>;
  /** Whether memory pressure may compress other tenants' idle sequences (default true), or only the requesting tenant's own. */
  crossTenantCompression?: boolean;
  /** Who hears of each eviction; default the process's telemetry (a span, and the metrics listening). */
  evictionObserver?: EvictionObserver;
}

export interface TenantQuota {
  /** KV bytes one tenant's sequences may hold together. */
  kvBytes?: number;
  /** Sequences one tenant may hold at once. */
  sequences?: number;
  /** Tokens one request may feed or generate. */
  requestTokens?: number;
}

/** Who is calling: sequence ids are scoped by tenant. */
export interface Caller {
  tenant: string;
}

/** The caller when authentication is off. */
export const ANONYMOUS: Caller = { tenant: "" };

/** The model as the engine drives it. */
export interface EngineModel {
  config: ModelConfig;
  tokenizer: Tokenizer;
  runner: ModelRunner;
  /** How the projection weights are stored. */
  weightDtype: WeightDtype;
  /** Tokens that end generation unless the request says otherwise. */
  defaultStopTokens: readonly number[];
}

export interface PrefillInput {
  sequenceId: string;
  /** Makes retries idempotent: a completed request with this id is answered from its stored result. */
  requestId?: string;
  tokenIds?: readonly number[];
  text?: string;
  /** A chat, rendered with the model's chat template (fed as rendered, BOS included if the template writes it). */
  messages?: readonly ChatMessage[];
  eviction?: EvictionSpec;
  /** Score the fed tokens, with this many top alternatives per position (and every token's, with `distribution`). */
  logprobs?: { top: number; distribution?: boolean };
}

/** Where a feed collects the scores of the tokens it feeds. */
interface Scoring {
  top: number;
  distribution: boolean;
  scores: TokenLogprob[];
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

export interface ForkOutcome {
  newSequenceId: string;
  position: number;
  kvBytes: number;
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

export interface SequenceSnapshot {
  sequenceId: string;
  position: number;
  kvBytes: number;
  /** Of kvBytes, the bytes on the device. */
  kvBytesDevice: number;
  entries: number;
  headLengths: number[][];
  /** Per layer, per KV head, the original positions held (only when asked for). */
  headPositions?: number[][][];
  /** Every token of the sequence, by position (only when asked for). */
  tokenIds?: number[];
  lazyLayers: number[];
  idleMs: number;
  decodePolicy: string;
  decodeBudgetTokens: number;
}

export interface StatsSnapshot {
  kvBytesUsed: number;
  kvBytesBudget: number;
  kvBytesPooled: number;
  /** The decode batch's working copy of its caches (outside the budget: see BatchArena). */
  batchArenaBytes: number;
  /** Of kvBytesUsed, the bytes on the device (keys and values of a device-resident cache). */
  kvBytesDevice: number;
  /** Where keys and values live: "host", or the device (e.g. "webgpu"). */
  kvLocation: string;
  sequenceCount: number;
  sequences: SequenceSnapshot[];
  /** The caller's tenant: its bytes and sequences, and its quota (0 = none). */
  tenantKvBytes: number;
  tenantSequenceCount: number;
  tenantKvBytesQuota: number;
  tenantSequenceQuota: number;
}

export const DEFAULT_MAX_BATCH_SIZE = 32;

/** 1 MiB: tokenized in well under a second, and more than a 128k-token context holds. */
export const DEFAULT_MAX_PROMPT_BYTES = 2 ** 20;
/** Entries one KV head of a sequence may hold unless told otherwise (serve's --max-sequence-tokens). */
export const DEFAULT_MAX_SEQUENCE_TOKENS = 65_536;

/**
 * Most bytes of whole distributions one Prefill may return (return_distribution), at 4 per
 * log-probability as sent: a cap on memory, since answering holds about nine times that while
 * the call lasts (the float32 scores, the response's numbers, the encoded message).
 */
export const MAX_DISTRIBUTION_BYTES = 16 * 2 ** 20;

function checkPromptBytes(bytes: number, limit: number, what: string): void {
  if (bytes > limit) throw new EngineError("INVALID_ARGUMENT", `${what} is ${bytes} bytes of UTF-8; the limit is ${limit} (--max-prompt-bytes)`);
}

function keyOf(caller: Caller, sequenceId: string): string {
  return `${caller.tenant}\u0000${sequenceId}`;
}

/**
 * Owns the sequences: runs prefill chunks and decode steps on the model,
 * applies eviction policies, enforces budgets. A call that fails leaves its
 * sequence exactly as it was; calls on different sequences run concurrently,
 * and a second concurrent call on one sequence is refused (ABORTED).
 */
export class Engine {
  readonly pool: SlabPool;
  /** Keyed by tenant and sequence id (see keyOf). */
  private readonly sequences = new Map<string, Sequence>();
  private readonly requests: RequestLog;
  private readonly sweeper: NodeJS.Timeout;
  private readonly batcher: DecodeBatcher<Sequence>;
  /** Per lane of decode steps, the caches of the sequences in its batch, side by side. */
  private readonly arenas: LaneArenas;
  private readonly cancelled = new CancelledCalls<Sequence>();

  constructor(
    readonly model: EngineModel,
    readonly options: EngineOptions,
  ) {
    this.pool = new SlabPool(options.kvBudgetBytes);
    this.requests = new RequestLog(options.requestLog);
    this.sweeper = setInterval(() => this.expireIdle(), Math.max(100, Math.min(options.sequenceTtlMs / 4, 10_000)));
    this.sweeper.unref();
    // A device-resident cache steps one sequence per run: the batch arena is a host copy.
    const maxBatch = model.runner.deviceCache ? 1 : Math.max(1, options.maxBatchSize ?? DEFAULT_MAX_BATCH_SIZE);
    this.batcher = new DecodeBatcher((batch, lane, lanes) => this.runDecodeBatch(batch, lane, lanes), maxBatch, (sequence) => sequence.maxHeadLength, model.runner.parallelism);
    const { layers, kvHeads, headSize } = model.config;
    this.arenas = new LaneArenas(layers, { kvHeads, headSize, kvDtype: model.runner.kvDtype });
  }

  prefill(input: PrefillInput, signal?: AbortSignal, caller: Caller = ANONYMOUS): Promise<PrefillOutcome> {
    const { requestId, sequenceId, ...content } = input;
    return this.requests.run(caller.tenant, requestId, requestFingerprint("Prefill", sequenceId, content), () => this.prefillOnce(input, signal, caller));
  }

  private async prefillOnce(input: PrefillInput, signal: AbortSignal | undefined, caller: Caller): Promise<PrefillOutcome> {
    const body = await this.promptTokens(input, signal);
    // Looked up after tokenizing (which lets the event loop turn): the sequence may have come or gone meanwhile.
    const existing = this.sequences.get(keyOf(caller, input.sequenceId));
    const { tokenizer } = this.model;
    const tokens = input.text && existing === undefined && tokenizer.addsBos ? [tokenizer.bosId, ...body] : body;
    this.checkRequestTokens(tokens.length, "prompt");
    const vocab = this.model.config.vocabSize;
    if (input.logprobs?.distribution && tokens.length * vocab * 4 > MAX_DISTRIBUTION_BYTES) {
      throw new EngineError(
        "INVALID_ARGUMENT",
        `return_distribution for ${tokens.length} tokens is ${tokens.length * vocab * 4} bytes of log-probabilities (4 each, vocabulary ${vocab}); the cap is ${MAX_DISTRIBUTION_BYTES} bytes (16 MiB) per call: score at most ${Math.floor(MAX_DISTRIBUTION_BYTES / (4 * vocab))} tokens per Prefill`,
      );
    }
    const sequence = existing ?? this.create(input.sequenceId, caller);
    return this.withSequence(sequence, existing === undefined, async () => {
      const position = sequence.position;
      const limit = this.contextLimit();
      if (position + tokens.length > limit) {
        throw new EngineError(
          "OUT_OF_RANGE",
          `sequence '${input.sequenceId}' would reach position ${position + tokens.length}, past the model's trained context of ${limit} tokens`,
        );
      }
      const resolved = input.eviction && this.resolve(input.eviction, sequence.maxHeadLength + (position - sequence.fedTokens) + tokens.length);
      const checkpoint = sequence.checkpoint();
      const scoring = input.logprobs && { top: input.logprobs.top, distribution: input.logprobs.distribution ?? false, scores: [] };
      await this.feed(sequence, tokens, signal, scoring);
      let eviction: EvictionOutcome | undefined;
      try {
        eviction = input.eviction && resolved ? await this.withKeys(sequence, () => applyEviction(sequence, input.eviction!, resolved)) : undefined;
      } catch (error) {
        sequence.rollback(checkpoint); // the policy refused before changing anything
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

  async *decode(input: DecodeInput, signal?: AbortSignal, caller: Caller = ANONYMOUS): AsyncGenerator<GeneratedToken> {
    const sequence = this.lookup(input.sequenceId, caller);
    if (!Number.isInteger(input.maxNewTokens) || input.maxNewTokens < 1) {
      throw new EngineError("INVALID_ARGUMENT", `max_new_tokens must be at least 1, got ${input.maxNewTokens}`);
    }
    this.checkRequestTokens(input.maxNewTokens, "max_new_tokens");
    this.checkTokens(input.stopTokenIds, "stop_token_ids");
    this.claim(sequence);
    const untrack = this.cancelled.track(sequence, signal);
    // A Decode that ends before its first token leaves the sequence as it was, standing budget included.
    const standing = sequence.decodeBudget;
    let produced = 0;
    this.batcher.join();
    try {
      if (sequence.lastLogits === null && sequence.pendingToken === null) {
        throw new EngineError("FAILED_PRECONDITION", `sequence '${sequence.id}' has no tokens yet: prefill it before decoding`);
      }
      const limit = this.contextLimit();
      if (sequence.position >= limit) {
        throw new EngineError("OUT_OF_RANGE", `sequence '${sequence.id}' is at position ${sequence.position}, the model's trained context`);
      }
      if (input.eviction) sequence.decodeBudget = this.decodeBudgetFor(input.eviction, sequence);
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
        if (sequence.pendingToken !== null) await this.decodeStep(sequence, signal);
        // A step already running when the client cancelled completes; nothing is sampled after it.
        if (signal?.aborted) return;
        const eviction = (await this.withKeys(sequence, () => sequence.decodeBudget?.enforce(sequence))) ?? undefined;
        const tokenId = sampler.next(sequence.lastLogits!);
        const position = sequence.position;
        const previous = sequence.lastToken;
        sequence.pendingToken = tokenId;
        sequence.lastToken = tokenId;
        produced++;
        const finishReason: FinishReason | undefined = stops.has(tokenId)
          ? "stop"
          : produced === input.maxNewTokens
            ? "length"
            : position + 1 >= limit || !this.canGrow(sequence)
              ? "context"
              : undefined;
        const piece = finishReason === "stop" ? "" : text.decode(this.model.tokenizer.tokenBytes(tokenId, previous), { stream: true });
        sequence.lastUsed = Date.now();
        yield { tokenId, text: finishReason ? piece + text.decode() : piece, position, finishReason, eviction };
        if (finishReason) return;
      }
    } finally {
      this.batcher.leave();
      // The arena serves running streams only; with none left, its memory goes back.
      if (this.batcher.idle) this.arenas.clear();
      if (produced === 0) sequence.decodeBudget = standing;
      sequence.settle();
      sequence.busy = false;
      sequence.lastUsed = Date.now();
      untrack();
    }
  }

  evict(sequenceId: string, spec: EvictionSpec, caller: Caller = ANONYMOUS, requestId?: string): Promise<EvictionOutcome> {
    return this.requests.run(caller.tenant, requestId, requestFingerprint("Evict", sequenceId, spec), async () => {
      const sequence = this.lookup(sequenceId, caller);
      const resolved = this.resolve(spec, sequence.maxHeadLength);
      return this.withSequence(sequence, false, () => this.withKeys(sequence, () => applyEviction(sequence, spec, resolved)));
    });
  }

  /**
   * Copies `sequenceId` under `newSequenceId` (same tenant): cache, recent queries, where generation
   * stands and its decode budget. Nothing is shared, so the copy's bytes count against the budgets.
   */
  fork(sequenceId: string, newSequenceId: string, caller: Caller = ANONYMOUS, requestId?: string): Promise<ForkOutcome> {
    return this.requests.run(caller.tenant, requestId, requestFingerprint("Fork", sequenceId, { newSequenceId }), async () => {
      const source = this.lookup(sequenceId, caller);
      if (this.sequences.has(keyOf(caller, newSequenceId))) {
        throw new EngineError("ALREADY_EXISTS", `sequence '${newSequenceId}' already exists; release it or choose another new_sequence_id`);
      }
      // Held while copying, so that making room never compresses the sequence being copied.
      this.claim(source);
      try {
        const copy = this.create(newSequenceId, caller);
        try {
          this.admit(copy, source.bytes);
          copy.copyFrom(source);
        } catch (error) {
          this.sequences.delete(keyOf(caller, newSequenceId));
          copy.release();
          throw this.budgetError(error);
        }
        return { newSequenceId, position: copy.position, kvBytes: copy.bytes };
      } finally {
        source.busy = false;
        source.lastUsed = Date.now();
      }
    });
  }

  release(sequenceId: string, caller: Caller = ANONYMOUS, requestId?: string): Promise<{ found: boolean; freedBytes: number }> {
    return this.requests.run(caller.tenant, requestId, requestFingerprint("Release", sequenceId, {}), async () => {
      const key = keyOf(caller, sequenceId);
      const sequence = this.sequences.get(key);
      if (!sequence) return { found: false, freedBytes: 0 };
      if (sequence.busy) throw new EngineError("ABORTED", `sequence '${sequenceId}' is busy with another call; release it when that call ends`);
      this.sequences.delete(key);
      return { found: true, freedBytes: sequence.release() };
    });
  }

  /**
   * Rolls a sequence back to its first `length` tokens (see truncate.ts),
   * once a Decode the client cancelled on it has wound down.
   */
  truncate(sequenceId: string, length: number, caller: Caller = ANONYMOUS, requestId?: string): Promise<TruncateOutcome> {
    return this.requests.run(caller.tenant, requestId, requestFingerprint("Truncate", sequenceId, { length }), async () => {
      await this.settled(sequenceId, caller);
      const sequence = this.lookup(sequenceId, caller);
      return this.withSequence(sequence, false, async () => truncate(sequence, length));
    });
  }

  /** Resolves once the Decode calls the client cancelled on the caller's sequences (or the one named) have wound down. */
  settled(sequenceId: string | undefined, caller: Caller = ANONYMOUS): Promise<void> {
    const chosen = sequenceId ? [this.sequences.get(keyOf(caller, sequenceId))] : this.sequencesOf(caller.tenant);
    return this.cancelled.settled(chosen.filter((s) => s !== undefined));
  }

  stats(sequenceId?: string, includePositions = false, caller: Caller = ANONYMOUS, includeTokenIds = false): StatsSnapshot {
    const own = this.sequencesOf(caller.tenant);
    const chosen = sequenceId ? [this.lookup(sequenceId, caller)] : own;
    const now = Date.now();
    const quota = this.options.tenantQuota;
    return {
      kvBytesUsed: this.pool.used,
      kvBytesBudget: this.pool.budgetBytes,
      kvBytesPooled: this.pool.pooled,
      batchArenaBytes: this.arenas.bytes,
      kvBytesDevice: this.pool.deviceBytes,
      kvLocation: this.model.runner.deviceCache?.location ?? "host",
      sequenceCount: own.length,
      tenantKvBytes: own.reduce((sum, s) => sum + s.bytes, 0),
      tenantSequenceCount: own.length,
      tenantKvBytesQuota: quota?.kvBytes ?? 0,
      tenantSequenceQuota: quota?.sequences ?? 0,
      sequences: chosen.map((s) => ({
        sequenceId: s.id,
        position: s.position,
        kvBytes: s.bytes,
        kvBytesDevice: s.deviceBytes,
        entries: s.entries,
        headLengths: s.layers.map((layer) => Array.from(layer.lengths)),
        headPositions: includePositions ? s.layers.map((layer) => layer.headPositions()) : undefined,
        tokenIds: includeTokenIds ? s.tokenIds : undefined,
        lazyLayers: s.lazyLayers,
        idleMs: s.busy ? 0 : now - s.lastUsed,
        decodePolicy: s.decodeBudget?.policyName ?? "",
        decodeBudgetTokens: s.decodeBudget?.tokens ?? 0,
      })),
    };
  }

  /** Sequences held by all tenants together. */
  get sequenceCount(): number {
    return this.sequences.size;
  }

  /** Drops sequences idle for longer than the TTL. */
  expireIdle(now = Date.now()): void {
    for (const [id, sequence] of this.sequences) {
      if (!sequence.busy && now - sequence.lastUsed > this.options.sequenceTtlMs) {
        this.sequences.delete(id);
        sequence.release();
      }
    }
  }

  close(): void {
    clearInterval(this.sweeper);
    this.arenas.clear();
    for (const sequence of this.sequences.values()) sequence.release();
    this.sequences.clear();
    this.model.tokenizer.close?.();
  }

  private contextLimit(): number {
    return this.options.allowPastContext ? Infinity : this.model.config.contextLength;
  }

  /** The prompt's tokens (BOS not added: that depends on whether the sequence is new). */
  private async promptTokens(input: PrefillInput, signal: AbortSignal | undefined): Promise<number[]> {
    const hasTokens = (input.tokenIds?.length ?? 0) > 0;
    const hasText = (input.text?.length ?? 0) > 0;
    const hasMessages = (input.messages?.length ?? 0) > 0;
    if (Number(hasTokens) + Number(hasText) + Number(hasMessages) !== 1) {
      throw new EngineError(
        "INVALID_ARGUMENT",
        hasTokens || hasText || hasMessages ? "give either token_ids or text (or messages), not several" : "the prompt is empty: give token_ids, text or messages",
      );
    }
    const limit = this.options.maxPromptBytes ?? DEFAULT_MAX_PROMPT_BYTES;
    if (hasTokens) {
      if (input.tokenIds!.length > limit) {
        throw new EngineError("INVALID_ARGUMENT", `token_ids has ${input.tokenIds!.length} ids; the limit is ${limit} (--max-prompt-bytes, one id per byte)`);
      }
      this.checkTokens(input.tokenIds!, "token_ids");
      return [...input.tokenIds!];
    }
    const { tokenizer } = this.model;
    let text = input.text!;
    if (hasMessages) {
      if (!tokenizer.renderChat) throw new EngineError("INVALID_ARGUMENT", "messages need a chat template, and this model's tokenizer has none");
      const sent = input.messages!.reduce((sum, m) => sum + Buffer.byteLength(m.role) + Buffer.byteLength(m.content), 0);
      checkPromptBytes(sent, limit, "messages");
      try {
        text = tokenizer.renderChat(input.messages!);
      } catch (error) {
        throw new EngineError("INVALID_ARGUMENT", `the chat template refused the messages: ${(error as Error).message}`);
      }
    }
    checkPromptBytes(Buffer.byteLength(text), limit, hasMessages ? "the messages rendered with the chat template" : "text");
    try {
      return await tokenizer.encodeInSlices(text, signal);
    } catch (error) {
      if (signal?.aborted) throw new EngineError("CANCELLED", "the call was cancelled");
      throw error;
    }
  }

  private checkTokens(tokens: readonly number[], field: string): void {
    const vocab = this.model.config.vocabSize;
    const bad = tokens.findIndex((t) => !Number.isInteger(t) || t < 0 || t >= vocab);
    if (bad >= 0) {
      throw new EngineError("INVALID_ARGUMENT", `${field}[${bad}] = ${tokens[bad]} is outside the vocabulary of ${vocab} tokens`);
    }
  }

  private resolve(spec: EvictionSpec, entries: number): ResolvedEviction {
    return { ...resolveEviction(spec, entries, this.options.recentQueryRows), observer: this.options.evictionObserver ?? evictionTelemetry };
  }

  private decodeBudgetFor(spec: EvictionSpec, sequence: Sequence): DecodeBudget | null {
    if (spec.policy === "none") return null;
    return DecodeBudget.create(spec, this.resolve(spec, sequence.maxHeadLength), sequence.maxHeadLength);
  }

  private create(id: string, caller: Caller): Sequence {
    const limit = this.options.tenantQuota?.sequences;
    if (limit !== undefined && this.sequencesOf(caller.tenant).length >= limit) {
      throw new EngineError("RESOURCE_EXHAUSTED", `the tenant holds ${limit} sequences, its quota; release one first`);
    }
    const { config } = this.model;
    const shape = { layers: config.layers, heads: config.heads, kvHeads: config.kvHeads, headSize: config.headSize };
    const device = this.model.runner.deviceCache;
    const sequence = new Sequence(id, caller.tenant, this.pool, shape, this.options.recentQueryRows, this.model.runner.kvDtype, device && (() => device.createLayer(this.pool)));
    this.sequences.set(keyOf(caller, id), sequence);
    return sequence;
  }

  private sequencesOf(tenant: string): Sequence[] {
    return [...this.sequences.values()].filter((s) => s.tenant === tenant);
  }

  private checkRequestTokens(count: number, what: string): void {
    const limit = this.options.tenantQuota?.requestTokens;
    if (limit !== undefined && count > limit) {
      throw new EngineError("RESOURCE_EXHAUSTED", `${what} of ${count} tokens is over the quota of ${limit} tokens per request`);
    }
  }

  /** An unknown id and another tenant's id get the same answer: nothing leaks. */
  private lookup(sequenceId: string, caller: Caller): Sequence {
    const sequence = this.sequences.get(keyOf(caller, sequenceId));
    if (!sequence) throw new EngineError("NOT_FOUND", `sequence '${sequenceId}' not found (never created, released or expired)`);
    return sequence;
  }

  private claim(sequence: Sequence): void {
    if (sequence.busy) throw new EngineError("ABORTED", `sequence '${sequence.id}' is busy with another call`);
    sequence.busy = true;
  }

  /** Runs `work` holding the sequence; a new sequence whose first call fails is removed again. */
  private async withSequence<T>(sequence: Sequence, isNew: boolean, work: () => Promise<T>): Promise<T> {
    if (isNew) sequence.busy = true;
    else this.claim(sequence);
    try {
      return await work();
    } catch (error) {
      if (isNew) {
        this.sequences.delete(keyOf({ tenant: sequence.tenant }, sequence.id));
        sequence.release();
      }
      throw error;
    } finally {
      sequence.busy = false;
      sequence.lastUsed = Date.now();
    }
  }

  private canGrow(sequence: Sequence): boolean {
    return sequence.maxHeadLength + 1 <= this.options.maxSequenceTokens;
  }

  /**
   * Makes room for `sequence` to grow to `bytes`. When the global budget is
   * short, idle sequences that carry a decode budget are compressed first,
   * least recently used first; nothing is evicted from a sequence that did
   * not ask for eviction. Without crossTenantCompression only the requesting
   * tenant's own sequences are candidates.
   */
  private admit(sequence: Sequence, bytes: number): void {
    // The tenant's quota first: a request it refuses must not have compressed anyone's cache.
    const quota = this.options.tenantQuota?.kvBytes;
    if (quota !== undefined) {
      const held = this.sequencesOf(sequence.tenant).reduce((sum, s) => sum + s.bytes, 0);
      if (held - sequence.bytes + bytes > quota) {
        throw new EngineError(
          "RESOURCE_EXHAUSTED",
          `tenant KV quota exhausted: ${bytes - sequence.bytes} bytes requested, ${Math.max(0, quota - held)} bytes free of the tenant's ${quota}`,
        );
      }
    }
    const shortfall = this.pool.used - sequence.bytes + bytes - this.pool.budgetBytes;
    if (shortfall > 0) {
      // Plan first, commit only if the plans free enough: a request that fails anyway evicts nothing.
      const planned: [Sequence, PlannedEviction][] = [];
      let reclaimable = 0;
      const crossTenant = this.options.crossTenantCompression ?? true;
      const candidates = [...this.sequences.values()]
        .filter((s) => s !== sequence && !s.busy && s.decodeBudget && (crossTenant || s.tenant === sequence.tenant))
        .sort((a, b) => a.lastUsed - b.lastUsed);
      for (const candidate of candidates) {
        if (reclaimable >= shortfall) break;
        try {
          const plan = candidate.decodeBudget!.planCompression(candidate);
          planned.push([candidate, plan]);
          reclaimable += candidate.bytes - plan.bytesAfter;
        } catch (error) {
          // A budget that cannot run now (e.g. its proxy queries have left the ring, or it scores
          // keys still on the device: reading them back cannot wait here) is passed over.
          if (!(error instanceof InvalidEvictionError || error instanceof KeysOnDevice)) throw error;
        }
      }
      if (reclaimable >= shortfall) {
        for (const [candidate, plan] of planned) {
          const outcome = commitEviction(candidate, plan);
          if (candidate.tenant !== sequence.tenant) observeCrossTenantCompression(candidate.tenant, sequence.tenant, outcome);
        }
      }
    }
    this.pool.assertRoom(bytes, sequence.bytes);
  }

  /** Refuses growth by `count` entries per head past the per-sequence cap. */
  private checkGrowth(sequence: Sequence, count: number): void {
    if (sequence.maxHeadLength + count > this.options.maxSequenceTokens) {
      throw new EngineError(
        "RESOURCE_EXHAUSTED",
        `sequence '${sequence.id}' would hold ${sequence.maxHeadLength + count} entries per head, over the per-sequence cap of ${this.options.maxSequenceTokens}; evict or release it`,
      );
    }
  }

  /** Takes room for `count` more entries per head, all of it before any await: a concurrent admission must see these bytes as held. */
  private reserve(sequence: Sequence, count: number): void {
    this.admit(sequence, sequence.bytesWithRoomFor(count));
    for (const layer of sequence.layers) layer.reserve(count);
    sequence.recentQueries.reserve();
  }

  /**
   * Runs an eviction; when its policy scores keys that are still on the device, reads them back and
   * runs it again (policies are pure: the first run changed nothing).
   */
  private async withKeys<T>(sequence: Sequence, evict: () => T): Promise<T> {
    try {
      return evict();
    } catch (error) {
      if (!(error instanceof KeysOnDevice)) throw error;
      await sequence.loadKeys();
      return evict();
    }
  }

  private budgetError(error: unknown): unknown {
    return error instanceof KvBudgetExceeded ? new EngineError("RESOURCE_EXHAUSTED", `${error.message} (budget ${this.pool.budgetBytes} bytes)`) : error;
  }

  /**
   * One decode step: feeds the pending token through the model together with
   * whichever other sequences step now. On failure the sequence is as before.
   */
  private async decodeStep(sequence: Sequence, signal?: AbortSignal): Promise<void> {
    this.checkGrowth(sequence, 1);
    const rooms = sequence.layers.map((layer) => layer.room());
    try {
      this.reserve(sequence, 1);
      await this.batcher.step(sequence, signal);
    } catch (error) {
      sequence.layers.forEach((layer, l) => layer.restoreRoom(rooms[l]));
      throw this.budgetError(error);
    }
  }

  /** Runs one decode step for each sequence of `batch` (room already reserved), alone or in one batched graph run. */
  private async runDecodeBatch(batch: Sequence[], lane: number, lanes: number): Promise<void> {
    if (batch.length === 1) {
      const [sequence] = batch;
      const tokens = [sequence.pendingToken!];
      const out = await observeStep("decode", sequence.id, 1, sequence.fedTokens, () =>
        this.model.runner.run({ tokens, firstPosition: sequence.fedTokens, past: sequence.layers, queryRows: 1 }),
      );
      this.absorb(sequence, tokens, out, 0, 1);
      return;
    }
    const arena = this.arenas.of(lane, lanes);
    const arranged = arena.arrange(batch);
    const out = await observeStep("decode", arranged[0].id, 1, arranged[0].fedTokens, () =>
      this.model.runner.runDecodeBatch({
        tokens: arranged.map((s) => s.pendingToken!),
        positions: arranged.map((s) => s.fedTokens),
        past: arena.gather(arranged.map((s) => s.layers)),
      }),
      arranged.length,
    );
    arranged.forEach((sequence, b) => this.absorb(sequence, [sequence.pendingToken!], out, b, 1));
  }

  /**
   * Stores what a step computed for `sequence` (member `member` of the step's
   * batch): the new keys and values, attention mass, recent queries, logits.
   */
  private absorb(sequence: Sequence, chunk: readonly number[], out: StepOutput, member: number, queryRows: number): void {
    const { kvHeads, headSize, vocabSize } = this.model.config;
    const count = chunk.length;
    const batch = out.batchSize;
    const rows = Math.round(out.logits.length / (batch * vocabSize)); // logit rows per sequence
    sequence.layers.forEach((layer, l) => {
      const past = out.pastSlots[l];
      const keysAt = (l * batch + member) * kvHeads * count * headSize;
      const colsumAt = member * kvHeads * (past + count);
      layer.append(out.newKeys, out.newValues, keysAt, count, sequence.fedTokens, out.attentionColsums[l], colsumAt, past);
    });
    sequence.recentQueries.push(out.queries, queryRows, sequence.fedTokens + count - queryRows, batch, member);
    sequence.recordFed(chunk);
    sequence.lastLogits = out.logits.slice(((member + 1) * rows - 1) * vocabSize, (member + 1) * rows * vocabSize);
    sequence.pendingToken = null;
    sequence.lastToken = chunk[count - 1];
  }

  /**
   * Feeds the pending token (if any) and `tokens` through the model in chunks,
   * appending their keys and values. All or nothing: on any failure the
   * sequence is rolled back.
   */
  private async feed(sequence: Sequence, tokens: readonly number[], signal?: AbortSignal, scoring?: Scoring): Promise<void> {
    const all = sequence.pendingToken === null ? [...tokens] : [sequence.pendingToken, ...tokens];
    // Index in `all` of the first token to score (the pending token is not this call's).
    const firstScored = all.length - tokens.length;
    this.checkGrowth(sequence, all.length);
    // A single chunk changes nothing until its step has succeeded, so only longer feeds need a
    // checkpoint (taking one copies attention mass and recent queries: too dear per step).
    const checkpoint = all.length > this.options.prefillChunkTokens ? sequence.checkpoint() : null;
    // Without a checkpoint, what a failure must undo is the capacity reserved below.
    const rooms = checkpoint ? null : sequence.layers.map((layer) => layer.room());
    try {
      this.reserve(sequence, all.length);
      for (let start = 0; start < all.length; start += this.options.prefillChunkTokens) {
        if (signal?.aborted) throw new EngineError("CANCELLED", "the call was cancelled");
        const chunk = all.slice(start, start + this.options.prefillChunkTokens);
        const queryRows = Math.min(chunk.length, this.options.recentQueryRows);
        const logitRows = scoring ? chunk.length : 1;
        if (scoring && start === 0 && firstScored === 0) {
          // The first token is predicted by the logits of the call before (none for a new sequence).
          scoring.scores.push(sequence.lastLogits ? scoreToken(sequence.lastLogits, chunk[0], scoring.top, scoring.distribution) : { tokenId: chunk[0], top: [] });
        }
        const out = await observeStep("prefill", sequence.id, chunk.length, sequence.fedTokens, () =>
          this.model.runner.run({ tokens: chunk, firstPosition: sequence.fedTokens, past: sequence.layers, queryRows, logitRows }),
        );
        if (scoring) {
          // Row r predicts token start + r + 1.
          const vocab = this.model.config.vocabSize;
          for (let r = 0; r < chunk.length && start + r + 1 < all.length; r++) {
            if (start + r + 1 >= firstScored) scoring.scores.push(scoreToken(out.logits.subarray(r * vocab, (r + 1) * vocab), all[start + r + 1], scoring.top, scoring.distribution));
          }
        }
        this.absorb(sequence, chunk, out, 0, queryRows);
      }
    } catch (error) {
      if (checkpoint) sequence.rollback(checkpoint);
      else sequence.layers.forEach((layer, l) => layer.restoreRoom(rooms![l]));
      throw this.budgetError(error);
    }
  }
}
