import { randomUUID } from "node:crypto";
import type { Engine } from "../engine/engine.js";
import { DecodeRequest, EvictionResult, FinishReason, type EvictionSpec } from "../gen/kvwarden/v1/kvwarden.js";
import type { TokenLogprob } from "../model/sampling/logprobs.js";
import { decode, genAiAttributes } from "../server/kv-cache-service.js";
import { evictionSpecOf } from "../server/eviction-spec.js";
import { evictionResultOf } from "../server/proto-responses.js";
import type { RpcScope } from "../server/middleware/server-call.js";
import { GEN_AI, KVWARDEN } from "../telemetry/attributes.js";
import type { KvSessions, SessionPrefill } from "./kv-sessions.js";
import { mergedStreams } from "./merged-streams.js";
import type { PromptInput } from "./prompt-input.js";
import { StopStrings } from "./stop-strings.js";

/** One completion request as the engine runs it, whichever endpoint it came from. */
export interface GenerationRequest {
  prompt: PromptInput;
  maxTokens: number;
  temperature: number;
  topP: number;
  /** Choice i samples with seed + i, so that n choices differ yet repeat. */
  seed?: number;
  stop: readonly string[];
  /** Continuations of the one prefill (Fork). */
  n: number;
  /** Score every generated token, with this many alternatives; absent = no log-probabilities. */
  topLogprobs?: number;
  /** Applied after the prefill and kept as the decode budget (as gRPC's Prefill and Decode take it). */
  eviction?: EvictionSpec;
  session?: string;
}

/** A generated token's log-probability, with its text and bytes (as OpenAI's logprobs give them). */
export interface TokenScore {
  token: string;
  bytes: number[];
  logprob: number;
  top: { token: string; bytes: number[]; logprob: number }[];
}

export type ChoiceFinish = "stop" | "length";

/** Text one choice adds (empty when a stop string may be starting), with its tokens' scores. */
export interface ChoicePiece {
  index: number;
  text: string;
  /** Where the first scored token of this piece starts in the choice's text (UTF-16 units). */
  textOffset: number;
  logprobs: TokenScore[];
  finishReason?: ChoiceFinish;
}

export interface GenerationUsage {
  promptTokens: number;
  completionTokens: number;
  cachedTokens: number;
}

/**
 * Prefills a prompt (into a fresh sequence, or a KV session), forks it into
 * n choices and decodes them side by side through the same engine calls,
 * spans and metrics as gRPC's Prefill, Fork and Decode. `close` releases
 * every sequence the request made; a session's own sequence stays.
 */
export class Generation {
  readonly usage: GenerationUsage;
  /** What kv_eviction did to the prompt, in the gRPC EvictionResult's JSON form. */
  readonly eviction?: unknown;
  /** Sequences this request made, released by close(). */
  private readonly owned: string[] = [];
  private readonly choiceIds: string[] = [];
  private readonly scoringIds: string[] = [];
  /** The prompt's last token: how the first generated token is spelled depends on it. */
  private readonly lastPromptToken: number;

  private constructor(
    private readonly engine: Engine,
    private readonly request: GenerationRequest,
    private readonly scope: RpcScope,
    prefill: SessionPrefill,
  ) {
    this.usage = { promptTokens: prefill.promptTokens, completionTokens: 0, cachedTokens: prefill.cachedTokens };
    this.eviction = prefill.outcome.eviction && EvictionResult.toJSON(evictionResultOf(prefill.outcome.eviction));
    this.lastPromptToken = prefill.outcome.tokenIds.at(-1) ?? -1;
  }

  /** Runs the prefill and the forks; a failure here leaves nothing behind. */
  static async start(engine: Engine, request: GenerationRequest, scope: RpcScope, sessions: KvSessions): Promise<Generation> {
    const sequenceId = request.session ? sessions.sequenceIdOf(request.session) : `openai-${randomUUID()}`;
    const eviction = request.eviction && evictionSpecOf(request.eviction);
    scope.annotate({ [KVWARDEN.sequenceId]: sequenceId, ...genAiAttributes(engine) });
    let prefill: SessionPrefill;
    if (request.session) prefill = await sessions.prefill(engine, request.session, request.prompt, eviction, scope);
    else {
      const outcome = await engine.prefill({ sequenceId, ...request.prompt, eviction }, { caller: scope.caller, signal: scope.signal });
      prefill = { outcome, promptTokens: outcome.promptTokens, cachedTokens: 0 };
    }
    scope.annotate({ [GEN_AI.usageInputTokens]: prefill.outcome.promptTokens, [KVWARDEN.position]: prefill.outcome.position });
    const generation = new Generation(engine, request, scope, prefill);
    if (!request.session) generation.owned.push(sequenceId);
    try {
      await generation.fork(sequenceId);
    } catch (error) {
      await generation.close();
      throw error;
    }
    return generation;
  }

  /** Every choice's pieces, as they come; ends when all choices have finished. */
  async *pieces(): AsyncGenerator<ChoicePiece> {
    try {
      yield* mergedStreams(this.choiceIds.map((_, index) => this.choice(index)));
    } finally {
      // Each Decode recorded its own sequence and count; the call's log line and metrics name the request's.
      this.scope.annotate({ [KVWARDEN.sequenceId]: this.choiceIds[0], [GEN_AI.usageOutputTokens]: this.usage.completionTokens });
    }
  }

  /** Releases the sequences this request made (never the session's own). */
  async close(): Promise<void> {
    for (const sequenceId of this.owned.splice(0)) await this.engine.release(sequenceId, { caller: this.scope.caller });
  }

  /** Choice 0 decodes the prefilled sequence; the others, and the scoring copies, are forks of it. */
  private async fork(sequenceId: string): Promise<void> {
    const base = `${this.request.session ? `openai-${randomUUID()}` : sequenceId}`;
    this.choiceIds.push(sequenceId);
    for (let index = 1; index < this.request.n; index++) this.choiceIds.push(await this.forkOf(sequenceId, `${base}/choice-${index}`));
    if (this.request.topLogprobs === undefined) return;
    for (let index = 0; index < this.request.n; index++) this.scoringIds.push(await this.forkOf(sequenceId, `${base}/scoring-${index}`));
  }

  private async forkOf(sequenceId: string, newSequenceId: string): Promise<string> {
    await this.engine.fork(sequenceId, newSequenceId, { caller: this.scope.caller });
    this.owned.push(newSequenceId);
    return newSequenceId;
  }

  private async *choice(index: number): AsyncGenerator<ChoicePiece> {
    const { request, scope, engine } = this;
    const decodeRequest = DecodeRequest.fromPartial({
      sequenceId: this.choiceIds[index],
      maxNewTokens: request.maxTokens,
      sampling: { temperature: request.temperature, topP: request.topP, seed: request.seed === undefined ? undefined : BigInt(request.seed + index) },
      eviction: request.eviction,
    });
    const stops = new StopStrings(request.stop);
    let textOffset = 0;
    const piece = (text: string, logprobs: TokenScore[], finishReason?: ChoiceFinish): ChoicePiece => {
      const made = { index, text, textOffset, logprobs, finishReason };
      for (const score of logprobs) textOffset += score.token.length;
      return made;
    };
    let previous = this.lastPromptToken;
    for await (const token of decode(engine, decodeRequest, scope, genAiAttributes(engine))) {
      this.usage.completionTokens++;
      const logprobs = this.scoringIds.length > 0 ? [await this.score(index, token.tokenId, previous)] : [];
      previous = token.tokenId;
      const { text, stopped } = stops.push(token.text);
      if (stopped) {
        yield piece(text, logprobs, "stop");
        return;
      }
      // The last token: the stream then ends by itself, counting it as taken (as a gRPC Decode's does).
      const last = token.finishReason !== FinishReason.FINISH_REASON_UNSPECIFIED;
      if (last) yield piece(text + stops.flush(), logprobs, token.finishReason === FinishReason.FINISH_REASON_STOP ? "stop" : "length");
      else yield piece(text, logprobs);
    }
  }

  /**
   * The engine's decode does not score its tokens; the choice's scoring copy
   * (a fork taken at the end of the prompt) is fed each token as it comes, and
   * its prefill scores it against the same context.
   */
  private async score(index: number, tokenId: number, previous: number): Promise<TokenScore> {
    const { engine, scope } = this;
    const outcome = await engine.prefill({ sequenceId: this.scoringIds[index], tokenIds: [tokenId], logprobs: { top: this.request.topLogprobs! } }, { caller: scope.caller, signal: scope.signal });
    const scored: TokenLogprob = outcome.logprobs![0];
    const piece = (id: number) => {
      const bytes = engine.model.tokenizer.tokenBytes(id, previous);
      return { token: new TextDecoder().decode(bytes), bytes: [...bytes] };
    };
    return { ...piece(tokenId), logprob: scored.logprob ?? 0, top: scored.top.map((alternative) => ({ ...piece(alternative.tokenId), logprob: alternative.logprob })) };
  }
}
